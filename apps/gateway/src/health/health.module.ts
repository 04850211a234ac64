import { Module } from '@nestjs/common';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { REDIS_KEYS } from '../core/tokens.js';
import { HealthController } from './health.controller.js';
import { Readiness } from './readiness.js';

/** `/health/live` and `/health/ready`: open without a key, for orchestrators. */
@Module({
  controllers: [HealthController],
  providers: [
    provideFactory(
      Readiness,
      [RedisConnections, REDIS_KEYS],
      (connections, keys) => new Readiness(connections.commands, keys),
    ),
  ],
})
export class HealthModule {}
