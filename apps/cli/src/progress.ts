import { Presets, SingleBar } from 'cli-progress';

/** Progress of long work, counted in `unit`s; silent when it is not shown. */
export interface Progress {
  /** `done` of `total` units so far; `label` names the current phase (e.g. "prompt"). */
  update(done: number, total: number, label?: string): void;
  /** Removes the bar from the terminal; later updates start a new one. */
  stop(): void;
}

const silent: Progress = { update: () => undefined, stop: () => undefined };

/**
 * A progress bar with the rate and the time left, on stderr, only when stderr is a terminal: a
 * person watching sees the work move, while piped or redirected output (scripts, logs) carries
 * nothing but the results, byte for byte as without a bar.
 */
export function progressBar(
  label: string,
  unit: string,
  stream: NodeJS.WriteStream = process.stderr,
): Progress {
  if (!stream.isTTY) return silent;
  let bar: SingleBar | undefined;
  // The rate is measured from the first update of each bar, so that the time spent loading the
  // model or reading the file before the work starts does not lower it.
  let first = { at: 0, done: 0 };
  let shownLabel = label;
  return {
    update(done, total, phase = label) {
      const now = performance.now();
      if (bar === undefined || phase !== shownLabel) {
        bar?.stop();
        shownLabel = phase;
        bar = new SingleBar(
          {
            stream,
            format: `{label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`,
            hideCursor: true,
            clearOnComplete: true,
            etaBuffer: 50,
            barsize: 30,
          },
          Presets.shades_classic,
        );
        first = { at: now, done };
        bar.start(total, done, { label: phase, rate: '-' });
        return;
      }
      const seconds = (now - first.at) / 1000;
      const rate = seconds > 0 ? ((done - first.done) / seconds).toFixed(0) : '-';
      bar.setTotal(total);
      bar.update(done, { rate });
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
