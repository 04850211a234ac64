// The project's import graph, for the checks run by `npm run cycles`. Module resolution is
// TypeScript's own, with the project's tsconfig (so the "#…" package.json import aliases resolve
// to sources, without a build). Every import is an edge, `import type` included: what a file may
// not import is decided by what it names, before any compiler erases it.
import ts from 'typescript';

/**
 * @typedef {{ specifier: string, resolved: string | undefined }} Import
 *   `resolved` is the imported project file; undefined for packages and unresolved specifiers.
 * @typedef {{ root: string, files: string[], imports: Map<string, Import[]> }} ImportGraph
 */

/** @param {string} root the folder holding tsconfig.json @returns {ImportGraph} */
export function loadImportGraph(root) {
  const configPath = ts.findConfigFile(root, ts.sys.fileExists, 'tsconfig.json');
  if (configPath === undefined) throw new Error(`tsconfig.json not found in ${root}`);
  const { config } = ts.readConfigFile(configPath, ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root);
  const files = parsed.fileNames.filter((file) => !file.includes('/node_modules/'));
  const inProject = new Set(files);
  /** @type {Map<string, Import[]>} */
  const imports = new Map();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(ts.sys.readFile(file) ?? '', true, true);
    imports.set(
      file,
      importedFiles.map(({ fileName: specifier }) => {
        const resolved = ts.resolveModuleName(specifier, file, parsed.options, ts.sys)
          .resolvedModule?.resolvedFileName;
        return {
          specifier,
          resolved: resolved !== undefined && inProject.has(resolved) ? resolved : undefined,
        };
      }),
    );
  }
  return { root, files, imports };
}
