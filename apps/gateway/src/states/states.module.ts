import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module.js';
import { StatesController } from './states.controller.js';

/** `/v1/states`: a state is made by a digest job; the store itself is shared (CoreModule). */
@Module({ imports: [JobsModule], controllers: [StatesController] })
export class StatesModule {}
