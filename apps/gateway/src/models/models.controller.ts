import { Param } from '@nestjs/common';
import { modelNotFound } from '../common/api-error.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { modelBodySchema, modelListBodySchema, type ModelBody } from '../docs/response-schemas.js';
import { ModelsService, type ServedModel } from './models.service.js';

const modelObject = (model: ServedModel): ModelBody => ({
  id: model.id,
  object: 'model',
  created: model.created,
  owned_by: 'dijiang',
});

@ApiController('v1/models')
export class ModelsController {
  constructor(private readonly models: ModelsService) {}

  @ApiRoute('get', '', {
    summary: 'Models served by live workers (OpenAI)',
    tag: 'OpenAI',
    response: modelListBodySchema,
  })
  async list() {
    return { object: 'list' as const, data: (await this.models.served()).map(modelObject) };
  }

  @ApiRoute('get', ':id', {
    summary: 'A served model (OpenAI)',
    tag: 'OpenAI',
    response: modelBodySchema,
  })
  async retrieve(@Param('id') id: string) {
    const model = (await this.models.served()).find((served) => served.id === id);
    if (model === undefined) throw modelNotFound(id);
    return modelObject(model);
  }
}
