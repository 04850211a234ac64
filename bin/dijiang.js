#!/usr/bin/env node
// The `dijiang` command runs the compiled CLI; say how to build it rather than fail obscurely.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/apps/cli/src/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    'dijiang is not built yet: run `npm run build` first (`npm start` builds).\n',
  );
  process.exit(1);
}
await import(entry.href);
