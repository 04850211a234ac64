import {
  type DynamicModule,
  Inject,
  Module,
  type OnApplicationShutdown,
  type Type,
} from '@nestjs/common';
import type { Redis } from 'ioredis';
import { BatchesController } from './batches/batches.controller.js';
import { CompletionsController } from './completions/completions.controller.js';
import { DocumentsController } from './documents/documents.controller.js';
import { FilesController } from './files/files.controller.js';
import { HealthController } from './health/health.controller.js';
import { JobsController } from './jobs/jobs.controller.js';
import { MetricsController } from './metrics/metrics.controller.js';
import { ModelsController } from './models/models.controller.js';
import type { GatewayServices } from './services.js';
import { StatesController } from './states/states.controller.js';
import {
  BATCHES,
  COMPLETIONS,
  FILE_STORE,
  GATEWAY_ENV,
  GATEWAY_KEYS,
  JOBS,
  LOGGER,
  METRICS,
  MODELS,
  PROBE_REDIS,
  REDIS_KEYS,
  SERVICES,
  STATES,
} from './tokens.js';

/** The routes, in the order `/docs` lists them. */
export const CONTROLLERS: readonly Type[] = [
  ModelsController,
  CompletionsController,
  FilesController,
  BatchesController,
  DocumentsController,
  JobsController,
  StatesController,
  HealthController,
  MetricsController,
];

@Module({})
export class AppModule implements OnApplicationShutdown {
  constructor(
    @Inject(SERVICES) private readonly services: GatewayServices,
    @Inject(PROBE_REDIS) private readonly probeRedis: Redis,
  ) {}

  static forRoot(services: GatewayServices): DynamicModule {
    return {
      module: AppModule,
      controllers: [...CONTROLLERS],
      providers: [
        { provide: SERVICES, useValue: services },
        { provide: GATEWAY_ENV, useValue: services.env },
        { provide: LOGGER, useValue: services.logger },
        { provide: PROBE_REDIS, useValue: services.redis },
        { provide: REDIS_KEYS, useValue: services.keys },
        { provide: GATEWAY_KEYS, useValue: services.gateway },
        { provide: MODELS, useValue: services.models },
        { provide: COMPLETIONS, useValue: services.completions },
        { provide: JOBS, useValue: services.jobsApi },
        { provide: STATES, useValue: services.states },
        { provide: FILE_STORE, useValue: services.files },
        { provide: BATCHES, useValue: services.batches },
        { provide: METRICS, useValue: services.metrics },
      ],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.services.close();
    await this.probeRedis.quit();
  }
}
