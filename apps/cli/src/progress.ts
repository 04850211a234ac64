import { Presets, SingleBar } from 'cli-progress';
import { BUILD_STAGE_UNITS } from '#model';
import type { BuildProgress, BuildStage } from '#model';

/** Progress of long work, counted in `unit`s; silent when it is not shown. */
export interface Progress<Phase extends string = string> {
  /** `done` of `total` units so far; `label` names the current phase (e.g. "prompt"). */
  update(done: number, total: number, label?: Phase): void;
  /** Removes the bar from the terminal; later updates start a new one. */
  stop(): void;
}

const silent = { update: () => undefined, stop: () => undefined };

/**
 * A progress bar with the rate and the time left, on stderr, only when stderr is a terminal: a
 * person watching sees the work move, while piped or redirected output (scripts, logs) carries
 * nothing but the results, byte for byte as without a bar. `unit` is what every phase counts, or
 * each phase's own unit by its label (a model build counts parameters, then bytes).
 *
 * Work that holds the event loop (building a model) still shows: each update redraws at once
 * when the last frame is older than cli-progress's throttle (`synchronousUpdate`), so the bar
 * moves as long as the work reports.
 */
export function progressBar<Phase extends string>(
  label: Phase,
  unit: string | Readonly<Record<Phase, string>>,
  stream: NodeJS.WriteStream = process.stderr,
): Progress<Phase> {
  if (!stream.isTTY) return silent;
  let bar: SingleBar | undefined;
  // The rate is measured from the first update of each bar, so that the time spent loading the
  // model or reading the file before the work starts does not lower it.
  let first = { at: 0, done: 0 };
  let shownLabel: Phase = label;
  return {
    update(done, total, phase = label) {
      const now = performance.now();
      if (bar === undefined || phase !== shownLabel) {
        bar?.stop();
        shownLabel = phase;
        const counted = typeof unit === 'string' ? unit : unit[phase];
        bar = new SingleBar(
          {
            stream,
            format: `{label} [{bar}] {percentage}% | {value}/{total} ${counted} | {rate} ${counted}/s | ETA {eta_formatted}`,
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

/**
 * The bar of a model build (`model create`, `model convert`): one bar per stage, labelled with
 * the stage and counted in its units (parameters, then bytes written).
 */
export function buildProgressBar(): { onProgress: BuildProgress; stop: () => void } {
  const bar = progressBar<BuildStage>('weights', BUILD_STAGE_UNITS);
  return {
    onProgress: (done, total, stage) => {
      bar.update(done, total, stage);
    },
    stop: () => {
      bar.stop();
    },
  };
}
