import { Module } from '@nestjs/common';
import { BatchesModule } from '../batches/batches.module.js';
import { BatchesService } from '../batches/batches.service.js';
import { provideFactory } from '../core/providers.js';
import { JobQueues } from '../jobs/job-queues.js';
import { ModelsModule } from '../models/models.module.js';
import { ModelsService } from '../models/models.service.js';
import { GatewayMetrics, MetricsExposition } from './gateway-metrics.js';
import { MetricsController } from './metrics.controller.js';

/** `/metrics` (Prometheus): this gateway's metrics and the cluster's queues and workers. */
@Module({
  imports: [BatchesModule, ModelsModule],
  controllers: [MetricsController],
  providers: [
    provideFactory(
      MetricsExposition,
      [GatewayMetrics, JobQueues, BatchesService, ModelsService],
      (metrics, jobs, batches, models) =>
        new MetricsExposition(metrics, {
          queues: () => [...jobs.known().values(), batches.queue],
          liveWorkers: () => models.liveWorkers(),
        }),
    ),
  ],
})
export class MetricsModule {}
