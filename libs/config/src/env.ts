import type { z } from 'zod';

/** Raised at boot when the environment does not satisfy an app's schema. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid environment:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Variables whose values never appear in an error message (they end up in logs). */
const isSecret = (variable: string): boolean => variable.includes('PASSWORD');

/** A value as an error message shows it: a URL's credentials (`user:password@`) masked. */
const shown = (value: string): string => JSON.stringify(value.replace(/\/\/[^/@]*@/, '//***@'));

/**
 * Validates the environment once, at boot, against an app's schema. Every problem names the
 * variable, the expected form and the value received, so an operator can fix all of them at once.
 */
export function loadConfig<Schema extends z.ZodObject>(
  schema: Schema,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<Schema> {
  // Empty strings count as unset: `PORT= npm start` should fall back to the default.
  const present = Object.fromEntries(
    Object.keys(schema.shape)
      .filter((name) => env[name] !== undefined && env[name] !== '')
      .map((name) => [name, env[name]]),
  );
  const result = schema.safeParse(present);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const variable = issue.path.map(String).join('.');
      const received = present[variable];
      const got =
        received === undefined
          ? 'it is not set'
          : isSecret(variable)
            ? 'its value is not shown'
            : `got ${shown(received)}`;
      return `${variable}: ${issue.message} (${got})`;
    }),
  );
}
