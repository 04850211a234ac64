/**
 * A small kustomize for the tests: renders deploy/kubernetes without a kustomize binary, which a
 * fresh machine may lack (Debian's kubectl 1.20 embeds kustomize 2.0.3, too old for `patches`).
 * It implements exactly the fields the project's kustomizations use and refuses any other, so it
 * cannot silently ignore one: `resources` (files and kustomization folders), `namespace`,
 * `patches` (strategic-merge patch files naming their target by kind and name) and `images`,
 * applied in kustomize's order (a folder's resources are rendered with its own transformers
 * first). Strategic merge follows Kubernetes' merge keys for the lists the patches touch; lists
 * of custom resources (KEDA's) are replaced, as kustomize does without their schema. Where a
 * kustomize binary exists, the tests check this rendering equals its output.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { z } from 'zod';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

const kustomizationSchema = z.strictObject({
  apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
  kind: z.literal('Kustomization'),
  namespace: z.string().optional(),
  resources: z.array(z.string()).default([]),
  patches: z.array(z.strictObject({ path: z.string() })).default([]),
  images: z
    .array(
      z.strictObject({
        name: z.string(),
        newName: z.string().optional(),
        newTag: z.string().optional(),
      }),
    )
    .default([]),
});

const objectSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.looseObject({ name: z.string(), namespace: z.string().optional() }),
});

/** Merge keys of the built-in kinds' lists (Kubernetes' `patchMergeKey`s) that patches touch. */
const MERGE_KEYS: Readonly<Record<string, string>> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
};

type Json = unknown;
const isMap = (value: Json): value is Record<string, Json> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Strategic merge of `patch` into `target`: maps merge, lists with a merge key merge by it (items
 * only in the patch come first, as kustomize places them), other lists and scalars are replaced.
 */
export function strategicMerge(target: Json, patch: Json, builtIn: boolean, field = ''): Json {
  if (isMap(target) && isMap(patch)) {
    const merged: Record<string, Json> = { ...target };
    for (const [key, value] of Object.entries(patch)) {
      merged[key] = key in target ? strategicMerge(target[key], value, builtIn, key) : value;
    }
    return merged;
  }
  const mergeKey = builtIn ? MERGE_KEYS[field] : undefined;
  if (mergeKey !== undefined && Array.isArray(target) && Array.isArray(patch)) {
    const keyOf = (item: Json): Json => (isMap(item) ? item[mergeKey] : undefined);
    const patchItems = patch as Json[];
    const patchByKey = new Map(patchItems.map((item) => [keyOf(item), item]));
    const targetKeys = new Set((target as Json[]).map(keyOf));
    return [
      ...patchItems.filter((item) => !targetKeys.has(keyOf(item))),
      ...(target as Json[]).map((item) => {
        const change = patchByKey.get(keyOf(item));
        return change === undefined ? item : strategicMerge(item, change, builtIn);
      }),
    ];
  }
  return patch;
}

function readObjects(path: string): KubeObject[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((document) => {
    if (document.errors.length > 0) throw new Error(`${path}: ${document.errors[0]?.message}`);
    return objectSchema.parse(document.toJS()) as KubeObject;
  });
}

/** Every container of a workload's pod template (init containers included). */
export function podContainers(object: KubeObject): Record<string, Json>[] {
  const spec = (object as { spec?: { template?: { spec?: Record<string, Json> } } }).spec?.template
    ?.spec;
  if (spec === undefined) return [];
  return [spec.initContainers, spec.containers].flatMap((list) =>
    Array.isArray(list) ? list.filter(isMap) : [],
  );
}

/** Built-in kinds have core or `*.k8s.io` API groups (or none); the others are custom. */
const isBuiltIn = (object: KubeObject): boolean => {
  const group = object.apiVersion.includes('/') ? object.apiVersion.split('/')[0] : '';
  return group === '' || !group?.includes('.') || group.endsWith('.k8s.io');
};

/** The objects `kubectl kustomize dir` would print (in file order, not kustomize's kind order). */
export function renderKustomization(dir: string): KubeObject[] {
  const kustomization = kustomizationSchema.parse(
    parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')),
  );
  let objects = kustomization.resources.flatMap((resource) => {
    const path = join(dir, resource);
    return statSync(path).isDirectory() ? renderKustomization(path) : readObjects(path);
  });
  if (kustomization.namespace !== undefined) {
    const namespace = kustomization.namespace;
    objects = objects.map((object) => ({ ...object, metadata: { ...object.metadata, namespace } }));
  }
  for (const { path } of kustomization.patches) {
    for (const patch of readObjects(join(dir, path))) {
      const index = objects.findIndex(
        (object) => object.kind === patch.kind && object.metadata.name === patch.metadata.name,
      );
      const target = objects[index];
      if (target === undefined) {
        throw new Error(`${path}: no ${patch.kind} ${patch.metadata.name} to patch`);
      }
      objects[index] = strategicMerge(target, patch, isBuiltIn(target)) as KubeObject;
    }
  }
  for (const image of kustomization.images) {
    for (const container of objects.flatMap(podContainers)) {
      const [name = '', tag] = String(container.image).split(':');
      if (name !== image.name) continue;
      const newTag = image.newTag ?? tag;
      container.image = `${image.newName ?? name}${newTag === undefined ? '' : `:${newTag}`}`;
    }
  }
  return objects;
}
