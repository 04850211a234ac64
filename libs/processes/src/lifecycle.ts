/**
 * Process lifecycle shared by the apps: fail at boot with a readable message, and shut down once
 * on SIGTERM, SIGINT or the loss of the parent that launched us (IPC channel closed).
 */

/** Runs an app's boot; any error ends the process with its message and exit code 1. */
export function bootOrExit(boot: () => Promise<void>): void {
  boot().catch((error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${message}\n`);
    process.exit(1);
  });
}

/**
 * Calls `shutdown` once on the first stop signal and exits 0 when it settles (1 if it throws).
 * A second signal exits at once, for an operator who does not want to wait.
 */
export function onShutdown(shutdown: (reason: string) => Promise<void>): void {
  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) {
      process.exit(1);
    }
    stopping = true;
    shutdown(reason).then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`shutdown failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.on('SIGINT', () => {
    stop('SIGINT');
  });
  // Started by `dijiang up` with an IPC channel: if the launcher dies, do not linger.
  process.on('disconnect', () => {
    stop('launcher gone');
  });
}
