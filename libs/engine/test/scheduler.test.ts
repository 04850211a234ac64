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

  describe('a resumed sequence continues bit for bit', () => {
    const prompt = 'Sampling a long continuation';
    const sampling = { ...greedy, temperature: 0.9, topP: 0.95, seed: 2024, frequencyPenalty: 0.2 };
    const request = generateRequest('s', prompt, { maxTokens: 48, sampling });
    const everyFive = { everyTokens: 5, everyMs: 60_000, prefillEveryTokens: 4096 };
    // Small prefill chunks: a replay fed as chunks would sum in another order than the
    // uninterrupted run's one-token decode steps, and the log-probs below would differ.
    const scheduler = { maxPrefillChunk: 7, minPrefillChunk: 3 };

    /** Token ids with their log-probs: equal log-probs mean equal logits, hence equal states. */
    function tokenEvents(events: readonly SequenceEvent[] | undefined) {
      return (events ?? []).flatMap((event) =>
        event.type === 'token'
          ? [{ index: event.index, token: event.token, logprob: event.logprob }]
          : [],
      );
    }

    async function uninterrupted(model: TestModel) {
      const run = await runAll(model, [{ ...request, checkpoint: everyFive }], { scheduler });
      const checkpoints = (run.get('s') ?? []).filter(
        (event): event is Extract<SequenceEvent, { type: 'checkpoint' }> =>
          event.type === 'checkpoint',
      );
      const order = (run.get('s') ?? []).map((event) => event.type);
      return { events: tokenEvents(run.get('s')), checkpoints, order };
    }

    it('is reproducible, and resumes from a decode checkpoint with tokens streamed after it', async () => {
      const model = await tinyModel();
      const first = await uninterrupted(model);
      const again = await runAll(model, [request], { scheduler });
      expect(tokenEvents(again.get('s'))).toEqual(first.events);
      expect(first.events).toHaveLength(48);

      // The second decode checkpoint, with three more tokens streamed after it, as a worker
      // finds them after its predecessor died.
      const checkpoint = first.checkpoints[1];
      if (checkpoint === undefined) throw new Error('expected at least two checkpoints');
      const inputCount = model.tokenizer.encode(prompt).length;
      const streamed = first.events
        .slice(0, checkpoint.absorbed - inputCount + 3)
        .map((event) => event.token);
      const resumed = await runAll(model, [request], {
        scheduler,
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
      expect(tokenEvents(resumed.get('s'))).toEqual(first.events.slice(streamed.length));
    });

    it('resumes without a checkpoint by replaying the whole stream', async () => {
      const model = await tinyModel();
      const first = await uninterrupted(model);
      const streamed = first.events.slice(0, 30).map((event) => event.token);
      const resumed = await runAll(model, [request], {
        scheduler,
        starts: new Map([['s', { position: 0, skip: 0, replay: streamed }]]),
      });
      expect(tokenEvents(resumed.get('s'))).toEqual(first.events.slice(30));
    });

    it('checkpoints a prompt chunked by load before its first token, and resumes from there exactly while other sequences decode', async () => {
      const model = await tinyModel();
      const first = await uninterrupted(model);
      const inputCount = model.tokenizer.encode(prompt).length;
      const atPromptEnd = first.checkpoints[0];
      expect(atPromptEnd?.absorbed).toBe(inputCount);
      expect(first.order.indexOf('checkpoint')).toBeLessThan(first.order.indexOf('token'));
      if (atPromptEnd === undefined) throw new Error('expected a checkpoint at the prompt end');
      // Under load the same prompt is chunked by the prefill budget instead: replaying it from
      // the start would not give the same bits, the checkpoint does.
      const streamed = first.events.slice(0, 20).map((event) => event.token);
      const others = prompts.map((text, index) =>
        generateRequest(`o${index}`, text, { maxTokens: 40, sampling }),
      );
      const resumed = await runAll(model, [...others, request], {
        scheduler,
        starts: new Map([
          [
            's',
            {
              state: atPromptEnd.state,
              position: atPromptEnd.position,
              skip: atPromptEnd.absorbed,
              replay: streamed,
            },
          ],
        ]),
      });
      expect(tokenEvents(resumed.get('s'))).toEqual(first.events.slice(20));
    });

    it('takes no prompt-end checkpoint when any engine would chunk the prompt alike', async () => {
      const model = await tinyModel();
      const short = generateRequest('short', 'Hi', { maxTokens: 4, sampling });
      const events = await runAll(model, [{ ...short, checkpoint: everyFive }], { scheduler });
      expect(tokensOf(events.get('short'))).toHaveLength(4);
      expect((events.get('short') ?? []).some((event) => event.type === 'checkpoint')).toBe(false);
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
