import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { RequestMethod, type Type } from '@nestjs/common';
import { z } from 'zod';
import { API_DOC, type ApiDocOptions } from './api-doc.js';

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        message: { type: 'string' },
        type: { type: 'string' },
        param: { type: 'string', nullable: true },
        code: { type: 'string', nullable: true },
      },
      required: ['message', 'type', 'param', 'code'],
    },
  },
  required: ['error'],
};

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
  const schema = z.toJSONSchema(body, {
    io: 'input',
    unrepresentable: 'any',
    target: 'openapi-3.0',
  });
  return { required: true, content: { 'application/json': { schema } } };
}

/**
 * The OpenAPI document of the routes, built from the controllers themselves: paths and methods
 * from Nest's route metadata, request bodies from the zod schemas the routes validate with.
 */
export function buildOpenApi(controllers: readonly Type[], version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const controller of controllers) {
    const base = Reflect.getMetadata(PATH_METADATA, controller) as string;
    const prototype = controller.prototype as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(prototype)) {
      const handler = prototype[name];
      if (typeof handler !== 'function' || name === 'constructor') continue;
      const doc = Reflect.getMetadata(API_DOC, handler) as ApiDocOptions | undefined;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      const route = Reflect.getMetadata(PATH_METADATA, handler) as string | undefined;
      if (doc === undefined || method === undefined || route === undefined) continue;
      const path = joinPath(base, route);
      const parameters = [...path.matchAll(/\{([A-Za-z_]+)\}/g)].map((match) => ({
        name: match[1],
        in: 'path',
        required: true,
        schema: { type: 'string' },
      }));
      const success = doc.streams
        ? {
            description: 'JSON, or server-sent events (`data: …`) when streaming',
            content: { 'application/json': {}, 'text/event-stream': {} },
          }
        : { description: 'OK', content: { 'application/json': {} } };
      paths[path] ??= {};
      paths[path][RequestMethod[method].toLowerCase()] = {
        summary: doc.summary,
        tags: [doc.tag],
        ...(parameters.length > 0 ? { parameters } : {}),
        ...(doc.body === undefined ? {} : { requestBody: requestBody(doc.body) }),
        responses: {
          '200': success,
          default: {
            description: "An error in OpenAI's shape",
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
          },
        },
      };
    }
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'DiJiang cluster gateway',
      version,
      description:
        'OpenAI-compatible completions, chat, files and batches, plus jobs, documents and saved states. ' +
        'Every /v1 route needs `Authorization: Bearer <API key>`.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: errorSchema },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
