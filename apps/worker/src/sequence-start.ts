import { UnrecoverableError } from 'bullmq';
import type { RedisClient } from '#cluster';
import type { RedisKeys } from '#contracts';
import {
  loadSavedState,
  type CheckpointStore,
  type PrefixCache,
  type PrefixClaimant,
} from '#cluster';
import type { SequenceStart, Tokenized } from '#engine';

/** The prefix cache as one sequence uses it: looking up, claiming and storing shared prefixes. */
export interface SharedPrefixes {
  cache: PrefixCache;
  claimant: PrefixClaimant;
}

/** A saved state (`/v1/states`) a sequence continues from. */
export interface SavedStart {
  state: Buffer;
  position: number;
}

/** What a sequence may start from, besides its own checkpoint. */
export interface StartSources {
  /** Generated tokens already in the job's stream: replayed, never sampled again. */
  replay: readonly number[];
  saved: SavedStart | undefined;
  prefixes: SharedPrefixes | undefined;
  /** Stops the sequence when the job was cancelled meanwhile. */
  cancelIfRequested: (sequenceId: string) => void;
}

/**
 * Decides where a sequence starts once the engine has tokenized its input: its own checkpoint
 * (a resumed job), else the longest cached prompt prefix, else a saved state, else nothing.
 */
export class SequenceStarter {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly checkpoints: CheckpointStore,
  ) {}

  async start(
    jobId: string,
    choice: number,
    tokenized: Tokenized,
    sources: StartSources,
  ): Promise<SequenceStart> {
    const { replay, saved, prefixes } = sources;
    // A cancellation that arrived before this sequence existed: stop it at its first tick.
    sources.cancelIfRequested(tokenized.id);
    const checkpoint = await this.checkpoints.load(jobId, choice);
    // A checkpoint is usable when the tokens it holds are all still known (input + replay).
    if (checkpoint !== undefined && checkpoint.absorbed < tokenized.tokenCount + replay.length) {
      return {
        state: toArrayBuffer(checkpoint.state),
        position: checkpoint.position,
        skip: checkpoint.absorbed,
        replay,
        ...(checkpoint.logprobs === undefined ? {} : { priorLogprobs: checkpoint.logprobs }),
      };
    }
    const base = saved?.position ?? 0;
    const hit = await prefixes?.cache.lookup(tokenized.prefixes, prefixes.claimant);
    // Or one that arrived while it waited for another sequence's shared prefix.
    if (prefixes !== undefined) sources.cancelIfRequested(tokenized.id);
    if (hit !== undefined) {
      return {
        state: toArrayBuffer(hit.state),
        position: base + hit.tokens,
        skip: hit.tokens,
        replay,
      };
    }
    if (saved !== undefined) {
      return { state: toArrayBuffer(saved.state), position: saved.position, skip: 0, replay };
    }
    return { position: 0, skip: 0, replay };
  }

  /** A saved state of this tenant and model; anything else is refused without retry. */
  async loadOwnedState(stateId: string, owner: string, model: string): Promise<SavedStart> {
    const saved = await loadSavedState(this.redis, this.keys, stateId);
    if (saved?.meta.owner !== owner) {
      throw new UnrecoverableError(`state ${stateId} does not exist or has expired`);
    }
    if (saved.meta.model !== model) {
      throw new UnrecoverableError(
        `state ${stateId} belongs to model ${saved.meta.model}, not ${model}`,
      );
    }
    return { state: saved.state, position: saved.meta.position };
  }
}

/** States cross to the engine thread as transferable ArrayBuffers of their own. */
function toArrayBuffer(buffer: Buffer): ArrayBuffer {
  const copy = new ArrayBuffer(buffer.byteLength);
  new Uint8Array(copy).set(buffer);
  return copy;
}
