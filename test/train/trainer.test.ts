/**
 * The trainer (PyTorch, tools/train/) and the served graph (ONNX) are two implementations of one
 * model: checkpoints the trainer writes must score the same NLL and decode the same greedy tokens
 * through `dijiang model convert`, `dijiang score` and `dijiang generate` as in PyTorch itself.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { BYTE_EOS_TOKEN_ID, DEFAULT_MODEL_CHECKPOINT, loadBundle } from '#model';
import { openBundleSession, runChunk } from '#engine/runtime';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(root, 'bin/dijiang.js');
const PROMPTS = ['It was', 'Mr. Darcy'];
const GREEDY_TOKENS = 40;

/** A Python with PyTorch: Debian's python3-torch lives under /usr/bin/python3. */
function torchPython(): string {
  const candidates = [process.env.DIJIANG_TRAIN_PYTHON, '/usr/bin/python3', 'python3'];
  for (const candidate of candidates) {
    if (candidate === undefined || candidate === '') continue;
    const probe = spawnSync(candidate, ['-c', 'import torch'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  throw new Error(
    'no Python with PyTorch: run `apt-get install -y python3-torch libopenblas0-pthread` (as root), ' +
      'or set DIJIANG_TRAIN_PYTHON to a python that imports torch',
  );
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
  });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.status}:\n${result.stderr}`);
  }
  return result.stdout;
}

/** `dijiang score`: the served path (engine thread, chunked prefill). */
function cliScore(bundle: string, file: string): { tokens: number; totalNll: number } {
  const scored = run(process.execPath, [cli, 'score', '--model', bundle, file]);
  return {
    tokens: Number(/^tokens (\d+)$/m.exec(scored)?.[1]),
    totalNll: Number(/^total_nll (\S+)$/m.exec(scored)?.[1]),
  };
}

/** The bundle's graph run directly over end-of-text + the file's bytes, in one chunk. */
async function graphScore(
  bundle: string,
  file: string,
): Promise<{ tokens: number; totalNll: number }> {
  const loaded = await loadBundle(bundle);
  const { config } = loaded.manifest;
  const session = await openBundleSession(loaded);
  const ids = [BYTE_EOS_TOKEN_ID, ...readFileSync(file)];
  const inputs = ids.slice(0, -1);
  const result = await runChunk(session, config, {
    inputIds: inputs,
    batch: 1,
    chunk: inputs.length,
    startPos: [0],
    validLen: [inputs.length],
    targetIds: ids.slice(1),
  });
  await session.release();
  let totalNll = 0;
  for (const logprob of result.targetLogprobs ?? []) totalNll -= logprob;
  return { tokens: inputs.length, totalNll };
}

interface TrainerView {
  attention: string;
  score: { tokens: number; total_nll: number };
  greedy: { prompt: string; tokens: number[] }[];
}

describe('trainer checkpoints served by the cluster', () => {
  let python: string;
  let work: string;
  let validPath: string;

  beforeAll(() => {
    python = torchPython();
    work = mkdtempSync(join(tmpdir(), 'dijiang-trainer-'));
    // Text for a few training steps and a held-out piece: the default model's validation split
    // (public-domain Austen), cut at line breaks.
    const text = readFileSync(join(root, DEFAULT_MODEL_CHECKPOINT, 'valid.txt'), 'utf8');
    const lines = text.split('\n');
    const train = `${lines.slice(0, 1200).join('\n')}\n`;
    const valid = `${lines.slice(1200, 1260).join('\n')}\n`;
    const corpus = join(work, 'corpus');
    mkdirSync(corpus);
    writeFileSync(join(corpus, 'train.txt'), train);
    writeFileSync(join(corpus, 'valid.txt'), valid);
    writeFileSync(
      join(corpus, 'corpus.json'),
      JSON.stringify({
        sources: { austen: 'public domain' },
        valid_fraction: 0.05,
        documents: [
          {
            source: 'austen',
            title: 'excerpt',
            train_bytes: Buffer.byteLength(train),
            valid_bytes: Buffer.byteLength(valid),
          },
        ],
        files: Object.fromEntries(
          Object.entries({ 'train.txt': train, 'valid.txt': valid }).map(([name, content]) => [
            name,
            {
              bytes: Buffer.byteLength(content),
              sha256: createHash('sha256').update(content).digest('hex'),
            },
          ]),
        ),
      }),
    );
    validPath = join(corpus, 'valid.txt');
  });

  function train(name: string, extra: string[]): string {
    const out = join(work, name);
    run(python, [
      'tools/train/train.py',
      ...['--corpus', join(work, 'corpus'), '--out', out, '--preset', 'tiny'],
      ...['--batch-size', '4', '--seq-len', '64', '--warmup', '5', '--lr', '3e-3'],
      ...['--eval-every', '1000', '--log-every', '1000', '--eval-windows', '4'],
      ...extra,
    ]);
    return out;
  }

  async function expectSameModel(
    checkpoint: string,
    attention: 'dijiang' | 'softmax',
  ): Promise<void> {
    const bundle = `${checkpoint}-bundle`;
    const converted = run(process.execPath, [
      cli,
      ...['model', 'convert', '--from', checkpoint, '--out', bundle, '--attention', attention],
    ]);
    expect(converted).toContain(`attention ${attention}`);

    const trainer = JSON.parse(
      run(python, [
        'tools/train/evaluate.py',
        ...[
          '--checkpoint',
          checkpoint,
          '--score',
          validPath,
          '--max-tokens',
          String(GREEDY_TOKENS),
        ],
        ...PROMPTS.flatMap((prompt) => ['--greedy', prompt]),
      ]),
    ) as TrainerView;
    expect(trainer.attention).toBe(attention);

    const { tokens, totalNll } =
      attention === 'dijiang' ? cliScore(bundle, validPath) : await graphScore(bundle, validPath);
    expect(tokens).toBe(trainer.score.tokens);
    expect(Buffer.byteLength(readFileSync(validPath))).toBe(tokens);
    expect(Math.abs(totalNll - trainer.score.total_nll) / trainer.score.total_nll).toBeLessThan(
      1e-3,
    );
    // The engine serves DiJiang only (softmax bundles are graph baselines): greedy decoding is
    // compared where the cluster would run it.
    if (attention === 'softmax') return;

    for (const { prompt, tokens: expected } of trainer.greedy) {
      const generated = run(process.execPath, [
        cli,
        ...['generate', '--model', bundle, '--temperature', '0'],
        ...['--max-tokens', String(GREEDY_TOKENS), prompt],
      ]);
      // The CLI prints the continuation and a newline; the trainer gives byte ids.
      expect(generated).toBe(`${new TextDecoder().decode(Uint8Array.from(expected))}\n`);
    }
  }

  it('a DiJiang model trained from scratch', async () => {
    const checkpoint = train('dijiang', ['--tokens', '12800']);
    const card = readFileSync(join(checkpoint, 'README.md'), 'utf8');
    expect(card).toContain('Tokens seen: 12,800');
    await expectSameModel(checkpoint, 'dijiang');
    const inspected = run(process.execPath, [cli, 'model', 'inspect', `${checkpoint}-bundle`]);
    expect(inspected).toContain('decay: per-head constant');
    expect(inspected).toContain('model card (README.md):');
    expect(inspected).toContain('Tokens seen: 12,800');
  });

  it('a softmax baseline, and the same turned into DiJiang by the transform step and fine-tuned', async () => {
    const softmax = train('softmax', ['--attention', 'softmax', '--tokens', '12800']);
    await expectSameModel(softmax, 'softmax');
    const converted = train('converted', [
      ...['--init-from', softmax, '--attention', 'dijiang', '--tokens', '6400'],
    ]);
    const summary = JSON.parse(readFileSync(join(converted, 'training.json'), 'utf8')) as {
      origin: string;
    };
    expect(summary.origin).toBe('transform');
    await expectSameModel(converted, 'dijiang');
  });

  it('resumes an interrupted run from its own saved state, to the same model', () => {
    const interrupted = train('resumed', ['--tokens', '12800', '--stop-after', '20']);
    expect(existsSync(join(interrupted, 'training.json'))).toBe(false);
    train('resumed', ['--tokens', '12800']);
    const straight = train('straight', ['--tokens', '12800']);
    const validLoss = (dir: string): number =>
      (
        JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8')) as {
          valid_loss_windowed: number;
        }
      ).valid_loss_windowed;
    expect(validLoss(interrupted)).toBe(validLoss(straight));
    expect(readFileSync(join(interrupted, 'model.safetensors'))).toEqual(
      readFileSync(join(straight, 'model.safetensors')),
    );
  });
});
