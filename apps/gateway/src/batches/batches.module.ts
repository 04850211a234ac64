import { Module } from '@nestjs/common';
import { ChatPrompts } from '../completions/chat-template.js';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { GATEWAY_ENV, GATEWAY_KEYS, LOGGER, REDIS_KEYS } from '../core/tokens.js';
import { FileStore } from '../files/file-store.js';
import { FilesModule } from '../files/files.module.js';
import { JobQueues } from '../jobs/job-queues.js';
import { ModelsModule } from '../models/models.module.js';
import { ModelsService } from '../models/models.service.js';
import { StateStore } from '../states/state-store.js';
import { BatchesController } from './batches.controller.js';
import { BatchesService } from './batches.service.js';

/**
 * `/v1/batches` (OpenAI's Batch API) and the gateway queue that validates, finalizes and expires
 * batches; its worker starts with the module and stops at shutdown, before Redis is closed.
 */
@Module({
  imports: [FilesModule, ModelsModule],
  controllers: [BatchesController],
  providers: [
    provideFactory(
      BatchesService,
      [
        RedisConnections,
        REDIS_KEYS,
        GATEWAY_KEYS,
        FileStore,
        JobQueues,
        ModelsService,
        ChatPrompts,
        StateStore,
        GATEWAY_ENV,
        LOGGER,
      ],
      (connections, keys, gateway, files, jobs, models, chatPrompts, states, env, logger) =>
        new BatchesService({
          redis: connections.commands,
          connection: connections.queue,
          keys,
          gateway,
          files,
          jobs,
          models,
          chatPrompts,
          states,
          env,
          logger,
        }),
    ),
  ],
  exports: [BatchesService],
})
export class BatchesModule {}
