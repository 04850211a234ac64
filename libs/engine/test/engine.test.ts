import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBundle } from '#model';
import { Engine, type SequenceEvent } from '#engine';
import { generateRequest, plainGreedy, tinyModel, tokensOf } from './support.js';

/** The engine thread end to end: bundle on disk, worker thread, transferable states. */
describe('Engine (worker thread)', () => {
  let bundleDir: string;
  let engine: Engine;

  beforeAll(async () => {
    const model = await tinyModel();
    bundleDir = await mkdtemp(join(tmpdir(), 'dijiang-bundle-'));
    await writeBundle(bundleDir, model.config, model.weights, { id: 'tiny-test' });
    engine = await Engine.start({ bundleDir, intraOpThreads: 1 });
  });
  afterAll(async () => {
    await engine.close();
  });

  it('reports the model it serves and the state size', async () => {
    const model = await tinyModel();
    expect(engine.modelId).toBe('tiny-test');
    const d = model.config.hiddenSize / model.config.numHeads;
    expect(engine.stateBytes).toBe(model.config.numLayers * model.config.numHeads * d * d * 4);
  });

  it('generates the same greedy tokens as a plain loop, delivering events in order', async () => {
    const model = await tinyModel();
    const events: SequenceEvent[] = [];
    const outcome = await engine.run(generateRequest('g1', 'Threads', { maxTokens: 9 }), {
      start: () => ({ position: 0, skip: 0, replay: [] }),
      onEvent: async (event) => {
        // A slow consumer must not reorder events.
        await new Promise((resolve) => setTimeout(resolve, 1));
        events.push(event);
      },
    });
    expect(outcome).toMatchObject({
      type: 'finished',
      finishReason: 'length',
      completionTokens: 9,
    });
    expect(tokensOf(events)).toEqual(await plainGreedy(model, 'Threads', 9));
    const indexes = events.flatMap((event) => (event.type === 'token' ? [event.index] : []));
    expect(indexes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(events.at(-1)?.type).toBe('finished');
  });

  it('suspends a sequence with a final checkpoint that resumes it exactly', async () => {
    const request = generateRequest('s1', 'Suspend', { maxTokens: 400 });
    const events: SequenceEvent[] = [];
    const outcome = await engine.run(request, {
      start: () => ({ position: 0, skip: 0, replay: [] }),
      onEvent: (event) => {
        events.push(event);
        if (event.type === 'token' && event.index === 4) engine.suspend('s1');
      },
    });
    expect(outcome.type).toBe('suspended');
    const checkpoint = events.findLast((event) => event.type === 'checkpoint');
    if (checkpoint?.type !== 'checkpoint') throw new Error('no checkpoint before suspension');
    const streamed = tokensOf(events);
    const generateOptions = request.generate;
    if (generateOptions === undefined) throw new Error('a generate request has generate options');
    const resumedEvents: SequenceEvent[] = [];
    await engine.run(
      { ...request, generate: { ...generateOptions, maxTokens: streamed.length + 5 } },
      {
        start: () => ({
          state: checkpoint.state,
          position: checkpoint.position,
          skip: checkpoint.absorbed,
          replay: streamed,
        }),
        onEvent: (event) => {
          resumedEvents.push(event);
        },
      },
    );
    const uninterrupted: SequenceEvent[] = [];
    await engine.run(
      { ...generateRequest('s2', 'Suspend', { maxTokens: streamed.length + 5 }) },
      {
        start: () => ({ position: 0, skip: 0, replay: [] }),
        onEvent: (event) => {
          uninterrupted.push(event);
        },
      },
    );
    expect([...streamed, ...tokensOf(resumedEvents)]).toEqual(tokensOf(uninterrupted));
  });

  it('cancels a running sequence from the calling thread', async () => {
    const tokens: number[] = [];
    const outcome = await engine.run(generateRequest('c1', 'Cancel', { maxTokens: 1000 }), {
      start: () => ({ position: 0, skip: 0, replay: [] }),
      onEvent: (event) => {
        if (event.type === 'token') {
          tokens.push(event.token);
          if (event.index === 2) engine.cancel('c1');
        }
      },
    });
    expect(outcome).toMatchObject({ type: 'finished', finishReason: 'cancelled' });
    expect(tokens.length).toBeGreaterThanOrEqual(3);
    expect(tokens.length).toBeLessThan(1000);
  });

  it('fails at start for an unsupported device, listing the valid ones', async () => {
    await expect(Engine.start({ bundleDir, device: 'tpu' as 'cpu' })).rejects.toThrow(
      /unsupported device 'tpu': valid devices are cpu, cuda/,
    );
  });

  it('asks for the fp16 graph on CUDA instead of silently running fp32', async () => {
    await expect(Engine.start({ bundleDir, device: 'cuda' })).rejects.toThrow(/fp16/);
  });

  it('fails at start for a missing bundle with the bundle error', async () => {
    await expect(Engine.start({ bundleDir: join(bundleDir, 'nope') })).rejects.toThrow(
      /missing model\.json/,
    );
  });

  it("raises an engine-thread failure with the thread's stack", async () => {
    const failure = await Engine.start({ bundleDir: join(bundleDir, 'nope') }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(Error);
    // The thread runs the compiled libraries, this (test) thread their sources: frames in dist/
    // can only come from the thread.
    expect(failure instanceof Error ? failure.stack : '').toMatch(
      /dist\/libs\/model\/src\/bundle\.js/,
    );
  });
});
