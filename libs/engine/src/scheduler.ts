import { createHash } from 'node:crypto';
import type { ModelConfig, Tokenizer } from '#model';
import { headDim } from '#model';
import { ENGINE_DEFAULTS } from './defaults.js';
import type { ChunkResult, RunChunk } from './ort/chunk.js';
import type {
  CheckpointPolicy,
  FinishReason,
  SequenceEvent,
  SequenceRequest,
  SequenceStart,
} from './protocol.js';
import { TokenSampler } from './sampler.js';
import { StateBatch } from './state-batch.js';
import { StopStringFilter } from './stop-strings.js';
import { TokenList } from './token-list.js';

/** How the scheduler sizes its work; the defaults are `ENGINE_DEFAULTS`' (defaults.ts). */
export interface SchedulerOptions {
  /** Decode rows per step. */
  maxBatch: number;
  /** Prefill chunk when nothing is decoding. */
  maxPrefillChunk: number;
  /** Smallest prefill chunk while sequences decode. */
  minPrefillChunk: number;
}

export const defaultSchedulerOptions: SchedulerOptions = {
  maxBatch: ENGINE_DEFAULTS.maxBatch,
  maxPrefillChunk: ENGINE_DEFAULTS.maxPrefillChunk,
  minPrefillChunk: ENGINE_DEFAULTS.minPrefillChunk,
};

type Phase = 'tokenized' | 'prefill' | 'decode' | 'done';

interface GenerateState {
  sampler: TokenSampler;
  decoder: ReturnType<Tokenizer['createDecodeStream']>;
  stopFilter: StopStringFilter;
  maxTokens: number;
  /** Output tokens so far, replayed ones included. */
  generated: number;
  /** The last sampled token, fed at the next decode step. */
  pending: number;
}

/** One sequence in the engine; the logical token list is the input then the generated tokens. */
class Sequence {
  phase: Phase = 'tokenized';
  state: Float32Array;
  /** Absolute position of the next token to feed. */
  position = 0;
  /** Tokens of `tokens` already absorbed into `state`. */
  absorbed = 0;
  cachedTokens = 0;
  cancelled = false;
  suspended = false;
  generate: GenerateState | undefined;
  /** Score: log-prob of tokens[i + 1] given tokens[0..i]. */
  logprobs: Float64Array | undefined;
  lastServedTick = -1;
  sinceCheckpoint = { tokens: 0, at: performance.now() };
  /** Score: log-probs before this index are already in a checkpoint. */
  logprobsCheckpointed = 0;

  constructor(
    readonly request: SequenceRequest,
    /** Input tokens, then (after start) the replayed output tokens. */
    readonly tokens: TokenList,
    readonly inputCount: number,
    readonly prefixes: { tokens: number; hash: string }[],
    stateSize: number,
  ) {
    this.state = new Float32Array(stateSize);
  }

  /** How many tokens must be absorbed before the logits are used (meaningful before decode). */
  get feedEnd(): number {
    // Scoring predicts tokens[1..n-1] from the positions before them: the last token is never fed.
    return this.request.kind === 'score' ? Math.max(0, this.tokens.length - 1) : this.tokens.length;
  }

  get checkpointPolicy(): CheckpointPolicy {
    return this.request.checkpoint ?? ENGINE_DEFAULTS.checkpoint;
  }
}

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
  private events: SequenceEvent[] = [];

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
      const ids = this.tokenizer.encodeIds(request.text);
      // Scoring predicts every text token, the first from end-of-text; generation needs at least
      // one token to feed, and an empty prompt starts from end-of-text as Pythia's training did.
      const tokens =
        request.kind === 'score' || (request.kind === 'generate' && ids.length === 0)
          ? new TokenList(ids, this.tokenizer.eosTokenId)
          : new TokenList(ids);
      const prefixes = prefixHashes(this.config, tokens, request.prefixBlockTokens);
      const sequence = new Sequence(request, tokens, tokens.length, prefixes, this.stateSize);
      this.sequences.set(request.id, sequence);
      this.emit({ type: 'tokenized', id: request.id, tokenCount: tokens.length, prefixes });
    } catch (error) {
      this.emit({ type: 'failed', id: request.id, message: errorMessage(error) });
    }
  }

  /** Sets where a tokenized sequence starts (fresh, a checkpoint, a cached prefix or a saved state). */
  start(id: string, start: SequenceStart): void {
    const sequence = this.sequences.get(id);
    if (sequence?.phase !== 'tokenized') return;
    try {
      this.applyStart(sequence, start);
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

  private applyStart(sequence: Sequence, start: SequenceStart): void {
    const { request } = sequence;
    if (start.state !== undefined) {
      // A copy: the sequence's state is written in place from now on, and the caller's buffer
      // (a checkpoint, a cached prefix, a saved state) may be read or reused after this.
      const state = new Float32Array(start.state.slice(0));
      if (state.length !== this.stateSize) {
        throw new Error(
          `start state has ${state.length} floats, the model needs ${this.stateSize}`,
        );
      }
      sequence.state = state;
    }
    if (request.kind === 'generate') {
      const options = request.generate;
      if (options === undefined) throw new Error('a generate sequence needs generate options');
      const sampler = new TokenSampler(options.sampling, options.choice, sequence.tokens);
      const generate: GenerateState = {
        sampler,
        decoder: this.tokenizer.createDecodeStream(),
        stopFilter: new StopStringFilter(options.stop),
        maxTokens: options.maxTokens,
        generated: 0,
        pending: -1,
      };
      sequence.generate = generate;
      for (const token of start.replay) {
        sampler.accept(token);
        generate.stopFilter.push(generate.decoder.push(token));
        sequence.tokens.push(token);
        generate.generated += 1;
      }
    } else if (start.replay.length > 0) {
      throw new Error(`a ${request.kind} sequence has no generated tokens to replay`);
    }
    if (start.skip < 0 || start.skip > sequence.tokens.length) {
      throw new Error(`start skips ${start.skip} of ${sequence.tokens.length} tokens`);
    }
    sequence.absorbed = start.skip;
    sequence.position = start.position;
    sequence.cachedTokens = Math.min(start.skip, sequence.inputCount);
    if (request.kind === 'score') {
      const logprobs = new Float64Array(Math.max(0, sequence.tokens.length - 1));
      if (start.priorLogprobs !== undefined)
        logprobs.set(start.priorLogprobs.subarray(0, start.skip));
      sequence.logprobs = logprobs;
    }
    const generate = sequence.generate;
    if (generate?.stopFilter.stoppedBy !== undefined) {
      this.finish(sequence, 'stop');
    } else if (generate !== undefined && generate.generated >= generate.maxTokens) {
      this.finish(sequence, 'length');
    } else if (sequence.absorbed >= sequence.feedEnd && request.kind !== 'generate') {
      this.finish(sequence, 'stop');
    } else if (sequence.absorbed >= sequence.feedEnd) {
      throw new Error('a generate sequence needs at least one token to process after its start');
    } else {
      sequence.phase = 'prefill';
    }
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
    let end = Math.min(sequence.feedEnd, from + this.prefillBudget(decoding));
    // End chunks on prefix-cache boundaries so that the state there can be shared.
    const boundary = sequence.prefixes.find((prefix) => prefix.tokens > from)?.tokens;
    if (boundary !== undefined && boundary < end) end = boundary;
    const chunk = end - from;
    const inputIds = sequence.tokens.slice(from, end);
    const scoring = sequence.request.kind === 'score';
    const started = performance.now();
    let result: ChunkResult;
    try {
      result = await this.runChunk({
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
    this.prefillTokensPerMs = average(this.prefillTokensPerMs, chunk / elapsed);
    if (result.state === undefined) throw new Error('the model returned no state');
    // Copied into the sequence's own array: no allocation per chunk, which on a long document
    // would churn the allocator (and the process's resident memory) for nothing.
    sequence.state.set(result.state);
    sequence.absorbed = end;
    sequence.position += chunk;
    if (scoring && result.targetLogprobs !== undefined) {
      sequence.logprobs?.set(result.targetLogprobs, from);
    }
    const total = sequence.feedEnd;
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
    if (end < sequence.feedEnd) {
      sequence.sinceCheckpoint.tokens += chunk;
      this.checkpoint(sequence);
      return;
    }
    if (sequence.request.kind !== 'generate') {
      this.finish(sequence, 'stop');
      return;
    }
    sequence.phase = 'decode';
    this.sampleAndEmit(sequence, result.logits, result.logitsLogNormaliser[0]);
  }

  private async decodeStep(decoders: Sequence[]): Promise<void> {
    const batch = decoders.length;
    const started = performance.now();
    let result: ChunkResult;
    try {
      result = await this.runChunk({
        inputIds: decoders.map((sequence) => sequence.generate?.pending ?? 0),
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
    this.decodeMs = average(this.decodeMs, performance.now() - started);
    if (result.state === undefined) throw new Error('the model returned no state');
    this.decodeStates.scatter(
      result.state,
      decoders.map((sequence) => sequence.state),
    );
    const vocab = this.config.vocabSize;
    decoders.forEach((sequence, row) => {
      sequence.lastServedTick = this.tickCount;
      sequence.position += 1;
      sequence.absorbed += 1;
      sequence.tokens.push(sequence.generate?.pending ?? 0);
      this.sampleAndEmit(
        sequence,
        result.logits.subarray(row * vocab, (row + 1) * vocab),
        result.logitsLogNormaliser[row],
      );
    });
  }

  /** Samples the next token from `logits`, streams it, and finishes or checkpoints. */
  private sampleAndEmit(sequence: Sequence, logits: Float32Array, logNormaliser?: number): void {
    const generate = sequence.generate;
    if (generate === undefined) throw new Error('not a generate sequence');
    const sampled = generate.sampler.next(logits, logNormaliser);
    if (sampled.token === this.tokenizer.eosTokenId) {
      this.finish(sequence, 'stop');
      return;
    }
    const index = generate.generated;
    generate.generated += 1;
    generate.pending = sampled.token;
    const text = generate.stopFilter.push(generate.decoder.push(sampled.token));
    const top = sampled.top?.map((alternative) => ({
      text: this.tokenizer.decode([alternative.token]),
      logprob: alternative.logprob,
    }));
    this.emit({
      type: 'token',
      id: sequence.request.id,
      index,
      token: sampled.token,
      text,
      logprob: sampled.logprob,
      top,
    });
    if (generate.stopFilter.stoppedBy !== undefined) {
      this.finish(sequence, 'stop');
    } else if (generate.generated >= generate.maxTokens) {
      this.finish(sequence, 'length');
    } else {
      sequence.sinceCheckpoint.tokens += 1;
      this.checkpoint(sequence);
    }
  }

  /**
   * Offers the state for checkpointing when the policy says it is due: while decoding after
   * `everyTokens` tokens, while prefilling at the chunk boundary after `prefillEveryTokens`
   * tokens, and in both after `everyMs`. Score checkpoints carry only the new log-probs.
   */
  private checkpoint(sequence: Sequence): void {
    const policy = sequence.checkpointPolicy;
    const tokenLimit =
      sequence.phase === 'prefill' ? policy.prefillEveryTokens : policy.everyTokens;
    const due =
      sequence.sinceCheckpoint.tokens >= tokenLimit ||
      performance.now() - sequence.sinceCheckpoint.at >= policy.everyMs;
    if (!due) return;
    sequence.sinceCheckpoint = { tokens: 0, at: performance.now() };
    const logprobsOffset = sequence.logprobsCheckpointed;
    sequence.logprobsCheckpointed = sequence.absorbed;
    this.emit({
      type: 'checkpoint',
      id: sequence.request.id,
      state: sequence.state.slice().buffer,
      position: sequence.position,
      absorbed: sequence.absorbed,
      ...(sequence.logprobs === undefined
        ? {}
        : { logprobs: sequence.logprobs.slice(logprobsOffset, sequence.absorbed), logprobsOffset }),
    });
  }

  private finish(sequence: Sequence, reason: FinishReason): void {
    if (sequence.phase === 'done') return;
    sequence.phase = 'done';
    this.sequences.delete(sequence.request.id);
    const generate = sequence.generate;
    let text = '';
    if (generate !== undefined && generate.stopFilter.stoppedBy === undefined) {
      text = generate.stopFilter.push(generate.decoder.flush()) + generate.stopFilter.flush();
    }
    this.emit({
      type: 'finished',
      id: sequence.request.id,
      finishReason: reason,
      text,
      promptTokens: sequence.inputCount,
      cachedTokens: sequence.cachedTokens,
      completionTokens: generate?.generated ?? 0,
      position: sequence.position,
      ...(sequence.request.kind === 'digest' ? { state: sequence.state.slice().buffer } : {}),
      ...(sequence.logprobs === undefined
        ? {}
        : { logprobs: sequence.logprobs.slice(0, Math.max(0, sequence.absorbed)) }),
    });
  }

  private suspendNow(sequence: Sequence): void {
    // Before its start, or before anything was absorbed, there is nothing worth saving.
    if (sequence.phase !== 'tokenized' && sequence.absorbed > 0) {
      sequence.sinceCheckpoint = { tokens: Number.POSITIVE_INFINITY, at: 0 };
      this.checkpoint(sequence);
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

/** Exponential moving average; the first sample initialises it. */
function average(current: number, sample: number): number {
  return current === 0 ? sample : current * 0.8 + sample * 0.2;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Prefixes worth sharing are prompts' common beginnings (system prompts, few-shot examples), not
 * whole documents: only the first this many blocks are hashed and cached, so a long document
 * neither floods the cache with its states nor has its prefill cut into block-sized chunks.
 * @defaultValue 32 blocks (8,192 tokens at PREFIX_BLOCK_TOKENS = 256)
 */
const MAX_PREFIX_BLOCKS = 32;

/**
 * Chained hashes of the token prefixes at multiples of `block` tokens, strictly below the last
 * token (a cached state must leave at least one token to feed), for the first
 * MAX_PREFIX_BLOCKS blocks. The model's shape is part of the hash, so states never cross models
 * with different tokenizations of the same ids.
 */
function prefixHashes(
  config: ModelConfig,
  tokens: TokenList,
  block: number,
): { tokens: number; hash: string }[] {
  if (block <= 0) return [];
  const result: { tokens: number; hash: string }[] = [];
  let previous = createHash('sha256').update(JSON.stringify(config)).digest();
  const last = Math.min(tokens.length - 1, block * MAX_PREFIX_BLOCKS);
  for (let end = block; end <= last; end += block) {
    const digest = createHash('sha256')
      .update(previous)
      .update(tokens.slice(end - block, end))
      .digest();
    previous = digest;
    result.push({ tokens: end, hash: digest.toString('hex') });
  }
  return result;
}
