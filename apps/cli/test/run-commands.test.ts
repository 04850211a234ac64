import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ByteTokenizer, initWeights, logSoftmaxRows, oracleLogits, presetConfig } from '#model';
import { testModelDir } from '#testing';

const cli = fileURLToPath(new URL('../../../bin/dijiang.js', import.meta.url));
// The test model is the `tiny` preset with seed 0, so the float64 oracle can rebuild its weights.
const config = presetConfig('tiny', 'dijiang');
const weights = initWeights(config, 0);
const tokenizer = new ByteTokenizer();

function dijiang(...args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('dijiang generate and score (in-process, no Redis)', () => {
  it('generate --temperature 0 prints the float64 oracle greedy continuation', () => {
    const prompt = 'Hello';
    const { status, stdout, stderr } = dijiang(
      'generate',
      '--model',
      testModelDir(),
      '--temperature',
      '0',
      '--max-tokens',
      '6',
      prompt,
    );
    expect(status, stderr).toBe(0);
    const ids = tokenizer.encode(prompt);
    for (let step = 0; step < 6; step += 1) {
      const logits = oracleLogits(config, weights, ids, { logitPositions: [ids.length - 1] });
      let best = 0;
      logits.forEach((value, index) => {
        if (value > (logits[best] ?? -Infinity)) best = index;
      });
      if (best === tokenizer.eosTokenId) break;
      ids.push(best);
    }
    const expected = tokenizer.decode(ids.slice(tokenizer.encode(prompt).length));
    expect(stdout).toBe(`${expected}\n`);
    expect(stderr).toMatch(/tokens, finish reason (length|stop), .* tokens\/s, seed \d+\]/);
  });

  it('score prints token count, total NLL and perplexity equal to the oracle', () => {
    const text = 'Score this line.';
    const file = join(tmpdir(), `dijiang-score-${process.pid}.txt`);
    writeFileSync(file, text);
    const { status, stdout, stderr } = dijiang('score', '--model', testModelDir(), file);
    expect(status, stderr).toBe(0);
    const ids = [tokenizer.eosTokenId, ...tokenizer.encode(text)];
    const logprobs = logSoftmaxRows(oracleLogits(config, weights, ids), config.vocabSize);
    const nll = -ids
      .slice(1)
      .reduce((sum, id, position) => sum + (logprobs[position * config.vocabSize + id] ?? 0), 0);
    const printed = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((line) => line.split(' ') as [string, string]),
    );
    expect(Number(printed.tokens)).toBe(ids.length - 1);
    expect(Number(printed.total_nll)).toBeCloseTo(nll, 3);
    expect(Number(printed.perplexity)).toBeCloseTo(Math.exp(nll / (ids.length - 1)), 2);
  });

  it('rejects a bad flag with a clear message', () => {
    const { status, stderr } = dijiang('generate', '--model', testModelDir(), '--top-p', '7', 'x');
    expect(status).not.toBe(0);
    expect(stderr).toContain('--top-p must be a number between');
  });
});
