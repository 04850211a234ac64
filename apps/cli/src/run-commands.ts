import { readFile } from 'node:fs/promises';
import { integerIn, numberIn } from './arguments.js';
import { progressBar } from './progress.js';
import type { Command } from 'commander';
import { JobPriority } from '#contracts';
import { DEFAULT_SAMPLING, Engine, summarizeScore, type SamplingParams } from '#engine';

interface GenerateFlags {
  model: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed?: number;
  stop: string[];
  threads?: number;
}

interface ScoreFlags {
  model: string;
  window?: number;
  threads?: number;
  json?: boolean;
}

/**
 * `dijiang generate` and `dijiang score`: a model bundle run in this process (its own engine
 * thread), no Redis — the quickest way to see a model work.
 */
export function registerRunCommands(program: Command): void {
  program
    .command('generate')
    .description('Generate a continuation of PROMPT, streaming tokens to stdout (no Redis)')
    .argument('<prompt>', 'text to continue')
    .requiredOption('--model <dir>', 'model bundle folder')
    .option('--max-tokens <n>', 'tokens to generate', integerIn('--max-tokens', 1, 1_000_000), 64)
    .option('--temperature <t>', '0 is greedy', numberIn('--temperature', 0, 2), 1)
    .option('--top-p <p>', 'nucleus sampling mass', numberIn('--top-p', 0.000001, 1), 1)
    .option('--top-k <k>', '0 disables', integerIn('--top-k', 0, 1_000_000), 0)
    .option(
      '--seed <s>',
      'random seed (default: random)',
      integerIn('--seed', -(2 ** 53) + 1, 2 ** 53 - 1),
    )
    .option('--stop <s...>', 'stop strings (never printed)', [])
    .option('--threads <n>', 'onnxruntime intra-op threads', integerIn('--threads', 1, 1024))
    .action(async (prompt: string, flags: GenerateFlags) => {
      const engine = await Engine.start({
        bundleDir: flags.model,
        ...(flags.threads === undefined ? {} : { intraOpThreads: flags.threads }),
      });
      const sampling: SamplingParams = {
        ...DEFAULT_SAMPLING,
        temperature: flags.temperature,
        topP: flags.topP,
        topK: flags.topK,
        seed: flags.seed ?? Math.floor(Math.random() * 2 ** 31),
      };
      const started = performance.now();
      // The prompt's prefill, then the tokens generated; when the text itself streams to the
      // same terminal, it is the progress, and the bar goes once the first token arrives.
      const progress = progressBar<'prompt' | 'generate'>('prompt', 'tokens');
      const textOnTerminal = process.stdout.isTTY;
      let generated = 0;
      try {
        const outcome = await engine.run(
          {
            id: 'cli',
            kind: 'generate',
            priority: JobPriority.Interactive,
            text: prompt,
            prefixBlockTokens: 0,
            generate: { sampling, choice: 0, maxTokens: flags.maxTokens, stop: flags.stop },
          },
          {
            start: () => ({ position: 0, skip: 0, replay: [] }),
            onEvent: (event) => {
              if (event.type === 'progress') progress.update(event.done, event.total, 'prompt');
              if (event.type === 'token') {
                generated += 1;
                if (textOnTerminal) progress.stop();
                else progress.update(generated, flags.maxTokens, 'generate');
              }
              if (event.type === 'token' || event.type === 'finished')
                process.stdout.write(event.text);
            },
          },
        );
        progress.stop();
        if (outcome.type === 'finished') {
          const seconds = (performance.now() - started) / 1000;
          process.stdout.write('\n');
          process.stderr.write(
            `[${outcome.completionTokens} tokens, finish reason ${outcome.finishReason}, ` +
              `${(outcome.completionTokens / seconds).toFixed(1)} tokens/s, seed ${sampling.seed}]\n`,
          );
        }
      } finally {
        progress.stop();
        await engine.close();
      }
    });

  program
    .command('score')
    .description('Token count, total NLL and perplexity of a text file (no Redis)')
    .argument('<file>', 'UTF-8 text file')
    .requiredOption('--model <dir>', 'model bundle folder')
    .option(
      '--window <n>',
      'also report perplexity per window of N tokens',
      integerIn('--window', 1, 1e9),
    )
    .option('--threads <n>', 'onnxruntime intra-op threads', integerIn('--threads', 1, 1024))
    .option('--json', 'print the result as JSON, in the shape of a score job result')
    .action(async (file: string, flags: ScoreFlags) => {
      const text = await readFile(file, 'utf8');
      const engine = await Engine.start({
        bundleDir: flags.model,
        ...(flags.threads === undefined ? {} : { intraOpThreads: flags.threads }),
      });
      const progress = progressBar('score', 'tokens');
      try {
        const outcome = await engine.run(
          {
            id: 'cli-score',
            kind: 'score',
            priority: JobPriority.Document,
            text,
            prefixBlockTokens: 0,
            score: { windowTokens: flags.window },
          },
          {
            start: () => ({ position: 0, skip: 0, replay: [] }),
            onEvent: (event) => {
              if (event.type === 'progress') progress.update(event.done, event.total);
            },
          },
        );
        progress.stop();
        if (outcome.type !== 'finished') throw new Error('scoring was interrupted');
        const summary = summarizeScore(outcome.logprobs ?? [], flags.window);
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(summary)}\n`);
          return;
        }
        process.stdout.write(
          `tokens ${summary.tokens}\ntotal_nll ${summary.totalNll.toFixed(6)}\n` +
            `perplexity ${summary.perplexity.toFixed(6)}\n`,
        );
        for (const window of summary.windows) {
          process.stdout.write(
            `window ${window.start}-${window.end} perplexity ${window.perplexity.toFixed(6)}\n`,
          );
        }
      } finally {
        progress.stop();
        await engine.close();
      }
    });
}
