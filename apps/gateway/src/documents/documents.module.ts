import { Module } from '@nestjs/common';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { GATEWAY_KEYS, REDIS_KEYS } from '../core/tokens.js';
import { DocumentStore } from './document-store.js';
import { DocumentsController } from './documents.controller.js';

/** `/v1/documents`; jobs check the documents they name against the store. */
@Module({
  controllers: [DocumentsController],
  providers: [
    provideFactory(
      DocumentStore,
      [RedisConnections, REDIS_KEYS, GATEWAY_KEYS],
      (connections, keys, gateway) => new DocumentStore(connections.commands, keys, gateway),
    ),
  ],
  exports: [DocumentStore],
})
export class DocumentsModule {}
