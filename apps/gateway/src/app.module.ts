import { type DynamicModule, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { redisKeys } from '#contracts';
import type { GatewayEnv } from '#config';
import type { Logger } from '#cluster';
import { HealthController } from './health/health.controller.js';
import { GATEWAY_ENV, LOGGER, PROBE_REDIS, REDIS_KEYS } from './tokens.js';

export interface GatewayDependencies {
  env: GatewayEnv;
  logger: Logger;
  /** Connected by main.ts before the module is built, so a missing Redis fails the boot. */
  probeRedis: Redis;
}

@Module({})
export class AppModule implements OnApplicationShutdown {
  constructor(@Inject(PROBE_REDIS) private readonly probeRedis: Redis) {}

  static forRoot(dependencies: GatewayDependencies): DynamicModule {
    return {
      module: AppModule,
      controllers: [HealthController],
      providers: [
        { provide: GATEWAY_ENV, useValue: dependencies.env },
        { provide: LOGGER, useValue: dependencies.logger },
        { provide: PROBE_REDIS, useValue: dependencies.probeRedis },
        { provide: REDIS_KEYS, useValue: redisKeys(dependencies.env.QUEUE_PREFIX) },
      ],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.probeRedis.quit();
  }
}
