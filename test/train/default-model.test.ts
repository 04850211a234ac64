/**
 * The committed default model (checkpoints/austen-small, made by tools/train): it converts to a
 * bundle, the served graph scores its held-out split with the NLL the trainer measured in
 * PyTorch, and it writes English.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint, DEFAULT_MODEL_CHECKPOINT, DEFAULT_MODEL_ID } from '#model';
import { englishWordShare } from '#testing';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(root, 'bin/dijiang.js');
const checkpoint = join(root, DEFAULT_MODEL_CHECKPOINT);
/** The bar the default model must clear, in nats per byte on the held-out split. */
const MAX_VALID_LOSS = 1.35;

interface TrainingSummary {
  valid_tokens: number;
  valid_total_nll_streaming: number;
  valid_loss_streaming: number;
}

function dijiang(args: string[]): string {
  const result = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`dijiang ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

describe('the default model', () => {
  let bundle: string;
  const summary = JSON.parse(
    readFileSync(join(checkpoint, 'training.json'), 'utf8'),
  ) as TrainingSummary;

  beforeAll(async () => {
    bundle = join(mkdtempSync(join(tmpdir(), 'dijiang-default-')), DEFAULT_MODEL_ID);
    await convertCheckpoint(checkpoint, bundle, { id: DEFAULT_MODEL_ID });
  });

  it('scores the held-out split as the trainer did, under the validation-loss bar', () => {
    const corpus = JSON.parse(readFileSync(join(checkpoint, 'corpus.json'), 'utf8')) as {
      files: Record<string, { sha256: string }>;
    };
    const validPath = join(checkpoint, 'valid.txt');
    expect(createHash('sha256').update(readFileSync(validPath)).digest('hex')).toBe(
      corpus.files['valid.txt']?.sha256,
    );
    const scored = dijiang(['score', '--model', bundle, validPath]);
    const tokens = Number(/^tokens (\d+)$/m.exec(scored)?.[1]);
    const totalNll = Number(/^total_nll (\S+)$/m.exec(scored)?.[1]);
    expect(tokens).toBe(summary.valid_tokens);
    const relative = Math.abs(totalNll - summary.valid_total_nll_streaming) / totalNll;
    expect(relative).toBeLessThan(1e-3);
    expect(totalNll / tokens).toBeLessThanOrEqual(MAX_VALID_LOSS);
  });

  it('continues "It was" greedily in dictionary words', () => {
    const text = dijiang([
      'generate',
      '--model',
      bundle,
      '--temperature',
      '0',
      '--max-tokens',
      '64',
      'It was',
    ]);
    const { words, share } = englishWordShare(text);
    expect(words.length, text).toBeGreaterThanOrEqual(8);
    expect(share, text).toBeGreaterThanOrEqual(0.8);
  });

  it('shows its model card and per-head constant decay in model inspect', () => {
    const inspected = dijiang(['model', 'inspect', bundle]);
    expect(inspected).toContain('decay: per-head constant');
    expect(inspected).toContain('model card (README.md):');
    expect(inspected).toContain('Tokens seen:');
  });
});
