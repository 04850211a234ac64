// Import boundaries over the TypeScript sources (graph: import-graph.js). Exits 1 and lists every
// offending import when:
// - a file outside libs/engine/src/ort/ imports onnxruntime-node (tests included): one module
//   owns onnxruntime (DESIGN.md conventions);
// - the worker's main thread (apps/worker/src/main.ts), the engine's client entry
//   (libs/engine/src/index.ts) or any file of libs/model/src reaches onnxruntime-node through its
//   imports: a thread that serves BullMQ locks must never load the native addon, and libs/model
//   is pure. The engine thread is started by URL (`new Worker(url)`), not imported;
// - a file of one app imports a file of another app (shared code belongs in libs/);
// - a controller imports another controller (shared code belongs in a service).
import { relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadImportGraph } from './import-graph.js';

const ORT_PACKAGE = 'onnxruntime-node';
const ORT_OWNER = 'libs/engine/src/ort/';
/** Entries whose import graph must not reach onnxruntime-node, besides every libs/model/src file. */
const ADDON_FREE_ENTRIES = [
  'apps/worker/src/main.ts',
  'apps/worker/src/healthcheck.ts',
  'apps/gateway/src/main.ts',
  'libs/engine/src/index.ts',
];
const PURE_LIBRARY = 'libs/model/src/';

/** @param {string} specifier */
function isOrt(specifier) {
  return specifier === ORT_PACKAGE || specifier.startsWith(`${ORT_PACKAGE}/`);
}

/** @param {string} path a root-relative path @returns {string | undefined} the app's folder */
function appOf(path) {
  return /^apps\/[^/]+\//.exec(path)?.[0];
}

/**
 * The shortest import chain from `entry` to a file that imports onnxruntime-node, as
 * root-relative paths ending with the package name; undefined when there is none.
 * @param {import('./import-graph.js').ImportGraph} graph
 * @param {string} entry an absolute path
 * @returns {string[] | undefined}
 */
function chainToOrt(graph, entry) {
  /** @type {Map<string, string | undefined>} */
  const reachedFrom = new Map([[entry, undefined]]);
  const queue = [entry];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const fileImports = graph.imports.get(next) ?? [];
    if (fileImports.some(({ specifier }) => isOrt(specifier))) {
      const chain = [ORT_PACKAGE];
      for (let file = next; file !== undefined; file = reachedFrom.get(file)) {
        chain.unshift(relative(graph.root, file));
      }
      return chain;
    }
    for (const { resolved } of fileImports) {
      if (resolved !== undefined && !reachedFrom.has(resolved)) {
        reachedFrom.set(resolved, next);
        queue.push(resolved);
      }
    }
  }
  return undefined;
}

/**
 * Every boundary violation of the project at `root`, one line each; empty when there is none.
 * @param {string} root the folder holding tsconfig.json
 * @returns {string[]}
 */
export function findBoundaryViolations(root) {
  const graph = loadImportGraph(root);
  const violations = [];
  const byPath = new Map(graph.files.map((file) => [relative(root, file), file]));
  for (const [file, fileImports] of graph.imports) {
    const path = relative(root, file);
    for (const { specifier, resolved } of fileImports) {
      if (isOrt(specifier) && !path.startsWith(ORT_OWNER)) {
        violations.push(`${path} imports ${specifier}: only ${ORT_OWNER} may`);
      }
      if (resolved === undefined) continue;
      const target = relative(root, resolved);
      const app = appOf(path);
      const targetApp = appOf(target);
      if (app !== undefined && targetApp !== undefined && app !== targetApp) {
        violations.push(`${path} imports ${target}: an app may not import another app`);
      }
      if (path.endsWith('.controller.ts') && target.endsWith('.controller.ts') && path !== target) {
        violations.push(`${path} imports ${target}: a controller may not import a controller`);
      }
    }
  }
  const entries = [
    ...ADDON_FREE_ENTRIES,
    ...[...byPath.keys()].filter((path) => path.startsWith(PURE_LIBRARY)).sort(),
  ];
  for (const entry of entries) {
    const file = byPath.get(entry);
    if (file === undefined) {
      violations.push(`${entry} is missing: update the entries of scripts/check-boundaries.js`);
      continue;
    }
    const chain = chainToOrt(graph, file);
    if (chain !== undefined) {
      violations.push(`${entry} reaches ${ORT_PACKAGE}: ${chain.join(' -> ')}`);
    }
  }
  return violations;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const root = process.cwd();
  const violations = findBoundaryViolations(root);
  if (violations.length > 0) {
    console.error(`${violations.length} import boundary violation(s):`);
    for (const violation of violations) console.error(`  ${violation}`);
    process.exit(1);
  }
  console.log('No import boundary violations.');
}
