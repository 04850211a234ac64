import { Controller, Get, Inject, Param } from '@nestjs/common';
import { modelNotFound } from '../common/api-error.js';
import { ApiDoc } from '../docs/api-doc.js';
import { MODELS } from '../tokens.js';
import type { ModelsService, ServedModel } from './models.service.js';

const modelObject = (model: ServedModel) => ({
  id: model.id,
  object: 'model' as const,
  created: model.created,
  owned_by: 'dijiang',
});

@Controller('v1/models')
export class ModelsController {
  constructor(@Inject(MODELS) private readonly models: ModelsService) {}

  @Get()
  @ApiDoc({ summary: 'Models served by live workers (OpenAI)', tag: 'OpenAI' })
  async list() {
    return { object: 'list' as const, data: (await this.models.served()).map(modelObject) };
  }

  @Get(':id')
  @ApiDoc({ summary: 'A served model (OpenAI)', tag: 'OpenAI' })
  async retrieve(@Param('id') id: string) {
    const model = (await this.models.served()).find((served) => served.id === id);
    if (model === undefined) throw modelNotFound(id);
    return modelObject(model);
  }
}
