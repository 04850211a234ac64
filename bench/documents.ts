/**
 * Long documents (`node dist/bench/documents.js`, after `npm run build`): a real worker process
 * (`small` preset, default settings) scores documents of 10k, 100k and 1M tokens taken from
 * BullMQ on a private redis-server, the way `POST /v1/jobs` with a `document_id` reaches it.
 * Each length gets a fresh worker, which first scores a short warm-up document (onnxruntime's
 * first runs of each chunk shape are slow), so the worker's peak resident memory (VmHWM) covers
 * its start, the warm-up and the documents of that length. Throughput is tokens scored per
 * second between the job's start and end (BullMQ's processedOn / finishedOn), the median of
 * several runs for the shorter documents. Targets: peak RSS within 50 MB across lengths,
 * throughput within 10%. Results: bench/results/documents.json and documents.md. Nothing is
 * asserted. Run it with `npm run bench -- documents`, which applies the allocator settings the
 * worker images use.
 *
 * Environment: BENCH_DOCUMENT_LENGTHS (default 10000,100000,1000000 tokens).
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { JobName, modelQueueName, redisKeys, scoreResultSchema } from '#contracts';
import { queueOptions } from '#cluster';
import { isLogMessage, ReadyMessage, spawnService } from '#processes';
import { withBenchCluster } from './fixtures.js';
import { median } from './stats.js';
import { describeMachine, machineInfo, markdownTable, verdict } from './machine.js';

const LENGTHS = (process.env.BENCH_DOCUMENT_LENGTHS ?? '10000,100000,1000000')
  .split(',')
  .map(Number);
const PRESET = 'small';
const MODEL_ID = `${PRESET}-dijiang`;
const PREFIX = 'bench-documents';
const RSS_TARGET_MB = 50;
const THROUGHPUT_TARGET = 0.1;
const POLL_MS = 50;
/** Scored by each fresh worker before the timed document. @defaultValue 5,000 tokens */
const WARMUP_TOKENS = 5000;

const workerEntry = fileURLToPath(new URL('../apps/worker/src/main.js', import.meta.url));

/**
 * `tokens` bytes of plain English-like text: the byte tokenizer makes one token per byte, and
 * scoring predicts each of them (the first from end-of-text).
 */
function documentText(tokens: number): string {
  const words = ['the', 'state', 'of', 'a', 'long', 'document', 'is', 'carried', 'forward', 'by'];
  let text = '';
  for (let index = 0; text.length < tokens; index += 1) {
    text += `${words[(index * 7) % words.length] ?? ''}${index % 13 === 12 ? '.\n' : ' '}`;
  }
  return text.slice(0, tokens);
}

/** Peak resident set of a process so far, in MB (Linux: VmHWM in /proc/PID/status). */
function peakRssMb(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match?.[1] === undefined) throw new Error(`no VmHWM for process ${pid}`);
  return Number(match[1]) / 1024;
}

/**
 * A short document is scored several times and the median taken, so that one second of work is
 * not one sample of a shared machine's noise: about 30 s of scoring per length, 1 to 5 runs.
 */
function repeats(tokens: number): number {
  return Math.max(1, Math.min(5, Math.round(300_000 / tokens)));
}

interface DocumentRow {
  tokens: number;
  /** Documents of this length scored; `seconds` is their median. */
  runs: number;
  seconds: number;
  tokensPerSecond: number;
  peakRssMb: number;
}

async function scoreOne(redisUrl: string, modelDir: string, tokens: number): Promise<DocumentRow> {
  const keys = redisKeys(PREFIX);
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(modelQueueName(MODEL_ID), queueOptions(connection, PREFIX));
  const worker = await spawnService('worker', process.execPath, [workerEntry], {
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: PREFIX,
      MODEL_DIR: modelDir,
      WORKER_ID: `bench-documents-${tokens}`,
      LOG_LEVEL: 'info',
    },
    isReady: (line) => isLogMessage(line, ReadyMessage.Worker),
  });
  const score = async (label: string, length: number): Promise<Job> => {
    const documentId = `doc-${label}`;
    await connection.set(keys.document(documentId), documentText(length));
    const jobId = `score-${label}`;
    await queue.add(
      JobName.Score,
      { model: MODEL_ID, owner: 'bench', input: { documentId } },
      { jobId, removeOnComplete: false },
    );
    for (;;) {
      const job = await Job.fromId(queue, jobId);
      if (job?.failedReason !== undefined) throw new Error(`scoring failed: ${job.failedReason}`);
      if (job?.finishedOn !== undefined) {
        const result = scoreResultSchema.parse(job.returnvalue);
        if (result.tokens !== length) {
          throw new Error(`expected ${length} tokens scored, the worker scored ${result.tokens}`);
        }
        return job;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };
  try {
    await score(`warmup-${tokens}`, WARMUP_TOKENS);
    const runs: number[] = [];
    for (let run = 0; run < repeats(tokens); run += 1) {
      const job = await score(`${tokens}-${run}`, tokens);
      runs.push(((job.finishedOn ?? 0) - (job.processedOn ?? 0)) / 1000);
    }
    const seconds = median(runs);
    return {
      tokens,
      runs: runs.length,
      seconds,
      tokensPerSecond: tokens / seconds,
      peakRssMb: peakRssMb(worker.pid),
    };
  } finally {
    await worker.stop();
    await queue.obliterate({ force: true });
    await queue.close();
    await connection.quit();
  }
}

async function main(): Promise<void> {
  const machine = machineInfo();
  await withBenchCluster('documents', PRESET, async ({ redisUrl, modelDir }) => {
    const rows: DocumentRow[] = [];
    for (const tokens of LENGTHS) {
      const row = await scoreOne(redisUrl, modelDir, tokens);
      console.log(
        `${tokens} tokens: ${row.tokensPerSecond.toFixed(0)} tokens/s, peak RSS ${row.peakRssMb.toFixed(1)} MB`,
      );
      rows.push(row);
    }
    const rss = rows.map((row) => row.peakRssMb);
    const rates = rows.map((row) => row.tokensPerSecond);
    const rssSpreadMb = Math.max(...rss) - Math.min(...rss);
    const rateSpread = (Math.max(...rates) - Math.min(...rates)) / Math.max(...rates);
    const command = 'npm run bench -- documents';
    const results = {
      machine,
      command,
      preset: PRESET,
      rows,
      rssSpreadMb,
      rssTargetMb: RSS_TARGET_MB,
      throughputSpread: rateSpread,
      throughputTarget: THROUGHPUT_TARGET,
    };
    const out = fileURLToPath(new URL('../../bench/results/', import.meta.url));
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'documents.json'), `${JSON.stringify(results, null, 2)}\n`);
    const markdown = [
      '# Long documents',
      '',
      describeMachine(machine),
      '',
      `Command: \`${command}\`. A worker process (\`${PRESET}\` preset, default settings) scores an ` +
        'uploaded document taken from BullMQ on a private redis-server; a fresh worker per length, ' +
        `which first scores a ${WARMUP_TOKENS}-token warm-up document, so its peak RSS (VmHWM) ` +
        'covers its start, the warm-up and that document. Throughput: tokens scored per second ' +
        "between the job's start and end.",
      '',
      markdownTable(
        ['tokens', 'runs', 'seconds (median)', 'tokens/s', 'worker peak RSS MB'],
        rows.map((row) => [
          row.tokens.toLocaleString('en-US'),
          String(row.runs),
          row.seconds.toFixed(2),
          row.tokensPerSecond.toFixed(0),
          row.peakRssMb.toFixed(1),
        ]),
      ),
      '',
      `Peak RSS spread ${rssSpreadMb.toFixed(1)} MB — target within ${RSS_TARGET_MB} MB: ` +
        `${verdict(rssSpreadMb <= RSS_TARGET_MB)}. Throughput spread ${(rateSpread * 100).toFixed(1)}% ` +
        `— target within ${THROUGHPUT_TARGET * 100}%: ${verdict(rateSpread <= THROUGHPUT_TARGET)}.`,
      '',
    ].join('\n');
    await writeFile(join(out, 'documents.md'), markdown);
    process.stdout.write(markdown);
  });
}

await main();
