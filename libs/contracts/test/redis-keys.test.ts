import { describe, expect, it } from 'vitest';
import { redisKeys } from '#contracts';

describe('Redis key layout', () => {
  // Keys already in Redis (checkpoints of running jobs) must still be found after an upgrade.
  it("keeps a checkpoint's metadata and log-probs beside its state, as written before", () => {
    const keys = redisKeys('dijiang');
    expect(keys.checkpoint('job-1', 2)).toBe('dijiang:ckpt:job-1:2');
    expect(keys.checkpointMeta('job-1', 2)).toBe('dijiang:ckpt:job-1:2:meta');
    expect(keys.checkpointLogprobs('job-1', 2)).toBe('dijiang:ckpt:job-1:2:logprobs');
  });
});
