import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  gatewayEnvSchema,
  launcherEnvSchema,
  loadConfig,
  workerEnvSchema,
} from '#config';

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('environment validation', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig(gatewayEnvSchema, { REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(config).toEqual({
      REDIS_URL: 'redis://127.0.0.1:6379',
      QUEUE_PREFIX: 'dijiang',
      LOG_LEVEL: 'info',
      LOG_FORMAT: 'auto',
      WORKER_TTL_MS: 5000,
      PORT: 8080,
      HOST: '127.0.0.1',
      AUTH_DISABLED: false,
      RATE_LIMIT_RPM: 600,
      RATE_LIMIT_TPM: 1_000_000,
      MAX_QUEUE_DEPTH: 1000,
      MAX_BODY_BYTES: 8 * 1024 * 1024,
      MAX_DOCUMENT_BYTES: 64 * 1024 * 1024,
      MAX_FILE_BYTES: 100 * 1024 * 1024,
      BATCH_MAX_LINES: 50_000,
      BATCH_EXPIRY_SECONDS: 24 * 3600,
      WORKER_WAIT_MS: 10_000,
      MODEL_MEMORY_MS: 600_000,
    });
    expect(loadConfig(launcherEnvSchema, {}).WORKERS).toBe(2);
  });

  it('names a missing required variable', () => {
    const problems = problemsOf(() => loadConfig(workerEnvSchema, {}));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^REDIS_URL: .*redis:\/\/.*it is not set/);
  });

  it('names every invalid variable with the expected form and the value received', () => {
    const problems = problemsOf(() =>
      loadConfig(gatewayEnvSchema, {
        REDIS_URL: 'localhost:6379',
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
      }),
    );
    expect(problems).toEqual([
      expect.stringMatching(/^REDIS_URL: expected a redis:\/\/.* \(got "localhost:6379"\)$/),
      expect.stringMatching(/^LOG_LEVEL: expected one of fatal, .* \(got "loud"\)$/),
      expect.stringMatching(/^PORT: expected an integer between 0 and 65535 \(got "eighty"\)$/),
    ]);
  });

  it('rejects out-of-range integers', () => {
    const problems = problemsOf(() =>
      loadConfig(launcherEnvSchema, { PORT: '70000', WORKERS: '-1' }),
    );
    expect(problems).toEqual([
      'PORT: expected at most 65535 (got "70000")',
      'WORKERS: expected an integer between 0 and 256 (got "-1")',
    ]);
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig(launcherEnvSchema, { PORT: '', WORKERS: '3' })).toMatchObject({
      PORT: 8080,
      WORKERS: 3,
    });
  });

  it('puts every problem in the error message', () => {
    expect(() => loadConfig(workerEnvSchema, { WORKER_CAPACITY: '0' })).toThrow(
      /Invalid environment:\n {2}- REDIS_URL: .*\n {2}- WORKER_CAPACITY: expected at least 1/,
    );
  });
});
