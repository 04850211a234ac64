import type { Type } from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import { z } from 'zod';
import { errorBodySchema } from './response-schemas.js';
import { ControllerPath, RouteDocs, type ApiDocOptions, type RouteDoc } from './api-doc.js';

type JsonSchema = Record<string, unknown>;

/**
 * The JSON Schema (2020-12, the dialect of OpenAPI 3.1) of a zod schema: what a client sends
 * (`input`) or receives (`output`). Embedded in the document, so without its own `$schema`.
 */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const embedded: JsonSchema = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    target: 'draft-2020-12',
  });
  delete embedded.$schema;
  return embedded;
}

const joinPath = (...parts: string[]): string =>
  `/${parts
    .flatMap((part) => part.split('/'))
    .filter((part) => part !== '')
    .join('/')}`.replace(/:([A-Za-z_]+)/g, '{$1}');

function requestBody(body: ApiDocOptions['body']) {
  if (body === undefined) return undefined;
  if (body === 'multipart') {
    return {
      required: true,
      content: {
        'multipart/form-data': {
          schema: {
            type: 'object',
            properties: { file: { type: 'string', format: 'binary' }, purpose: { type: 'string' } },
            required: ['file', 'purpose'],
          },
        },
      },
    };
  }
  if (body === 'text') {
    return { required: true, content: { 'text/plain': { schema: { type: 'string' } } } };
  }
  return { required: true, content: { 'application/json': { schema: jsonSchema(body, 'input') } } };
}

const EVENT_STREAM = { 'text/event-stream': { schema: { type: 'string' } } };

function successResponse(doc: RouteDoc) {
  if (doc.response === 'binary') {
    return {
      description: 'The bytes',
      content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
    };
  }
  if (doc.response === undefined) {
    return { description: 'Server-sent events (`id:`, `event:`, `data:`)', content: EVENT_STREAM };
  }
  const json = { 'application/json': { schema: jsonSchema(doc.response, 'output') } };
  return doc.streams === true
    ? {
        description: 'JSON, or server-sent events (`data: …`) when streaming',
        content: { ...json, ...EVENT_STREAM },
      }
    : { description: 'OK', content: json };
}

type Handler = (...args: never[]) => unknown;

/** The methods of a controller class (its route handlers among them). */
function handlers(controller: Type): Handler[] {
  const prototype = controller.prototype as Record<string, unknown>;
  return Object.getOwnPropertyNames(prototype)
    .filter((name) => name !== 'constructor')
    .map((name) => prototype[name])
    .filter((handler): handler is Handler => typeof handler === 'function');
}

/**
 * The OpenAPI document of the routes, built from the project's own route metadata
 * ({@link ApiController}, {@link ApiRoute}): paths and methods as the routes declare them,
 * request bodies from the zod schemas the routes validate with, 200 bodies from the zod schemas
 * their presenters are typed by. Controllers without that metadata (health, metrics) are left out.
 */
export function buildOpenApi(controllers: readonly Type[], reflector: Reflector, version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const controller of controllers) {
    const base = reflector.get(ControllerPath, controller) as string | undefined;
    if (base === undefined) continue;
    for (const handler of handlers(controller)) {
      const doc = reflector.get(RouteDocs, handler) as RouteDoc | undefined;
      if (doc === undefined) continue;
      const path = joinPath(base, doc.path);
      const parameters = [...path.matchAll(/\{([A-Za-z_]+)\}/g)].map((match) => ({
        name: match[1],
        in: 'path',
        required: true,
        schema: { type: 'string' },
      }));
      paths[path] ??= {};
      paths[path][doc.method] = {
        summary: doc.summary,
        tags: [doc.tag],
        ...(parameters.length > 0 ? { parameters } : {}),
        ...(doc.body === undefined ? {} : { requestBody: requestBody(doc.body) }),
        responses: {
          '200': successResponse(doc),
          default: {
            description: "An error in OpenAI's shape",
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
          },
        },
      };
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'DiJiang cluster gateway',
      version,
      description:
        'OpenAI-compatible completions, chat, files and batches, plus jobs, documents and saved states. ' +
        'Every /v1 route needs `Authorization: Bearer <API key>`.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: jsonSchema(errorBodySchema, 'output') },
    },
    security: [{ bearer: [] }],
    paths,
  };
}

/** The gateway's OpenAPI document, built once at boot from the registered controllers. */
export class OpenApiDocument {
  constructor(readonly spec: ReturnType<typeof buildOpenApi>) {}
}
