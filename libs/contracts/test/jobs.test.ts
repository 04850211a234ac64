import { describe, expect, it } from 'vitest';
import {
  decodeStreamEvent,
  encodeStreamEvent,
  JobName,
  jobPayloadSchemas,
  modelQueueName,
} from '#contracts';

describe('job contracts', () => {
  it('names one queue per model', () => {
    expect(modelQueueName('small')).toBe('model.small');
  });

  it('fills sampling defaults and rejects unknown fields', () => {
    const parsed = jobPayloadSchemas[JobName.Generate].parse({
      model: 'small',
      input: { text: 'hi' },
      owner: 'tenant-a',
      sampling: {},
    });
    expect(parsed.sampling.temperature).toBe(1);
    expect(parsed.sampling.max_tokens).toBe(16);
    expect(parsed.n).toBe(1);
    expect(() =>
      jobPayloadSchemas[JobName.Generate].parse({
        model: 'small',
        input: { text: 'hi' },
        owner: 'tenant-a',
        sampling: { temprature: 0 },
      }),
    ).toThrow(/temprature/);
  });
});

describe('stream events', () => {
  it('round-trip through flat Redis fields and reject malformed entries', () => {
    const event = {
      type: 'token',
      choice: 0,
      index: 3,
      token: 104,
      text: 'h',
      logprob: -0.5,
    } as const;
    expect(decodeStreamEvent(encodeStreamEvent(event))).toEqual(event);
    expect(() => decodeStreamEvent(['e', '{"type":"token","choice":0}'])).toThrow();
    expect(() => decodeStreamEvent(['x', '1'])).toThrow(/no event field/);
  });
});
