import { Module } from '@nestjs/common';
import { provideFactory } from '../core/providers.js';
import { JobStreams } from '../streams/job-streams.js';
import { DocumentsModule } from '../documents/documents.module.js';
import { DocumentStore } from '../documents/document-store.js';
import { JobQueues } from './job-queues.js';
import { ModelsModule } from '../models/models.module.js';
import { ModelsService } from '../models/models.service.js';
import { StateStore } from '../states/state-store.js';
import { JobsController } from './jobs.controller.js';
import { JobsService } from './jobs.service.js';

/** `/v1/jobs`: generate, score and digest jobs; saved states are digest jobs too. */
@Module({
  imports: [ModelsModule, DocumentsModule],
  controllers: [JobsController],
  providers: [
    provideFactory(
      JobsService,
      [JobQueues, ModelsService, StateStore, DocumentStore, JobStreams],
      (jobs, models, states, documents, streams) =>
        new JobsService(jobs, models, states, documents, streams),
    ),
  ],
  exports: [JobsService],
})
export class JobsModule {}
