/** Checks on the paths a bundle is written to and built from, made before any long work. */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** Whether `path` is a regular file (false when it is missing). */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Throws unless `dir` can be the bundle folder: an existing folder we may write to, or a path
 * whose nearest existing ancestor is one (the missing folders are created when writing).
 */
export async function checkBundleFolder(dir: string): Promise<void> {
  const target = resolve(dir);
  let path = target;
  for (;;) {
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) {
      path = dirname(path);
      continue;
    }
    if (!info.isDirectory()) {
      throw new Error(
        path === target
          ? `bundle folder ${dir} exists and is not a folder`
          : `bundle folder ${dir} cannot be created: ${path} is not a folder`,
      );
    }
    try {
      await access(path, constants.W_OK);
    } catch (error) {
      throw new Error(`bundle folder ${dir} cannot be written: ${path} is not writable`, {
        cause: error,
      });
    }
    return;
  }
}
