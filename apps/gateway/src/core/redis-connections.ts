import type { OnApplicationShutdown } from '@nestjs/common';
import { requireRedisTarget, type GatewayEnv, type RedisTarget } from '#config';
import { connectRedisOrFail, createRedis, type Logger, type RedisClient } from '#cluster';

/**
 * The gateway's Redis connections. They close last at shutdown: Nest calls this hook after the
 * hooks of everything that depends on it (queues, the batch worker, stream readers).
 */
export class RedisConnections implements OnApplicationShutdown {
  private readerCount = 0;

  private constructor(
    /** Fail-fast client: request-path reads and writes fail at once while Redis is down. */
    readonly commands: RedisClient,
    /** BullMQ's client: its commands wait for a reconnection. */
    readonly queue: RedisClient,
    private readonly target: RedisTarget,
    private readonly logger: Logger,
  ) {}

  /** Connects both clients; fails the boot with an actionable message when Redis is unreachable. */
  static async connect(env: GatewayEnv, logger: Logger): Promise<RedisConnections> {
    const target = requireRedisTarget(env);
    const commands = createRedis(target, 'commands', 'dijiang:gateway:commands', logger);
    await connectRedisOrFail(commands, target);
    const queue = createRedis(target, 'queue', 'dijiang:gateway:queue', logger);
    try {
      await connectRedisOrFail(queue, target);
    } catch (error) {
      commands.disconnect();
      throw error;
    }
    return new RedisConnections(commands, queue, target, logger);
  }

  /** Whether the command client is connected now (false while it reconnects). */
  get commandsConnected(): boolean {
    return this.commands.status === 'ready';
  }

  /** A new fail-fast connection for one blocking stream reader; its owner disconnects it. */
  async openReader(): Promise<RedisClient> {
    this.readerCount += 1;
    const reader = createRedis(
      this.target,
      'commands',
      `dijiang:gateway:reader-${this.readerCount}`,
      this.logger,
    );
    try {
      await reader.connect();
    } catch (error) {
      // Otherwise the client would keep reconnecting forever, one per failed request.
      reader.disconnect();
      throw error;
    }
    return reader;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.queue.quit();
    await this.commands.quit();
  }
}
