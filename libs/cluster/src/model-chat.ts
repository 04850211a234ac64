import type { RedisClient } from './redis.js';
import { modelChatSchema, type ModelChat, type RedisKeys } from '#contracts';

/**
 * Publishes a model's chat template for gateways, which never see model bundles (workers may run
 * on other hosts). Every worker of the model writes it at start, before it takes jobs; a bundle
 * without a template writes `template: null`, so a template of an earlier deployment never
 * outlives it. The key has no expiry: it describes the model, not a worker.
 */
export async function publishModelChat(
  redis: RedisClient,
  keys: RedisKeys,
  modelId: string,
  chat: ModelChat,
): Promise<void> {
  await redis.set(keys.modelChat(modelId), JSON.stringify(modelChatSchema.parse(chat)));
}

/** The chat template the model's workers published; undefined when none has (yet). */
export async function readModelChat(
  redis: RedisClient,
  keys: RedisKeys,
  modelId: string,
): Promise<ModelChat | undefined> {
  const text = await redis.get(keys.modelChat(modelId));
  if (text === null) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${keys.modelChat(modelId)} does not hold JSON`, { cause: error });
  }
  const parsed = modelChatSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(
      `${keys.modelChat(modelId)} does not hold a model chat template: ${parsed.error.message}`,
    );
  }
  return parsed.data;
}
