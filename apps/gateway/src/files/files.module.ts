import { Module } from '@nestjs/common';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { GATEWAY_KEYS } from '../core/tokens.js';
import { FileStore } from './file-store.js';
import { FilesController } from './files.controller.js';

/** `/v1/files`; batches read their input files from, and write their output files to, the store. */
@Module({
  controllers: [FilesController],
  providers: [
    provideFactory(
      FileStore,
      [RedisConnections, GATEWAY_KEYS],
      (connections, gateway) => new FileStore(connections.commands, gateway),
    ),
  ],
  exports: [FileStore],
})
export class FilesModule {}
