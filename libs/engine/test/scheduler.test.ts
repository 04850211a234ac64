import { describe, expect, it } from 'vitest';
import { JobPriority } from '#contracts';
import { logSoftmaxRows, oracleLogits } from '#model';
import type { SequenceEvent, SequenceRequest } from '#engine';
import {
  finishedOf,
  generateRequest,
  greedy,
  plainGreedy,
  runAll,
  textOf,
  tinyModel,
  tokensOf,
  type TestModel,
} from './support.js';

const prompts = [
  'The quick brown fox',
  'A',
  'Linear attention keeps a fixed-size state, so long documents cost constant memory per token.',
  'ünïcödé → 漢字',
];

describe('Scheduler (continuous batching over the real graph)', () => {
  it('greedy output equals a plain token-by-token greedy loop, for every prompt in one batch', async () => {
    const model = await tinyModel();
    const events = await runAll(
      model,
      prompts.map((prompt, index) => generateRequest(`p${index}`, prompt, { maxTokens: 10 })),
    );
    for (const [index, prompt] of prompts.entries()) {
      expect(tokensOf(events.get(`p${index}`)), prompt).toEqual(
        await plainGreedy(model, prompt, 10),
      );
    }
  });

  it('batch composition and prefill chunking do not change greedy outputs', async () => {
    const model = await tinyModel();
    const together = await runAll(
      model,
      prompts.map((prompt, index) => generateRequest(`p${index}`, prompt, { maxTokens: 8 })),
      { scheduler: { maxPrefillChunk: 7, minPrefillChunk: 3 } },
    );
    for (const [index, prompt] of prompts.entries()) {
      const alone = await runAll(model, [generateRequest('solo', prompt, { maxTokens: 8 })]);
      expect(tokensOf(together.get(`p${index}`))).toEqual(tokensOf(alone.get('solo')));
    }
  });

  it('streams text that decodes the tokens, and stops at max_tokens with finish reason length', async () => {
    const model = await tinyModel();
    const events = await runAll(model, [generateRequest('a', prompts[0] ?? '', { maxTokens: 6 })]);
    const finished = finishedOf(events.get('a'));
    expect(finished.finishReason).toBe('length');
    expect(finished.completionTokens).toBe(6);
    expect(finished.promptTokens).toBe(model.tokenizer.encode(prompts[0] ?? '').length);
    expect(textOf(events.get('a'))).toBe(model.tokenizer.decode(tokensOf(events.get('a'))));
  });

  it('never returns a stop string and finishes with reason stop', async () => {
    const model = await tinyModel();
    const full = await runAll(model, [generateRequest('a', 'Once', { maxTokens: 16 })]);
    const fullText = textOf(full.get('a'));
    // A stop string taken from the middle of the unconstrained output, spanning tokens.
    const stop = fullText.slice(5, 8);
    const stopped = await runAll(model, [
      generateRequest('b', 'Once', { maxTokens: 16, stop: [stop] }),
    ]);
    const text = textOf(stopped.get('b'));
    expect(finishedOf(stopped.get('b')).finishReason).toBe('stop');
    expect(text).toBe(fullText.slice(0, fullText.indexOf(stop)));
    expect(text).not.toContain(stop);
  });

  it('seeded sampling is reproducible and a resumed sequence continues identically', async () => {
    const model = await tinyModel();
    const sampling = { ...greedy, temperature: 0.9, topP: 0.95, seed: 2024, frequencyPenalty: 0.2 };
    const request = generateRequest('s', 'Sampling', { maxTokens: 24, sampling });
    const run = await runAll(model, [
      { ...request, checkpoint: { everyTokens: 5, everyMs: 60_000, prefillEveryTokens: 4096 } },
    ]);
    const again = await runAll(model, [request]);
    const tokens = tokensOf(run.get('s'));
    expect(tokensOf(again.get('s'))).toEqual(tokens);
    expect(tokens).toHaveLength(24);

    // Resume from the second decode checkpoint with three more tokens already streamed after it,
    // as a worker does after its predecessor died.
    const checkpoints = (run.get('s') ?? []).filter(
      (event): event is Extract<SequenceEvent, { type: 'checkpoint' }> =>
        event.type === 'checkpoint',
    );
    const checkpoint = checkpoints[1];
    if (checkpoint === undefined) throw new Error('expected at least two checkpoints');
    const inputCount = model.tokenizer.encode('Sampling').length;
    const generatedInState = checkpoint.absorbed - inputCount;
    const streamed = tokens.slice(0, generatedInState + 3);
    const resumed = await runAll(model, [request], {
      starts: new Map([
        [
          's',
          {
            state: checkpoint.state,
            position: checkpoint.position,
            skip: checkpoint.absorbed,
            replay: streamed,
          },
        ],
      ]),
    });
    const continued = tokensOf(resumed.get('s'));
    expect([...streamed, ...continued]).toEqual(tokens);
    expect((resumed.get('s') ?? []).find((event) => event.type === 'token')).toMatchObject({
      index: streamed.length,
    });
  });

  it('a digested state continued with new text equals processing the whole text', async () => {
    const model = await tinyModel();
    const head = 'The state after this sentence. ';
    const tail = 'Then more';
    const digest: SequenceRequest = {
      id: 'd',
      kind: 'digest',
      priority: JobPriority.Document,
      text: head,
      prefixBlockTokens: 0,
    };
    const digested = finishedOf((await runAll(model, [digest])).get('d'));
    expect(digested.position).toBe(model.tokenizer.encode(head).length);
    if (digested.state === undefined) throw new Error('digest returned no state');
    const continued = await runAll(model, [generateRequest('c', tail, { maxTokens: 8 })], {
      starts: new Map([
        ['c', { state: digested.state, position: digested.position, skip: 0, replay: [] }],
      ]),
    });
    expect(tokensOf(continued.get('c'))).toEqual(await plainGreedy(model, head + tail, 8));
  });

  it('scores a text with the float64 oracle NLL', async () => {
    const model = await tinyModel();
    const text = 'Perplexity of a known text, checked against the oracle.';
    const request: SequenceRequest = {
      id: 'score',
      kind: 'score',
      priority: JobPriority.Document,
      text,
      prefixBlockTokens: 0,
      score: { windowTokens: undefined },
    };
    const finished = finishedOf(
      (await runAll(model, [request], { scheduler: { maxPrefillChunk: 9 } })).get('score'),
    );
    const ids = [model.tokenizer.eosTokenId, ...model.tokenizer.encode(text)];
    const logprobs = logSoftmaxRows(
      oracleLogits(model.config, model.weights, ids),
      model.config.vocabSize,
    );
    const expected = ids
      .slice(1)
      .map((id, position) => logprobs[position * model.config.vocabSize + id] ?? 0);
    expect(finished.logprobs).toHaveLength(expected.length);
    const actual = Array.from(finished.logprobs ?? []);
    actual.forEach((value, index) => {
      expect(Math.abs(value - (expected[index] ?? 0))).toBeLessThan(
        1e-3 + 1e-4 * Math.abs(expected[index] ?? 0),
      );
    });
    const nll = -expected.reduce((sum, value) => sum + value, 0);
    expect(-actual.reduce((sum, value) => sum + value, 0)).toBeCloseTo(nll, 2);
  });

  it('offers prefix states at block boundaries that equal digesting the prefix', async () => {
    const model = await tinyModel();
    const text = 'abcdefghijklmnopqrstuvwxyz0123456789';
    const request = { ...generateRequest('g', text, { maxTokens: 2 }), prefixBlockTokens: 16 };
    const events = (await runAll(model, [request])).get('g') ?? [];
    const tokenized = events.find((event) => event.type === 'tokenized');
    expect(tokenized?.type === 'tokenized' ? tokenized.prefixes.map((p) => p.tokens) : []).toEqual([
      16, 32,
    ]);
    const prefixStates = events.filter(
      (event): event is Extract<SequenceEvent, { type: 'prefix-state' }> =>
        event.type === 'prefix-state',
    );
    expect(prefixStates.map((event) => event.tokens)).toEqual([16, 32]);
    const digest = finishedOf(
      (
        await runAll(model, [
          {
            id: 'p',
            kind: 'digest',
            priority: JobPriority.Document,
            text: text.slice(0, 16),
            prefixBlockTokens: 0,
          },
        ])
      ).get('p'),
    );
    const first = prefixStates[0];
    if (first?.type !== 'prefix-state' || digest.state === undefined)
      throw new Error('missing states');
    expect(Array.from(new Float32Array(first.state))).toEqual(
      Array.from(new Float32Array(digest.state)),
    );
  });

  it('cancels within one tick and keeps the partial output', async () => {
    const model = await tinyModel();
    let ticks = 0;
    const events = await runAll(model, [generateRequest('x', 'Cancel me', { maxTokens: 200 })], {
      afterTick: (scheduler) => {
        ticks += 1;
        if (ticks === 5) scheduler.cancel('x');
      },
    });
    const finished = finishedOf(events.get('x'));
    expect(finished.finishReason).toBe('cancelled');
    expect(tokensOf(events.get('x')).length).toBeGreaterThan(0);
    expect(tokensOf(events.get('x')).length).toBeLessThanOrEqual(5);
  });

  it('reports a bad start instead of crashing the loop', async () => {
    const model = await tinyModel();
    const events = await runAll(
      model,
      [generateRequest('bad', 'x'), generateRequest('good', 'y', { maxTokens: 3 })],
      {
        starts: new Map([
          ['bad', { state: new Float32Array(3).buffer, position: 0, skip: 0, replay: [] }],
        ]),
      },
    );
    expect(events.get('bad')?.at(-1)).toMatchObject({
      type: 'failed',
      message: expect.stringMatching(/start state has 3 floats/) as string,
    });
    expect(finishedOf(events.get('good')).completionTokens).toBe(3);
  });

  it('fails only the sequence whose state the model did not return, and keeps ticking', async () => {
    const model = await tinyModel();
    const [marker] = model.tokenizer.encode('Q');
    // The model answers the prefill of the prompt that starts with the marker without a state.
    const stateless: TestModel = {
      ...model,
      run: async (request) => {
        const result = await model.run(request);
        if (request.batch > 1 || request.inputIds[0] !== marker) return result;
        return { logits: result.logits, logitsLogNormaliser: result.logitsLogNormaliser };
      },
    };
    const events = await runAll(stateless, [
      generateRequest('stateless', 'Q is for question', { maxTokens: 3 }),
      generateRequest('healthy', 'An answer', { maxTokens: 3 }),
    ]);
    expect(events.get('stateless')?.at(-1)).toMatchObject({
      type: 'failed',
      message: expect.stringMatching(/no state/) as string,
    });
    expect(finishedOf(events.get('healthy')).completionTokens).toBe(3);
  });

  it('fails the sequences of a decode step whose batched state is missing, not the others', async () => {
    const model = await tinyModel();
    let decodeSteps = 0;
    // The second decode step of the two short prompts comes back without a state, while a long
    // prompt is still prefilling in small chunks.
    const stateless: TestModel = {
      ...model,
      run: async (request) => {
        const result = await model.run(request);
        if (request.chunk !== 1 || request.batch < 2) return result;
        decodeSteps += 1;
        if (decodeSteps !== 2) return result;
        return { logits: result.logits, logitsLogNormaliser: result.logitsLogNormaliser };
      },
    };
    const events = await runAll(
      stateless,
      [
        generateRequest('a', 'One', { maxTokens: 6 }),
        generateRequest('b', 'Two', { maxTokens: 6 }),
        generateRequest('long', 'A much longer prompt that takes several prefill chunks.', {
          maxTokens: 2,
        }),
      ],
      { scheduler: { maxPrefillChunk: 4, minPrefillChunk: 4 } },
    );
    for (const id of ['a', 'b']) {
      expect(events.get(id)?.at(-1)).toMatchObject({
        type: 'failed',
        message: expect.stringMatching(/no state/) as string,
      });
    }
    expect(finishedOf(events.get('long')).completionTokens).toBe(2);
  });
});
