import type { z } from 'zod';
import { invalidRequest } from './api-error.js';

/** `messages[0].content` style, as OpenAI names nested parameters. */
export function paramPath(path: readonly PropertyKey[]): string {
  let result = '';
  for (const part of path) {
    if (typeof part === 'number') result += `[${part}]`;
    else result += result === '' ? String(part) : `.${String(part)}`;
  }
  return result;
}

/** The first problem of a failed parse, as a 400 that names the parameter. */
export function validationError(error: z.ZodError) {
  const issue = error.issues[0];
  if (issue === undefined) return invalidRequest('Invalid request body.');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const param = paramPath([...issue.path, key]);
    return invalidRequest(`Unrecognized request argument supplied: ${param}`, param);
  }
  const param = paramPath(issue.path);
  if (param === '') return invalidRequest(`Invalid request body: ${issue.message}.`);
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) {
    return invalidRequest(`Missing required parameter: '${param}'.`, param);
  }
  return invalidRequest(`Invalid value for '${param}': ${issue.message}.`, param);
}

/** Parses a request body or query against `schema`; a failure is a 400 naming the parameter. */
export function parseRequest<Schema extends z.ZodType>(
  schema: Schema,
  value: unknown,
): z.infer<Schema> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error);
  return result.data;
}
