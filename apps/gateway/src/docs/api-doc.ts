import { SetMetadata } from '@nestjs/common';
import type { z } from 'zod';

export const API_DOC = 'dijiang:api-doc';

/** What `/docs` says about a route; the request schema is the one the route validates with. */
export interface ApiDocOptions {
  summary: string;
  tag: string;
  /** JSON body schema (the validator itself), or a non-JSON body kind. */
  body?: z.ZodType | 'multipart' | 'text' | undefined;
  /** Responds with `text/event-stream` (always, or when the body asks `stream: true`). */
  streams?: boolean;
}

export const ApiDoc = (options: ApiDocOptions) => SetMetadata(API_DOC, options);
