/** Readers of rendered manifests, Dockerfiles and PromQL for test/deploy/kubernetes.test.ts. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { podContainers, type KubeObject } from './kustomize.js';

/** A workload's pod template `spec` (or its `metadata`). */
export function podSpec(
  object: KubeObject,
  part: 'spec' | 'metadata' = 'spec',
): Record<string, unknown> {
  const template = (
    object.spec as { template?: Record<string, Record<string, unknown>> } | undefined
  )?.template;
  const found = template?.[part];
  if (found === undefined)
    throw new Error(`${object.kind} ${object.metadata.name} has no pod ${part}`);
  return found;
}

/** A container of a workload's pod, by name. */
export function container(object: KubeObject, name: string): Record<string, unknown> {
  const found = podContainers(object).find((item) => item.name === name);
  if (found === undefined) throw new Error(`${object.metadata.name} has no container ${name}`);
  return found;
}

const envSchema = (value: unknown) =>
  value as {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
  }[];

/**
 * The environment a container gets, with each Secret reference resolved from `secret` (the
 * example Secret's values): a reference to a key the Secret lacks fails, unless optional.
 */
export function envOf(
  item: Record<string, unknown>,
  secret: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of envSchema(item.env ?? [])) {
    const reference = variable.valueFrom?.secretKeyRef;
    if (reference === undefined) {
      if (variable.value === undefined) throw new Error(`${variable.name} has no value`);
      env[variable.name] = variable.value;
      continue;
    }
    if (reference.name !== 'dijiang-secrets') throw new Error(`unknown Secret ${reference.name}`);
    const value = secret[reference.key];
    if (value === undefined && reference.optional !== true) {
      throw new Error(`${variable.name}: the Secret has no key ${reference.key}`);
    }
    if (value !== undefined) env[variable.name] = value;
  }
  return env;
}

/** The exec form of a Dockerfile's last HEALTHCHECK, e.g. ["node", "dist/…/healthcheck.js"]. */
export function healthcheckCommand(dockerfile: string): string[] {
  const form = /^HEALTHCHECK [^\n]*(?:\\\n[^\n]*)*?CMD (\[[^\n]*\])$/gm;
  const matches = [...dockerfile.matchAll(form)];
  const last = matches.at(-1)?.[1];
  if (last === undefined) throw new Error('no HEALTHCHECK CMD [...] in the Dockerfile');
  return JSON.parse(last) as string[];
}

/**
 * The numeric uid of a Dockerfile's final USER: `node` is uid 1000 in the official Node images
 * the final stage must then be built on; any other user must be created there with `--uid`.
 */
export function dockerfileUser(dockerfile: string): number {
  const user = [...dockerfile.matchAll(/^USER (\S+)$/gm)].at(-1)?.[1];
  const base = [...dockerfile.matchAll(/^FROM (\S+)/gm)].at(-1)?.[1] ?? '';
  if (user === 'node' && /^node:\d/.test(base)) return 1000;
  const created = new RegExp(`useradd --uid (\\d+) .*\\b${user ?? '-'}$`, 'm').exec(dockerfile);
  if (created?.[1] === undefined)
    throw new Error(`cannot tell the uid of USER ${user ?? '(none)'}`);
  return Number(created[1]);
}

export interface Selector {
  metric: string;
  labels: Record<string, string>;
}

/**
 * The metric selectors of a PromQL expression written as `fn(metric{label="value"}) …`. An
 * identifier that is neither a selector nor a function call (a bare metric name, an operator
 * such as `by`) fails, so that no metric escapes the check.
 */
export function promqlSelectors(query: string): Selector[] {
  const selector = /([A-Za-z_:][\w:]*)\s*\{([^}]*)\}/g;
  const selectors = [...query.matchAll(selector)].map(([, metric = '', body = '']) => ({
    metric,
    labels: Object.fromEntries(
      [...body.matchAll(/(\w+)\s*=\s*"([^"]*)"/g)].map(([, label = '', value = '']) => [
        label,
        value,
      ]),
    ),
  }));
  const rest = query.replace(selector, ' ');
  for (const match of rest.matchAll(/[A-Za-z_:][\w:]*/g)) {
    const after = rest.slice(match.index + match[0].length).trimStart();
    if (!after.startsWith('(')) throw new Error(`"${match[0]}" is neither a selector nor a call`);
  }
  return selectors;
}

export interface Kustomize {
  version: string;
  render(dir: string): KubeObject[];
}

/**
 * `kubectl kustomize` when kubectl is installed with kustomize 4 or later (the `patches` field);
 * undefined otherwise.
 */
export function kubectlKustomize(): Kustomize | undefined {
  const probe = spawnSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  const version = (JSON.parse(probe.stdout) as { kustomizeVersion?: string }).kustomizeVersion;
  const major = Number(/^v(\d+)\./.exec(version ?? '')?.[1] ?? 0);
  if (version === undefined || major < 4) return undefined;
  return {
    version: `kubectl with kustomize ${version}`,
    render(dir) {
      const result = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${result.stderr}`);
      return parseAllDocuments(result.stdout).map((document) => document.toJS() as KubeObject);
    },
  };
}

/** The module declaring each validated kind's TypeScript interface (`I` + kind). */
const TYPE_MODULES: Record<string, string> = {
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'apps/v1/StatefulSet': 'kubernetes-models/apps/v1/StatefulSet',
  'batch/v1/Job': 'kubernetes-models/batch/v1/Job',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'v1/PersistentVolumeClaim': 'kubernetes-models/v1/PersistentVolumeClaim',
  'v1/Secret': 'kubernetes-models/v1/Secret',
  'v1/Service': 'kubernetes-models/v1/Service',
  'keda.sh/v1alpha1/ScaledObject': '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject',
};

/**
 * Fields the schemas do not know. The packaged JSON-schema validators leave objects open (a
 * misspelled `readOnlyRootFileSystem` would pass them and be ignored by the API server), so each
 * object is also type-checked as a literal of its kind's TypeScript interface from the same
 * packages, where TypeScript's excess-property check names every unknown field. Returns the
 * compiler's messages per set of objects (none when every field is known).
 */
export function unknownFields(
  root: string,
  sets: Record<string, readonly KubeObject[]>,
): Record<string, string[]> {
  const files = new Map(
    Object.entries(sets).map(([name, objects], setIndex) => {
      const lines = objects.flatMap((object, index) => {
        const key = `${object.apiVersion}/${object.kind}`;
        const module = TYPE_MODULES[key];
        if (module === undefined) throw new Error(`no TypeScript interface for ${key}`);
        return [
          `import type { I${object.kind} as T${index} } from '${module}';`,
          `export const o${index}: T${index} = ${JSON.stringify(object)};`,
        ];
      });
      return [join(root, `.kubernetes-check-${setIndex}.ts`), { name, text: lines.join('\n') }];
    }),
  );
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.fileExists = (path) => files.has(path) || fileExists(path);
  host.readFile = (path) => files.get(path)?.text ?? readFile(path);
  host.getSourceFile = (path, language, ...rest) => {
    const file = files.get(path);
    return file === undefined
      ? getSourceFile(path, language, ...rest)
      : ts.createSourceFile(path, file.text, language);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  return Object.fromEntries(
    [...files].map(([path, { name }]) => [
      name,
      ts
        .getPreEmitDiagnostics(program, program.getSourceFile(path))
        .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')),
    ]),
  );
}
