import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { gatewayKeys, redisKeys } from '#contracts';
import type { GatewayEnv } from '#config';
import type { Logger } from '#cluster';
import { ApiKeys } from '../auth/api-keys.js';
import { OpenAiExceptionFilter } from '../common/exception-filter.js';
import { JobQueues } from '../jobs/job-queues.js';
import { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { StateStore } from '../states/state-store.js';
import { BlockingReaders } from '../streams/job-stream-reader.js';
import { JobStreams } from '../streams/job-streams.js';
import { provideFactory, provideValue } from './providers.js';
import { RedisConnections } from './redis-connections.js';
import { GATEWAY_ENV, GATEWAY_KEYS, LOGGER, REDIS_KEYS } from './tokens.js';

/** What main.ts settles before the container is built (a bad setup fails before any connect). */
export interface BootValues {
  env: GatewayEnv;
  logger: Logger;
  apiKeys: ApiKeys;
}

const SHARED = [
  GATEWAY_ENV,
  LOGGER,
  ApiKeys,
  REDIS_KEYS,
  GATEWAY_KEYS,
  RedisConnections,
  BlockingReaders,
  JobStreams,
  JobQueues,
  StateStore,
  GatewayMetrics,
];

/**
 * The gateway's shared infrastructure, for every feature module: configuration, logger, API keys,
 * key layouts, the Redis connections, the model queues, job streams and their blocking readers,
 * saved states (read by completions, jobs and batches alike) and the metrics registry. Global,
 * as it is registered once with the values main.ts settled.
 *
 * Shutdown: everything here closes in `onApplicationShutdown`, which Nest calls after the HTTP
 * server has drained and, within a module, for dependents before their dependencies: the
 * queues and stream readers close before {@link RedisConnections} quits its clients.
 */
@Module({})
export class CoreModule {
  static forRoot(boot: BootValues): DynamicModule {
    return {
      module: CoreModule,
      global: true,
      providers: [
        provideValue(GATEWAY_ENV, boot.env),
        provideValue(LOGGER, boot.logger),
        provideValue(ApiKeys, boot.apiKeys),
        provideFactory(REDIS_KEYS, [GATEWAY_ENV], (env) => redisKeys(env.QUEUE_PREFIX)),
        provideFactory(GATEWAY_KEYS, [GATEWAY_ENV], (env) => gatewayKeys(env.QUEUE_PREFIX)),
        provideFactory(RedisConnections, [GATEWAY_ENV, LOGGER], (env, logger) =>
          RedisConnections.connect(env, logger),
        ),
        provideFactory(
          BlockingReaders,
          [RedisConnections],
          (connections) => new BlockingReaders(() => connections.openReader()),
        ),
        provideFactory(
          JobStreams,
          [RedisConnections, BlockingReaders, REDIS_KEYS],
          (connections, readers, keys) => new JobStreams(connections.commands, readers, keys),
        ),
        provideFactory(
          JobQueues,
          [RedisConnections, REDIS_KEYS, GATEWAY_KEYS, GATEWAY_ENV],
          (connections, keys, gateway, env) =>
            new JobQueues(
              connections.queue,
              connections.commands,
              keys,
              gateway,
              env.MAX_QUEUE_DEPTH,
            ),
        ),
        provideFactory(
          StateStore,
          [RedisConnections, REDIS_KEYS],
          (connections, keys) => new StateStore(connections.commands, keys),
        ),
        provideFactory(
          GatewayMetrics,
          [RedisConnections, REDIS_KEYS],
          (connections, keys) => new GatewayMetrics(connections.commands, keys),
        ),
        { provide: APP_FILTER, useClass: OpenAiExceptionFilter },
      ],
      exports: SHARED,
    };
  }
}
