import { Module } from '@nestjs/common';
import { BatchesModule } from '../batches/batches.module.js';
import { BatchesService } from '../batches/batches.service.js';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { REDIS_KEYS } from '../core/tokens.js';
import { JobQueues } from '../jobs/job-queues.js';
import { ModelsModule } from '../models/models.module.js';
import { ModelsService } from '../models/models.service.js';
import { GatewayMetrics, MetricsExposition } from './gateway-metrics.js';
import { MetricsController } from './metrics.controller.js';
import { WaitingWork } from './waiting-work.js';

/** `/metrics` (Prometheus): this gateway's metrics and the cluster's queues and workers. */
@Module({
  imports: [BatchesModule, ModelsModule],
  controllers: [MetricsController],
  providers: [
    provideFactory(
      MetricsExposition,
      [GatewayMetrics, JobQueues, BatchesService, ModelsService, RedisConnections, REDIS_KEYS],
      (metrics, jobs, batches, models, redis, keys) =>
        new MetricsExposition(metrics, {
          modelQueues: async () => {
            for (const model of await models.known()) jobs.queue(model);
            return jobs.known();
          },
          batchQueue: batches.queue,
          liveWorkers: () => models.liveWorkers(),
          waitingWork: new WaitingWork(redis.commands, keys),
        }),
    ),
  ],
})
export class MetricsModule {}
