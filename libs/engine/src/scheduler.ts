import type { ModelConfig, Tokenizer } from '#model';
import { headDim } from '#model';
import { checkpointDue, promptEndCheckpointDue, takeCheckpoint } from './checkpoint-policy.js';
import {
  emptyEngineStats,
  recordDecodeStep,
  recordPrefillChunk,
  type EngineStats,
} from './engine-stats.js';
import type { ChunkRequest, ChunkResult, RunChunk } from './ort/chunk.js';
import { OutputProcessor } from './output-processor.js';
import { defaultSchedulerOptions, type SchedulerOptions } from './scheduler-options.js';
import type { FinishReason, SequenceEvent, SequenceRequest, SequenceStart } from './protocol.js';
import type { Sequence } from './sequence.js';
import { applyStart, tokenizeSequence } from './sequence-start.js';
import { StateBatch } from './state-batch.js';

/**
 * While sequences decode, a tick's prefill chunk is sized to cost this share of the decode step:
 * a tick then takes about 1.6 decode steps, so interactive per-token latency stays well within 2x
 * of its unloaded value, and documents still advance every tick. At 1.0 the bound would be the
 * 2x itself, with no room for timing noise. @defaultValue 0.6
 */
const PREFILL_SHARE_OF_DECODE = 0.6;

/**
 * The continuous-batching loop of one engine (DESIGN.md decision 2). Each tick steps every
 * decoding sequence together (batch B, T = 1), then advances one prefill by a bounded chunk. The
 * chunk is sized so the prefill costs a fixed share of the decode step while sequences decode
 * (PREFILL_SHARE_OF_DECODE), which bounds their per-token latency to about 1.6x its unloaded
 * value; with nothing decoding it is `maxPrefillChunk`. Prefills are served by priority,
 * round-robin within a priority, so one long document never stalls other work of its class.
 */
export class Scheduler {
  private readonly sequences = new Map<string, Sequence>();
  private readonly stateSize: number;
  /** Where decode steps gather their sequences' states and scatter them back. */
  private readonly decodeStates: StateBatch;
  private tickCount = 0;
  /** Running averages that size prefill chunks. */
  private decodeMs = 0;
  private prefillTokensPerMs = 0;
  /** Running totals for monitoring (engine-stats.ts). */
  readonly stats: EngineStats = emptyEngineStats();
  private events: SequenceEvent[] = [];
  private readonly output: OutputProcessor;

  constructor(
    private readonly config: ModelConfig,
    private readonly tokenizer: Tokenizer,
    private readonly runChunk: RunChunk,
    private readonly options: SchedulerOptions = defaultSchedulerOptions,
  ) {
    if (config.attention !== 'dijiang') {
      throw new Error(
        `the engine serves DiJiang models; this bundle uses '${config.attention}' attention ` +
          '(softmax bundles are baselines for the graph benchmarks)',
      );
    }
    const d = headDim(config);
    const layerBlock = config.numHeads * d * d;
    this.stateSize = config.numLayers * layerBlock;
    this.decodeStates = new StateBatch(config.numLayers, layerBlock);
    this.output = new OutputProcessor(tokenizer);
  }

  get stateFloats(): number {
    return this.stateSize;
  }

  /** Sequences not finished yet. */
  get active(): number {
    return this.sequences.size;
  }

  /** Whether a tick would do anything. */
  get hasWork(): boolean {
    for (const sequence of this.sequences.values()) {
      if (
        sequence.phase === 'prefill' ||
        sequence.phase === 'decode' ||
        sequence.cancelled ||
        sequence.suspended
      ) {
        return true;
      }
    }
    return false;
  }

  /** Tokenizes the request and reports its size; the sequence waits for `start`. */
  submit(request: SequenceRequest): void {
    if (this.sequences.has(request.id)) throw new Error(`sequence ${request.id} already exists`);
    try {
      const sequence = tokenizeSequence(request, this.tokenizer, this.config, this.stateSize);
      this.sequences.set(request.id, sequence);
      this.emit({
        type: 'tokenized',
        id: request.id,
        tokenCount: sequence.inputCount,
        prefixes: sequence.prefixes,
      });
    } catch (error) {
      this.emit({ type: 'failed', id: request.id, message: errorMessage(error) });
    }
  }

  /** Sets where a tokenized sequence starts (fresh, a checkpoint, a cached prefix or a saved state). */
  start(id: string, start: SequenceStart): void {
    const sequence = this.sequences.get(id);
    if (sequence?.phase !== 'tokenized') return;
    try {
      const finishReason = applyStart(sequence, start, this.stateSize, this.output);
      if (finishReason !== undefined) this.finish(sequence, finishReason);
    } catch (error) {
      this.fail(sequence, error);
    }
  }

  /** Stops a sequence at the next tick, keeping what it produced. */
  cancel(id: string): void {
    const sequence = this.sequences.get(id);
    if (sequence !== undefined) sequence.cancelled = true;
  }

  /**
   * Stops a sequence at the next tick with a final checkpoint, so that another engine can
   * resume it exactly (used when a worker shuts down).
   */
  suspend(id: string): void {
    const sequence = this.sequences.get(id);
    if (sequence !== undefined) sequence.suspended = true;
  }

  /** Events produced since the last call. */
  drainEvents(): SequenceEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  /** One scheduling step: cancellations, one decode step for all decoders, one prefill chunk. */
  async tick(): Promise<void> {
    this.tickCount += 1;
    for (const sequence of this.sequences.values()) {
      if (sequence.cancelled) this.finish(sequence, 'cancelled');
      else if (sequence.suspended) this.suspendNow(sequence);
    }
    const decoders = [...this.sequences.values()]
      .filter((sequence) => sequence.phase === 'decode')
      .sort(
        (a, b) => a.request.priority - b.request.priority || a.lastServedTick - b.lastServedTick,
      )
      .slice(0, this.options.maxBatch);
    if (decoders.length > 0) await this.decodeStep(decoders);
    const prefill = this.nextPrefill();
    if (prefill !== undefined) await this.prefillStep(prefill, decoders.length > 0);
  }

  private nextPrefill(): Sequence | undefined {
    let best: Sequence | undefined;
    for (const sequence of this.sequences.values()) {
      if (sequence.phase !== 'prefill') continue;
      if (
        best === undefined ||
        sequence.request.priority < best.request.priority ||
        (sequence.request.priority === best.request.priority &&
          sequence.lastServedTick < best.lastServedTick)
      ) {
        best = sequence;
      }
    }
    return best;
  }

  private prefillBudget(decoding: boolean): number {
    const { maxPrefillChunk, minPrefillChunk } = this.options;
    if (!decoding) return maxPrefillChunk;
    if (this.prefillTokensPerMs === 0) return minPrefillChunk;
    const matched = Math.round(PREFILL_SHARE_OF_DECODE * this.decodeMs * this.prefillTokensPerMs);
    return Math.min(maxPrefillChunk, Math.max(minPrefillChunk, matched));
  }

  private async prefillStep(sequence: Sequence, decoding: boolean): Promise<void> {
    sequence.lastServedTick = this.tickCount;
    const from = sequence.absorbed;
    // A resumed generation's replayed tokens are fed by decode steps, one at a time as they were
    // first fed: a chunk sums in another float order, and a sampled near-tie could then flip.
    let end = Math.min(sequence.prefillEnd, from + this.prefillBudget(decoding));
    // End chunks on prefix-cache boundaries so that the state there can be shared.
    const boundary = sequence.prefixes.find((prefix) => prefix.tokens > from)?.tokens;
    if (boundary !== undefined && boundary < end) end = boundary;
    const chunk = end - from;
    const inputIds = sequence.tokens.slice(from, end);
    const scoring = sequence.request.kind === 'score';
    const started = performance.now();
    let result: ChunkResultWithState;
    try {
      result = await this.runWithState({
        inputIds,
        batch: 1,
        chunk,
        startPos: [sequence.position],
        validLen: [chunk],
        state: sequence.state,
        ...(scoring ? { targetIds: sequence.tokens.slice(from + 1, end + 1) } : {}),
      });
    } catch (error) {
      this.fail(sequence, error);
      return;
    }
    const elapsed = Math.max(performance.now() - started, 0.01);
    recordPrefillChunk(this.stats, chunk, elapsed);
    this.prefillTokensPerMs = average(this.prefillTokensPerMs, chunk / elapsed);
    // Copied into the sequence's own array: no allocation per chunk, which on a long document
    // would churn the allocator (and the process's resident memory) for nothing.
    sequence.state.set(result.state);
    sequence.promptChunks += 1;
    sequence.absorbed = end;
    sequence.position += chunk;
    if (scoring && result.targetLogprobs !== undefined) {
      sequence.logprobs?.set(result.targetLogprobs, from);
    }
    const total = sequence.prefillEnd;
    this.emit({ type: 'progress', id: sequence.request.id, done: end, total });
    if (sequence.prefixes.some((prefix) => prefix.tokens === end)) {
      const hash = sequence.prefixes.find((prefix) => prefix.tokens === end)?.hash ?? '';
      this.emit({
        type: 'prefix-state',
        id: sequence.request.id,
        hash,
        tokens: end,
        state: sequence.state.slice().buffer,
      });
    }
    if (end < total) {
      sequence.sinceCheckpoint.tokens += chunk;
      this.checkpoint(sequence);
      return;
    }
    if (sequence.request.kind !== 'generate') {
      this.finish(sequence, 'stop');
      return;
    }
    sequence.phase = 'decode';
    if (end < sequence.feedEnd) return;
    if (promptEndCheckpointDue(sequence, chunk, this.options.minPrefillChunk)) {
      // Ahead of the first token, so a resume that finds any streamed token finds this state too.
      this.emit(takeCheckpoint(sequence, performance.now()));
    }
    this.sampleAndEmit(sequence, result.logits, result.logitsLogNormaliser[0]);
  }

  private async decodeStep(decoders: Sequence[]): Promise<void> {
    const batch = decoders.length;
    const started = performance.now();
    let result: ChunkResultWithState;
    try {
      result = await this.runWithState({
        inputIds: decoders.map((sequence) => sequence.nextToken()),
        batch,
        chunk: 1,
        startPos: decoders.map((sequence) => sequence.position),
        validLen: new Array<number>(batch).fill(1),
        state: this.decodeStates.gather(decoders.map((sequence) => sequence.state)),
      });
    } catch (error) {
      for (const sequence of decoders) this.fail(sequence, error);
      return;
    }
    const elapsed = performance.now() - started;
    recordDecodeStep(this.stats, batch, elapsed);
    this.decodeMs = average(this.decodeMs, elapsed);
    this.decodeStates.scatter(
      result.state,
      decoders.map((sequence) => sequence.state),
    );
    const vocab = this.config.vocabSize;
    decoders.forEach((sequence, row) => {
      sequence.lastServedTick = this.tickCount;
      sequence.position += 1;
      const replayed = sequence.absorbed < sequence.tokens.length;
      if (!replayed) sequence.tokens.push(sequence.nextToken());
      sequence.absorbed += 1;
      if (sequence.absorbed < sequence.tokens.length) {
        // Still replaying: the next token is known, this step's logits are not needed.
        sequence.sinceCheckpoint.tokens += 1;
        this.checkpoint(sequence);
        return;
      }
      this.sampleAndEmit(
        sequence,
        result.logits.subarray(row * vocab, (row + 1) * vocab),
        result.logitsLogNormaliser[row],
      );
    });
  }

  /**
   * Runs a chunk and checks that the model returned the batch's state: a result without one
   * fails the sequences of that run, like a failed run, instead of the whole engine.
   */
  private async runWithState(request: ChunkRequest): Promise<ChunkResultWithState> {
    const result = await this.runChunk(request);
    const expected = request.batch * this.stateSize;
    if (result.state === undefined) throw new Error('the model returned no state');
    if (result.state.length !== expected) {
      throw new Error(
        `the model returned a state of ${result.state.length} floats, expected ${expected}`,
      );
    }
    return { ...result, state: result.state };
  }

  /** Samples the next token from `logits`, streams it, and finishes or checkpoints. */
  private sampleAndEmit(sequence: Sequence, logits: Float32Array, logNormaliser?: number): void {
    const { token, finishReason } = this.output.sample(sequence, logits, logNormaliser);
    if (token !== undefined) this.emit(token);
    if (finishReason !== undefined) {
      this.finish(sequence, finishReason);
    } else {
      sequence.sinceCheckpoint.tokens += 1;
      this.checkpoint(sequence);
    }
  }

  /** Offers the state for checkpointing when the sequence's policy says it is due. */
  private checkpoint(sequence: Sequence): void {
    const now = performance.now();
    if (checkpointDue(sequence, now)) this.emit(takeCheckpoint(sequence, now));
  }

  private finish(sequence: Sequence, reason: FinishReason): void {
    if (sequence.phase === 'done') return;
    sequence.phase = 'done';
    this.sequences.delete(sequence.request.id);
    this.emit(this.output.finished(sequence, reason));
  }

  private suspendNow(sequence: Sequence): void {
    // Before its start, or before anything was absorbed, there is nothing worth saving.
    if (sequence.phase !== 'tokenized' && sequence.absorbed > 0) {
      this.emit(takeCheckpoint(sequence, performance.now()));
    }
    sequence.phase = 'done';
    this.sequences.delete(sequence.request.id);
    this.emit({ type: 'suspended', id: sequence.request.id });
  }

  private fail(sequence: Sequence, error: unknown): void {
    sequence.phase = 'done';
    this.sequences.delete(sequence.request.id);
    this.emit({ type: 'failed', id: sequence.request.id, message: errorMessage(error) });
  }

  private emit(event: SequenceEvent): void {
    this.events.push(event);
  }
}

/** A chunk's result whose state is known to be there, with the size of the batch's states. */
type ChunkResultWithState = ChunkResult & { readonly state: Float32Array };

/** Exponential moving average; the first sample initialises it. */
function average(current: number, sample: number): number {
  return current === 0 ? sample : current * 0.8 + sample * 0.2;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
