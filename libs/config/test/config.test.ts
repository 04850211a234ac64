import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  gatewayEnvSchema,
  isHashTagged,
  launcherEnvSchema,
  loadConfig,
  redisTargetOf,
  requireRedisTarget,
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
    expect(problems[0]).toMatch(
      /^REDIS_URL: .*redis:\/\/.*or REDIS_SENTINELS with REDIS_SENTINEL_NAME .*REDIS_CLUSTER_NODES .*it is not set/,
    );
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

  it('masks the credentials of a URL it shows in an error', () => {
    const problems = problemsOf(() =>
      loadConfig(workerEnvSchema, { REDIS_URL: 'http://:s3cret@redis.internal:6379' }),
    );
    expect(problems).toEqual([
      expect.stringMatching(
        /^REDIS_URL: expected a redis:\/\/.* \(got "http:\/\/\*\*\*@redis\.internal:6379"\)$/,
      ),
    ]);
    expect(problems.join('\n')).not.toContain('s3cret');
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
      /Invalid environment:\n {2}- WORKER_CAPACITY: expected at least 1.*\n {2}- REDIS_URL: /,
    );
  });

  describe('Redis modes', () => {
    const sentinels = {
      REDIS_SENTINELS: '10.0.0.1:26379,[::1]:26380',
      REDIS_SENTINEL_NAME: 'main',
    };

    it('reads Sentinel and Cluster targets, passwords included', () => {
      const sentinel = loadConfig(workerEnvSchema, {
        ...sentinels,
        REDIS_PASSWORD: 'pw',
        REDIS_SENTINEL_PASSWORD: 'spw',
      });
      expect(requireRedisTarget(sentinel)).toEqual({
        mode: 'sentinel',
        sentinels: [
          { host: '10.0.0.1', port: 26379 },
          { host: '::1', port: 26380 },
        ],
        name: 'main',
        password: 'pw',
        sentinelPassword: 'spw',
      });
      const cluster = loadConfig(gatewayEnvSchema, {
        REDIS_CLUSTER_NODES: 'redis-0:7000, redis-1:7001',
        QUEUE_PREFIX: '{dijiang}',
      });
      expect(requireRedisTarget(cluster)).toEqual({
        mode: 'cluster',
        nodes: [
          { host: 'redis-0', port: 7000 },
          { host: 'redis-1', port: 7001 },
        ],
        password: undefined,
      });
      expect(requireRedisTarget(loadConfig(workerEnvSchema, { REDIS_URL: 'redis://r:1' }))).toEqual(
        { mode: 'single', url: 'redis://r:1' },
      );
    });

    it('refuses two modes at once, naming both variables', () => {
      expect(
        problemsOf(() =>
          loadConfig(gatewayEnvSchema, {
            REDIS_URL: 'redis://r:1',
            REDIS_CLUSTER_NODES: 'a:1',
            QUEUE_PREFIX: '{d}',
          }),
        ),
      ).toEqual([
        'REDIS_CLUSTER_NODES: set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES; ' +
          'REDIS_URL and REDIS_CLUSTER_NODES are set (got "a:1")',
      ]);
    });

    it('needs the sentinel name, and refuses the variables of a mode not chosen', () => {
      expect(problemsOf(() => loadConfig(workerEnvSchema, { REDIS_SENTINELS: 'a:26379' }))).toEqual(
        [
          'REDIS_SENTINEL_NAME: REDIS_SENTINELS needs the name of the primary the sentinels ' +
            'monitor (it is not set)',
        ],
      );
      expect(
        problemsOf(() =>
          loadConfig(workerEnvSchema, { REDIS_URL: 'redis://r:1', REDIS_PASSWORD: 'pw' }),
        ),
      ).toEqual([
        expect.stringMatching(
          /^REDIS_PASSWORD: only used with .*goes in the URL.*\(its value is not shown\)$/,
        ),
      ]);
    });

    it('names a malformed node list', () => {
      expect(
        problemsOf(() =>
          loadConfig(workerEnvSchema, { REDIS_CLUSTER_NODES: 'a:1,b', QUEUE_PREFIX: '{x}' }),
        ),
      ).toEqual([
        expect.stringMatching(
          /^REDIS_CLUSTER_NODES: expected comma-separated host:port .*\(got "a:1,b"\)$/,
        ),
      ]);
      expect(
        problemsOf(() => loadConfig(workerEnvSchema, { ...sentinels, REDIS_SENTINELS: 'a:70000' })),
      ).toHaveLength(1);
    });

    it('requires a hash-tagged QUEUE_PREFIX in cluster mode, saying why', () => {
      for (const prefix of [undefined, 'dijiang', '{}dijiang', 'dijiang}{']) {
        const problems = problemsOf(() =>
          loadConfig(workerEnvSchema, {
            REDIS_CLUSTER_NODES: 'a:7000',
            ...(prefix === undefined ? {} : { QUEUE_PREFIX: prefix }),
          }),
        );
        expect(problems).toEqual([
          expect.stringMatching(
            /^QUEUE_PREFIX: Redis Cluster needs a hash-tagged prefix such as \{dijiang\}: .*one slot/,
          ),
        ]);
      }
      expect(isHashTagged('{dijiang}')).toBe(true);
      expect(isHashTagged('team-{a}-x')).toBe(true);
      // A single Redis takes any prefix.
      expect(loadConfig(workerEnvSchema, { REDIS_URL: 'redis://r:1' }).QUEUE_PREFIX).toBe(
        'dijiang',
      );
    });

    it('lets the launcher start its own Redis when no mode is set, and passes the others on', () => {
      expect(redisTargetOf(loadConfig(launcherEnvSchema, {}))).toBeUndefined();
      expect(redisTargetOf(loadConfig(launcherEnvSchema, sentinels))?.mode).toBe('sentinel');
      expect(
        problemsOf(() => loadConfig(launcherEnvSchema, { REDIS_CLUSTER_NODES: 'a:1' })),
      ).toEqual([expect.stringMatching(/^QUEUE_PREFIX: Redis Cluster needs a hash-tagged prefix/)]);
    });

    it('starts a managed Sentinel set only when no Redis is given', () => {
      expect(loadConfig(launcherEnvSchema, {}).MANAGED_REDIS).toBe('single');
      expect(loadConfig(launcherEnvSchema, { MANAGED_REDIS: 'sentinel' }).MANAGED_REDIS).toBe(
        'sentinel',
      );
      expect(
        problemsOf(() =>
          loadConfig(launcherEnvSchema, { MANAGED_REDIS: 'sentinel', REDIS_URL: 'redis://r:1' }),
        ),
      ).toEqual([expect.stringMatching(/^MANAGED_REDIS: a managed Sentinel set is started only/)]);
      expect(problemsOf(() => loadConfig(launcherEnvSchema, { MANAGED_REDIS: 'cluster' }))).toEqual(
        [expect.stringMatching(/^MANAGED_REDIS: expected one of single, sentinel/)],
      );
    });
  });
});
