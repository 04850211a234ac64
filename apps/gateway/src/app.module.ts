import { type DynamicModule, Module } from '@nestjs/common';
import { AdminModule } from './admin/admin.module.js';
import { BatchesModule } from './batches/batches.module.js';
import { CompletionsModule } from './completions/completions.module.js';
import { CoreModule, type BootValues } from './core/core.module.js';
import { DocsModule } from './docs/docs.module.js';
import { DocumentsModule } from './documents/documents.module.js';
import { FilesModule } from './files/files.module.js';
import { HealthModule } from './health/health.module.js';
import { JobsModule } from './jobs/jobs.module.js';
import { LimitsModule } from './limits/limits.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { ModelsModule } from './models/models.module.js';
import { StatesModule } from './states/states.module.js';

/**
 * The gateway's composition root: the shared infrastructure with the values main.ts settled,
 * then the features, in the order `/docs` lists their routes.
 */
@Module({})
export class AppModule {
  static forRoot(boot: BootValues): DynamicModule {
    return {
      module: AppModule,
      imports: [
        CoreModule.forRoot(boot),
        LimitsModule,
        ModelsModule,
        CompletionsModule,
        FilesModule,
        BatchesModule,
        DocumentsModule,
        JobsModule,
        StatesModule,
        HealthModule,
        MetricsModule,
        AdminModule,
        DocsModule,
      ],
    };
  }
}
