/**
 * deploy/kubernetes, without a cluster: the base and each overlay are rendered (test/deploy/
 * kustomize.ts, checked against `kubectl kustomize` where one is installed), every object is
 * validated with the Kubernetes and KEDA schemas of `kubernetes-models` and
 * `@kubernetes-models/keda`, and the manifests are checked against the code they run: env
 * schemas, health routes and scripts, the images' users, the shutdown grace and the metrics the
 * autoscaler queries (read from the gateway's real registry).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { gatewayEnvSchema, loadConfig, workerEnvSchema } from '#config';
import { queueOptions } from '#cluster';
import { JobName, modelQueueName, redisKeys } from '#contracts';
import { DEFAULT_MODEL_ID } from '#model';
import { deletePrefix, startGateway, uniquePrefix } from '#testing';
import {
  GatewayMetrics,
  MetricsExposition,
} from '../../apps/gateway/src/metrics/gateway-metrics.js';
import { WaitingWork } from '../../apps/gateway/src/metrics/waiting-work.js';
import { podContainers, renderKustomization, type KubeObject } from './kustomize.js';
import {
  container,
  dockerfileUser,
  envOf,
  healthcheckCommand,
  kubectlKustomize,
  podSpec,
  promqlSelectors,
  unknownFields,
} from './kubernetes-support.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const kube = join(root, 'deploy/kubernetes');
const TARGETS = ['base', 'overlays/cpu', 'overlays/gpu'] as const;
const rendered = Object.fromEntries(
  TARGETS.map((target) => [target, renderKustomization(join(kube, target))]),
) as Record<(typeof TARGETS)[number], KubeObject[]>;
const examples = ['secret.example.yaml', 'redis-single.yaml'].flatMap((file) =>
  parseAllDocuments(readFileSync(join(kube, 'examples', file), 'utf8')).map(
    (document) => document.toJS() as KubeObject,
  ),
);

/** The maintained validators, by apiVersion and kind; an object of any other kind fails. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
};
function validate(object: KubeObject): void {
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (Model === undefined) throw new Error(`no validator for ${object.apiVersion} ${object.kind}`);
  new Model(structuredClone(object) as never).validate();
}

const resourcesSchema = z.object({
  requests: z.object({ cpu: z.string(), memory: z.string() }),
  limits: z.object({ memory: z.string() }),
});

const find = (objects: KubeObject[], kind: string, name: string): KubeObject => {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name}`);
  return found;
};
const secret = z
  .object({ stringData: z.record(z.string(), z.string()) })
  .parse(find(examples, 'Secret', 'dijiang-secrets')).stringData;

describe('deploy/kubernetes renders and validates', () => {
  it.each(TARGETS)('%s: every object passes the Kubernetes or KEDA schema', (target) => {
    const kinds = rendered[target].map((object) => `${object.kind}/${object.metadata.name}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Deployment/dijiang-gateway',
        'Service/dijiang-gateway',
        'PodDisruptionBudget/dijiang-gateway',
        'Deployment/dijiang-worker',
        'ScaledObject/dijiang-worker',
      ]),
    );
    for (const object of rendered[target])
      expect(() => {
        validate(object);
      }).not.toThrow();
  });

  it('the examples (placeholder Secret, try-it Redis) pass the schemas too', () => {
    for (const object of examples)
      expect(() => {
        validate(object);
      }).not.toThrow();
    expect(Object.values(secret).every((value) => value.includes('CHANGE-ME'))).toBe(true);
  });

  it('the validators reject what the API server would', () => {
    const worker = structuredClone(find(rendered['overlays/cpu'], 'Deployment', 'dijiang-worker'));
    podSpec(worker).terminationGracePeriodSeconds = '30s';
    expect(() => {
      validate(worker);
    }).toThrow(/terminationGracePeriodSeconds must be integer/);
    const scaled = structuredClone(find(rendered.base, 'ScaledObject', 'dijiang-worker'));
    (scaled.spec as { triggers: unknown }).triggers = [{ metadata: {} }];
    expect(() => {
      validate(scaled);
    }).toThrow(/triggers\/0 must have required property type/);
  });

  it('every field is one the Kubernetes and KEDA types know', () => {
    const worker = structuredClone(find(rendered['overlays/gpu'], 'Deployment', 'dijiang-worker'));
    const misspelled = container(worker, 'worker');
    misspelled.securityContext = { readOnlyRootFileSystem: true };
    const messages = unknownFields(root, {
      ...rendered,
      examples,
      misspelled: [worker],
    });
    expect(messages.misspelled?.join('\n')).toMatch(
      /'"readOnlyRootFileSystem"' does not exist in type 'ISecurityContext'/,
    );
    delete messages.misspelled;
    expect(messages).toEqual({ base: [], 'overlays/cpu': [], 'overlays/gpu': [], examples: [] });
  });

  const kubectl = kubectlKustomize();
  it.skipIf(kubectl === undefined)(
    `renders as kubectl kustomize does (${kubectl?.version ?? 'no kubectl with kustomize here'})`,
    () => {
      for (const target of TARGETS) {
        const byName = (objects: KubeObject[]) =>
          Object.fromEntries(
            objects.map((object) => [`${object.kind}/${object.metadata.name}`, object]),
          );
        expect(byName(rendered[target]), target).toEqual(
          byName(kubectl?.render(join(kube, target)) ?? []),
        );
      }
    },
  );
});

describe.each(['overlays/cpu', 'overlays/gpu'] as const)('%s against the code', (target) => {
  const objects = rendered[target];
  const gateway = find(objects, 'Deployment', 'dijiang-gateway');
  const worker = find(objects, 'Deployment', 'dijiang-worker');
  const device = target === 'overlays/gpu' ? 'cuda' : 'cpu';

  it('sets only variables the apps read, and the environment parses with their schemas', () => {
    for (const [deployment, schema] of [
      [gateway, gatewayEnvSchema],
      [worker, workerEnvSchema],
    ] as const) {
      const env = envOf(
        container(deployment, deployment === gateway ? 'gateway' : 'worker'),
        secret,
      );
      const known = Object.keys(schema.shape);
      expect(Object.keys(env).filter((name) => !known.includes(name))).toEqual([]);
      expect(() => loadConfig(schema, env)).not.toThrow();
    }
    const workerEnv = envOf(container(worker, 'worker'), secret);
    expect(workerEnv).toMatchObject({ ENGINE_DEVICE: device, MODEL_DIR: '/models' });
    expect(envOf(container(gateway, 'gateway'), secret)).toMatchObject({ HOST: '0.0.0.0' });
  });

  it('gives workers longer to stop than SHUTDOWN_GRACE_MS, default and set', () => {
    const grace = Number(podSpec(worker).terminationGracePeriodSeconds) * 1000;
    const schemaDefault = loadConfig(workerEnvSchema, { REDIS_URL: 'redis://x' }).SHUTDOWN_GRACE_MS;
    const configured = loadConfig(workerEnvSchema, envOf(container(worker, 'worker'), secret));
    expect(schemaDefault).toBe(10_000);
    expect(grace).toBeGreaterThan(schemaDefault);
    expect(grace).toBeGreaterThan(configured.SHUTDOWN_GRACE_MS);
  });

  it("probes the workers with the image's HEALTHCHECK script, which the build produces", () => {
    const image = device === 'cuda' ? 'deploy/worker-cuda.Dockerfile' : 'deploy/worker.Dockerfile';
    const dockerfile = readFileSync(join(root, image), 'utf8');
    const command = healthcheckCommand(dockerfile);
    expect(dockerfile).toMatch(/^WORKDIR \/app$/m);
    const probes = ['startupProbe', 'readinessProbe', 'livenessProbe'].map(
      (probe) =>
        (container(worker, 'worker')[probe] as { exec?: { command?: string[] } }).exec?.command,
    );
    expect(probes).toEqual([command, command, command]);
    expect(existsSync(join(root, command[1] ?? ''))).toBe(true);
  });

  it('runs every pod as its image user, non-root, read-only, no capabilities, RuntimeDefault', () => {
    const users: Record<string, number> = {
      'dijiang-gateway': dockerfileUser(
        readFileSync(join(root, 'deploy/gateway.Dockerfile'), 'utf8'),
      ),
      'dijiang-worker-cpu': dockerfileUser(
        readFileSync(join(root, 'deploy/worker.Dockerfile'), 'utf8'),
      ),
      'dijiang-worker-cuda': dockerfileUser(
        readFileSync(join(root, 'deploy/worker-cuda.Dockerfile'), 'utf8'),
      ),
    };
    for (const object of objects.filter((item) => podContainers(item).length > 0)) {
      const pod = podSpec(object);
      expect(pod.automountServiceAccountToken, object.metadata.name).toBe(false);
      const security = pod.securityContext as Record<string, unknown>;
      expect(security).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const item of podContainers(object)) {
        const [image = '', tag] = String(item.image).split(':');
        expect(tag, `${image} is pinned to a tag`).toMatch(/^[\w.-]+$/);
        expect(security.runAsUser, `${object.metadata.name}/${String(item.name)}`).toBe(
          users[image],
        );
        expect(item.securityContext).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        const sized = resourcesSchema.safeParse(item.resources);
        expect(sized.success, `${String(item.name)} requests cpu and memory, limits memory`).toBe(
          true,
        );
      }
    }
    const workerImage = String(container(worker, 'worker').image);
    expect(workerImage).toMatch(
      device === 'cuda' ? /^dijiang-worker-cuda:/ : /^dijiang-worker-cpu:/,
    );
  });

  it('mounts the model volume read-only in workers; the builder writes the bundle they wait for', () => {
    const pod = podSpec(worker);
    expect(pod.volumes).toContainEqual({
      name: 'models',
      persistentVolumeClaim: { claimName: 'dijiang-models', readOnly: true },
    });
    for (const item of podContainers(worker)) {
      expect(item.volumeMounts).toContainEqual({
        name: 'models',
        mountPath: '/models',
        readOnly: true,
      });
    }
    const bundle = `/models/${DEFAULT_MODEL_ID}/model.json`;
    const builder = container(find(objects, 'Job', 'dijiang-model-builder'), 'model-builder');
    expect((builder.command as string[]).join(' ')).toContain(`test -f ${bundle} ||`);
    expect((builder.command as string[]).join(' ')).toContain('--fp16');
    const wait = podContainers(worker).find((item) => item.name === 'wait-for-model');
    expect((wait?.command as string[]).join(' ')).toContain(`until test -f ${bundle}`);
  });

  it('asks for a GPU only in the GPU overlay', () => {
    const resources = container(worker, 'worker').resources as Record<
      string,
      Record<string, string>
    >;
    const gpus = [resources.requests?.['nvidia.com/gpu'], resources.limits?.['nvidia.com/gpu']];
    expect(gpus).toEqual(device === 'cuda' ? ['1', '1'] : [undefined, undefined]);
  });

  it('serves the gateway on its container port, selected by the Service and the PodDisruptionBudget', () => {
    const labels = (podSpec(gateway, 'metadata') as { labels: Record<string, string> }).labels;
    const service = find(objects, 'Service', 'dijiang-gateway').spec as {
      selector: Record<string, string>;
      ports: { targetPort: string }[];
    };
    const budget = find(objects, 'PodDisruptionBudget', 'dijiang-gateway').spec as {
      selector: { matchLabels: Record<string, string> };
    };
    expect(labels).toMatchObject(service.selector);
    expect(labels).toMatchObject(budget.selector.matchLabels);
    const ports = container(gateway, 'gateway').ports as { name: string; containerPort: number }[];
    expect(ports).toEqual([{ name: service.ports[0]?.targetPort, containerPort: 8080 }]);
    expect(envOf(container(gateway, 'gateway'), secret).PORT).toBe('8080');
  });
});

describe('probes and the autoscaling query against the running code', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('kubernetes');
  let redis: Redis;
  let queue: Queue;
  beforeAll(() => {
    redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(modelQueueName(DEFAULT_MODEL_ID), queueOptions(redis, prefix));
  });
  afterAll(async () => {
    await queue.close();
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it("the gateway's probe routes answer 200 without an API key", async () => {
    const gateway = await startGateway(redisUrl, {
      QUEUE_PREFIX: prefix,
      API_KEYS: 'ops:sk-kube-0123456789',
    });
    try {
      const container = find(rendered['overlays/cpu'], 'Deployment', 'dijiang-gateway');
      const probes = ['startupProbe', 'readinessProbe', 'livenessProbe'].map(
        (probe) =>
          (podContainers(container)[0]?.[probe] as { httpGet: { path: string; port: string } })
            .httpGet,
      );
      for (const { path, port } of probes) {
        expect(port).toBe('http');
        expect((await fetch(`${gateway.url}${path}`)).status, path).toBe(200);
      }
    } finally {
      await gateway.service.stop();
    }
  });

  it('queries only metrics and labels the gateway exports, for the default model', async () => {
    const keys = redisKeys(prefix);
    await queue.add(JobName.Generate, {
      model: DEFAULT_MODEL_ID,
      owner: 'alice',
      input: { text: 'abcd' },
      sampling: { max_tokens: 5 },
    });
    const metrics = new GatewayMetrics(redis, keys);
    new MetricsExposition(metrics, {
      modelQueues: () => Promise.resolve(new Map([[DEFAULT_MODEL_ID, queue]])),
      batchQueue: queue,
      liveWorkers: () => Promise.resolve([]),
      waitingWork: new WaitingWork(redis, keys),
    });
    const exported = await metrics.registry.getMetricsAsJSON();
    for (const target of TARGETS) {
      const trigger = (
        find(rendered[target], 'ScaledObject', 'dijiang-worker').spec as {
          triggers: { type: string; metadata: { query: string; threshold: string } }[];
        }
      ).triggers;
      expect(trigger.map((item) => item.type)).toEqual(['prometheus']);
      const selectors = promqlSelectors(trigger[0]?.metadata.query ?? '');
      expect(selectors.length).toBeGreaterThan(0);
      for (const { metric, labels } of selectors) {
        const found = exported.find((item) => item.name === metric);
        expect(found, `${metric} is exported`).toBeDefined();
        for (const [label, value] of Object.entries(labels)) {
          expect(found?.values.map((sample) => sample.labels[label])).toContain(value);
        }
      }
      const values = Object.fromEntries(
        exported.map((item) => [
          item.name,
          item.values.find((sample) => sample.labels.model === DEFAULT_MODEL_ID)?.value,
        ]),
      );
      expect(values.dijiang_queue_waiting_output_tokens).toBe(5);
      expect(values.dijiang_queue_waiting_input_bytes).toBe(4);
    }
  });

  it('never scales workers to zero, and targets the worker Deployment', () => {
    for (const target of TARGETS) {
      const spec = find(rendered[target], 'ScaledObject', 'dijiang-worker').spec as {
        minReplicaCount: number;
        maxReplicaCount: number;
        scaleTargetRef: { name: string };
      };
      expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
      expect(spec.maxReplicaCount).toBeGreaterThanOrEqual(spec.minReplicaCount);
      expect(find(rendered[target], 'Deployment', spec.scaleTargetRef.name)).toBeDefined();
    }
  });
});
