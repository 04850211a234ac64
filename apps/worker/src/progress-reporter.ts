import type { Job } from 'bullmq';
import type { JobProgress, WorkerRecord } from '#contracts';

/** Progress is written to BullMQ at most this often per job. @defaultValue 1000 ms */
const PROGRESS_INTERVAL_MS = 1000;

/** Keeps BullMQ's progress record current: phase, tokens, and which worker holds the job. */
export class ProgressReporter {
  private promptTotal = 0;
  private completion = 0;
  private phase: JobProgress['phase'] = 'prefill';
  private lastWrite = 0;

  constructor(
    private readonly job: Job,
    private readonly worker: Pick<WorkerRecord, 'id' | 'host' | 'pid'>,
  ) {}

  async report(
    phase: JobProgress['phase'],
    promptDone: number,
    promptTotal: number,
    completion: number,
    force = false,
  ): Promise<void> {
    const changed = phase !== this.phase;
    this.phase = phase;
    this.promptTotal = promptTotal;
    this.completion = completion;
    const now = Date.now();
    if (!force && !changed && now - this.lastWrite < PROGRESS_INTERVAL_MS) return;
    this.lastWrite = now;
    const progress: JobProgress = {
      phase,
      promptTokensDone: promptDone,
      promptTokensTotal: promptTotal,
      completionTokens: completion,
      worker: this.worker,
      updatedAt: new Date(now).toISOString(),
    };
    await this.job.updateProgress(progress);
  }

  /** Prefill progress; `onWrite` also runs (for the job's stream) when the record is written. */
  async prefill(
    done: number,
    total: number,
    onWrite: (done: number, total: number) => Promise<void>,
  ): Promise<void> {
    const due = Date.now() - this.lastWrite >= PROGRESS_INTERVAL_MS || done === total;
    await this.report('prefill', done, total, this.completion);
    if (due) await onWrite(done, total);
  }

  async tokenGenerated(): Promise<void> {
    await this.report('decode', this.promptTotal, this.promptTotal, this.completion + 1);
  }
}
