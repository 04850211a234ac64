import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { NextFunction, Request, Response } from 'express';

/**
 * The web console's built files (`npm run build` compiles apps/console into dist/console beside
 * the apps; this module runs from dist/apps/gateway/src/console/).
 */
export const CONSOLE_DIR = fileURLToPath(new URL('../../../../console/', import.meta.url));

/**
 * The console keeps an API key in session storage, so nothing but its own files may run in its
 * page: scripts, styles and requests from this origin only, no framing (clickjacking), and no
 * referrer leaving the page.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  // Files are not fingerprinted: browsers revalidate them (ETag) so an upgrade shows at once.
  'Cache-Control': 'no-cache',
};

function secure(response: Response): void {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.setHeader(name, value);
}

/**
 * Serves the console: its page at `/` and its modules and stylesheet under `/console/`. The
 * page refers to everything relatively, so it also works behind a proxy that adds a path prefix.
 * A gateway built without the console fails at boot, saying how to build it.
 */
export function serveConsole(app: NestExpressApplication): void {
  const page = join(CONSOLE_DIR, 'index.html');
  if (!existsSync(page)) {
    throw new Error(`the web console is not built (${page} is missing): run \`npm run build\``);
  }
  app.use((request: Request, response: Response, next: NextFunction) => {
    if ((request.method !== 'GET' && request.method !== 'HEAD') || request.path !== '/') {
      next();
      return;
    }
    secure(response);
    response.sendFile(page);
  });
  app.useStaticAssets(CONSOLE_DIR, {
    prefix: '/console/',
    index: false,
    setHeaders: (response: Response) => {
      secure(response);
    },
  });
}
