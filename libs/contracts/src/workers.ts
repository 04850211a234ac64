import { z } from 'zod';

/** What a worker process publishes about itself in the registry, renewed by its heartbeat. */
export const workerRecordSchema = z.object({
  id: z.string().min(1),
  host: z.string().min(1),
  pid: z.number().int().positive(),
  /** Ids of the model bundles this worker serves (one queue each). */
  models: z.array(z.string()),
  /** Maximum number of sequences the worker runs at once. */
  capacity: z.number().int().positive(),
  /** ISO-8601 time the process started. */
  startedAt: z.iso.datetime(),
  /** ISO-8601 time of the latest heartbeat. */
  heartbeatAt: z.iso.datetime(),
});
export type WorkerRecord = z.infer<typeof workerRecordSchema>;

/**
 * A model's chat template as its workers publish it (from the model bundle's manifest), so that
 * gateways on other hosts render chat requests the way the model expects.
 */
export const modelChatSchema = z.strictObject({
  /** Hugging Face-style Jinja chat template; null: the bundle has none (default format). */
  template: z.string().min(1).nullable(),
  bosToken: z.string().optional(),
  eosToken: z.string().optional(),
});
export type ModelChat = z.infer<typeof modelChatSchema>;
