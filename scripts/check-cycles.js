// Import-cycle check over the TypeScript sources (graph: import-graph.js). Exits 1 and prints
// every cycle found.
import { relative } from 'node:path';
import { loadImportGraph } from './import-graph.js';

const root = process.cwd();
const { files, imports } = loadImportGraph(root);
/** @type {Map<string, string[]>} */
const edges = new Map();
for (const [file, fileImports] of imports) {
  edges.set(
    file,
    fileImports.flatMap(({ resolved }) => (resolved === undefined ? [] : [resolved])),
  );
}

// Tarjan's strongly connected components: every component of more than one file is a cycle.
let counter = 0;
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const cycles = [];
function visit(file) {
  index.set(file, counter);
  low.set(file, counter);
  counter += 1;
  stack.push(file);
  onStack.add(file);
  for (const target of edges.get(file) ?? []) {
    if (!index.has(target)) {
      visit(target);
      low.set(file, Math.min(low.get(file), low.get(target)));
    } else if (onStack.has(target)) {
      low.set(file, Math.min(low.get(file), index.get(target)));
    }
  }
  if (low.get(file) === index.get(file)) {
    const component = [];
    let member;
    do {
      member = stack.pop();
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    const selfImport = (edges.get(file) ?? []).includes(file);
    if (component.length > 1 || selfImport) cycles.push(component);
  }
}
for (const file of files) if (!index.has(file)) visit(file);

if (cycles.length > 0) {
  console.error(`${cycles.length} import cycle(s):`);
  for (const cycle of cycles)
    console.error(`  ${cycle.map((f) => relative(root, f)).join(' <-> ')}`);
  process.exit(1);
}
console.log(`No import cycles in ${files.length} files.`);
