import { Module, type Type } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, Reflector } from '@nestjs/core';
import { provideFactory } from '../core/providers.js';
import { buildOpenApi, OpenApiDocument } from './openapi.js';

/** The version `/docs` shows. */
const API_VERSION = '0.1.0';

const isClass = (metatype: unknown): metatype is Type => typeof metatype === 'function';

/** `/docs`: the OpenAPI document (main.ts serves it and the Swagger UI beside the routes). */
@Module({
  imports: [DiscoveryModule],
  providers: [
    provideFactory(
      OpenApiDocument,
      [DiscoveryService, Reflector],
      (discovery, reflector) =>
        new OpenApiDocument(
          buildOpenApi(
            discovery
              .getControllers()
              .map((wrapper) => wrapper.metatype)
              .filter(isClass),
            reflector,
            API_VERSION,
          ),
        ),
    ),
  ],
  exports: [OpenApiDocument],
})
export class DocsModule {}
