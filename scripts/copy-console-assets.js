// Copies the web console's page and stylesheet (apps/console/public) beside its compiled modules
// in dist/console, the one folder the gateway serves the console from.
import { cpSync } from 'node:fs';

cpSync(
  new URL('../apps/console/public/', import.meta.url),
  new URL('../dist/console/', import.meta.url),
  {
    recursive: true,
  },
);
