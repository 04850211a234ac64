import { applyDecorators, Controller, Delete, Get, Post } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { z } from 'zod';

export type HttpMethod = 'get' | 'post' | 'delete';

/** What `/docs` says about a route; the request schema is the one the route validates with. */
export interface ApiDocOptions {
  summary: string;
  tag: string;
  /** JSON body schema (the validator itself), or a non-JSON body kind. */
  body?: z.ZodType | 'multipart' | 'text' | undefined;
  /** The 200 body: a JSON schema, or raw bytes. Absent: only `text/event-stream`. */
  response?: z.ZodType | 'binary' | undefined;
  /** Responds with `text/event-stream` (always without `response`, else when `stream: true`). */
  streams?: boolean;
}

/** A documented route: where it is, and what `/docs` says about it. */
export interface RouteDoc extends ApiDocOptions {
  method: HttpMethod;
  /** Relative to its controller's base path. */
  path: string;
}

/** The route metadata `/docs` is built from (read back with Nest's `Reflector`). */
export const RouteDocs = Reflector.createDecorator<RouteDoc>();
/** A documented controller's base path. */
export const ControllerPath = Reflector.createDecorator<string>();

const METHOD_DECORATORS = { get: Get, post: Post, delete: Delete } as const;

/** `@Controller(path)` whose routes `/docs` lists. */
export const ApiController = (path: string) =>
  applyDecorators(Controller(path), ControllerPath(path));

/**
 * Declares a route and its documentation in one place: Nest's `@Get`/`@Post`/`@Delete` and the
 * {@link RouteDocs} metadata carry the same method and path.
 */
export const ApiRoute = (method: HttpMethod, path: string, options: ApiDocOptions) =>
  applyDecorators(METHOD_DECORATORS[method](path), RouteDocs({ ...options, method, path }));
