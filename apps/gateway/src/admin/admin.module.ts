import { Module } from '@nestjs/common';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { REDIS_KEYS } from '../core/tokens.js';
import { JobQueues } from '../jobs/job-queues.js';
import { ModelsModule } from '../models/models.module.js';
import { ModelsService } from '../models/models.service.js';
import { ClusterController } from './cluster.controller.js';
import { ClusterReport } from './cluster-report.js';

/** `/admin/cluster`: the cluster's state as JSON for operators (the console's cluster page). */
@Module({
  imports: [ModelsModule],
  controllers: [ClusterController],
  providers: [
    provideFactory(
      ClusterReport,
      [RedisConnections, REDIS_KEYS, ModelsService, JobQueues],
      (connections, keys, models, jobs) =>
        new ClusterReport(connections.commands, keys, {
          liveWorkers: () => models.liveWorkers(),
          queue: (model) => jobs.queue(model),
          knownModels: async () => [...(await models.known()), ...jobs.known().keys()],
        }),
    ),
  ],
})
export class AdminModule {}
