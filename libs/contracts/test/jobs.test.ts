import { describe, expect, it } from 'vitest';
import { JobName, jobPayloadSchemas, modelQueueName } from '#contracts';

describe('job contracts', () => {
  it('names one queue per model', () => {
    expect(modelQueueName('small')).toBe('model.small');
  });

  it('fills sampling defaults and rejects unknown fields', () => {
    const parsed = jobPayloadSchemas[JobName.Generate].parse({
      model: 'small',
      input: { text: 'hi' },
      sampling: {},
    });
    expect(parsed.sampling.temperature).toBe(1);
    expect(parsed.sampling.max_tokens).toBe(16);
    expect(() =>
      jobPayloadSchemas[JobName.Generate].parse({
        model: 'small',
        input: { text: 'hi' },
        sampling: { temprature: 0 },
      }),
    ).toThrow(/temprature/);
  });
});
