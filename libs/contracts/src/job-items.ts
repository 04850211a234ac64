import type { z } from 'zod';
import { batchJobDataSchema, GatewayJobName } from './gateway.js';
import { JobName, jobPayloadSchemas, type JobPayload } from './jobs.js';

/**
 * Every job the system runs, as a discriminated union of `{ name, data }`: the model queues'
 * jobs (run by workers) and the gateway queue's batch jobs (run by gateways). Consumers parse
 * BullMQ's untyped `job.name` and `job.data` into one of these once, then dispatch on `name` with
 * an exhaustive map of processors, so a job name nobody handles is a compile error, and a job
 * name nobody knows (another producer's, a newer version's) is refused, never ignored.
 */
export type ModelJob = { [N in JobName]: { name: N; data: JobPayload<N> } }[JobName];

export type BatchJobData = z.infer<typeof batchJobDataSchema>;
export type GatewayJob = {
  [N in GatewayJobName]: { name: N; data: BatchJobData };
}[GatewayJobName];

export type JobItem = ModelJob | GatewayJob;

/** A job whose name or data no consumer can run: retrying it cannot help. */
export class InvalidJobError extends Error {
  override readonly name = 'InvalidJobError';
}

const modelJobNames = new Set<string>(Object.values(JobName));
const gatewayJobNames = new Set<string>(Object.values(GatewayJobName));

/** A model queue's job, validated as the gateway validated it (it is not the only producer). */
export function parseModelJob(name: string, data: unknown): ModelJob {
  if (!modelJobNames.has(name)) throw new InvalidJobError(`unknown job name '${name}'`);
  const parsed = jobPayloadSchemas[name as JobName].safeParse(data);
  if (!parsed.success) {
    throw new InvalidJobError(`invalid ${name} job data: ${parsed.error.message}`);
  }
  return { name, data: parsed.data } as ModelJob;
}

/** A gateway queue's job. */
export function parseGatewayJob(name: string, data: unknown): GatewayJob {
  if (!gatewayJobNames.has(name)) throw new InvalidJobError(`unknown job name '${name}'`);
  const parsed = batchJobDataSchema.safeParse(data);
  if (!parsed.success) {
    throw new InvalidJobError(`invalid ${name} job data: ${parsed.error.message}`);
  }
  return { name: name as GatewayJobName, data: parsed.data };
}

/**
 * One processor per job name, checked by the compiler (a missing or extra name does not type)
 * and again at boot by `assertProcessorsCover` (a map built dynamically cannot slip through).
 */
export type ProcessorMap<J extends JobItem, Context, Result> = {
  [N in J['name']]: (job: Extract<J, { name: N }>, context: Context) => Promise<Result>;
};

/** Fails at boot when `processors` does not have exactly one function per name in `names`. */
export function assertProcessorsCover(
  processors: Readonly<Record<string, unknown>>,
  names: readonly string[],
  what: string,
): void {
  const missing = names.filter((name) => typeof processors[name] !== 'function');
  const extra = Object.keys(processors).filter((name) => !names.includes(name));
  if (missing.length > 0 || extra.length > 0) {
    throw new Error(
      `${what}: processors missing for [${missing.join(', ')}], unknown [${extra.join(', ')}]`,
    );
  }
}
