import { describe, expect, it } from 'vitest';
import {
  assertProcessorsCover,
  GatewayJobName,
  InvalidJobError,
  JobName,
  JobPriority,
  jobPriorityOf,
  parseGatewayJob,
  parseModelJob,
} from '#contracts';

describe('job items', () => {
  it('parse a model job into its typed union member, defaults applied', () => {
    const item = parseModelJob('score', { model: 'm', input: { text: 'x' }, owner: 't' });
    expect(item.name).toBe(JobName.Score);
    if (item.name !== JobName.Score) throw new Error('narrowing failed');
    expect(item.data.tokenLogprobs).toBe(false);
  });

  it('refuse unknown names and invalid data as InvalidJobError', () => {
    expect(() => parseModelJob('summarize', {})).toThrow(InvalidJobError);
    expect(() => parseModelJob('summarize', {})).toThrow(/unknown job name 'summarize'/);
    expect(() => parseModelJob('generate', { model: 'm' })).toThrow(/invalid generate job data/);
    expect(() => parseGatewayJob('generate', { batchId: 'b' })).toThrow(InvalidJobError);
    expect(parseGatewayJob(GatewayJobName.ExpireBatch, { batchId: 'b' })).toEqual({
      name: 'expire-batch',
      data: { batchId: 'b' },
    });
  });

  it('map BullMQ priorities onto the one scale, unknown ones as interactive', () => {
    expect(jobPriorityOf(JobPriority.Batch)).toBe(JobPriority.Batch);
    expect(jobPriorityOf(JobPriority.Document)).toBe(JobPriority.Document);
    expect(jobPriorityOf(undefined)).toBe(JobPriority.Interactive);
    expect(jobPriorityOf(0)).toBe(JobPriority.Interactive);
    expect(jobPriorityOf(7)).toBe(JobPriority.Interactive);
    expect(JobPriority.Interactive).toBeLessThan(JobPriority.Batch);
    expect(JobPriority.Batch).toBeLessThan(JobPriority.Document);
  });

  it('check a processor map covers exactly the names', () => {
    const run = () => Promise.resolve();
    expect(() => {
      assertProcessorsCover(
        { generate: run, score: run, digest: run },
        Object.values(JobName),
        'w',
      );
    }).not.toThrow();
    expect(() => {
      assertProcessorsCover({ generate: run, score: run }, Object.values(JobName), 'w');
    }).toThrow(/missing for \[digest\]/);
    expect(() => {
      assertProcessorsCover(
        { generate: run, score: run, digest: run, lines: run },
        Object.values(JobName),
        'w',
      );
    }).toThrow(/unknown \[lines\]/);
  });
});
