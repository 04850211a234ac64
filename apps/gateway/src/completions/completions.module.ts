import { Module } from '@nestjs/common';
import { provideFactory } from '../core/providers.js';
import { LOGGER } from '../core/tokens.js';
import { JobQueues } from '../jobs/job-queues.js';
import { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { ModelsModule } from '../models/models.module.js';
import { ModelsService } from '../models/models.service.js';
import { StateStore } from '../states/state-store.js';
import { JobStreams } from '../streams/job-streams.js';
import { ChatPrompts } from './chat-template.js';
import { CompletionsController } from './completions.controller.js';
import { CompletionsService } from './completions.service.js';

/** `/v1/completions` and `/v1/chat/completions` (OpenAI), answered or streamed. */
@Module({
  imports: [ModelsModule],
  controllers: [CompletionsController],
  providers: [
    provideFactory(
      CompletionsService,
      [JobQueues, ModelsService, ChatPrompts, StateStore, JobStreams, GatewayMetrics, LOGGER],
      (jobs, models, chatPrompts, states, streams, metrics, logger) =>
        new CompletionsService({ jobs, models, chatPrompts, states, streams, metrics, logger }),
    ),
  ],
})
export class CompletionsModule {}
