import { Module } from '@nestjs/common';
import { ChatPrompts } from '../completions/chat-template.js';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { GATEWAY_ENV, GATEWAY_KEYS, REDIS_KEYS } from '../core/tokens.js';
import { ModelsController } from './models.controller.js';
import { ModelsService } from './models.service.js';

/**
 * `/v1/models`, and what the workers publish about their models for the other features: which
 * models are served ({@link ModelsService}) and their chat templates ({@link ChatPrompts}).
 */
@Module({
  controllers: [ModelsController],
  providers: [
    provideFactory(
      ModelsService,
      [RedisConnections, REDIS_KEYS, GATEWAY_KEYS, GATEWAY_ENV],
      (connections, keys, gateway, env) =>
        new ModelsService(
          connections.commands,
          keys,
          gateway,
          env.MODEL_MEMORY_MS,
          env.WORKER_WAIT_MS,
        ),
    ),
    provideFactory(
      ChatPrompts,
      [RedisConnections, REDIS_KEYS],
      (connections, keys) => new ChatPrompts(connections.commands, keys),
    ),
  ],
  exports: [ModelsService, ChatPrompts],
})
export class ModelsModule {}
