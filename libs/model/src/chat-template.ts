/**
 * Chat templates of model bundles: the Hugging Face-style Jinja template that turns chat messages
 * into the prompt text the model was trained on, with the BOS/EOS token texts it refers to.
 * Converted checkpoints bring theirs in `tokenizer_config.json`; a template file can be given
 * instead (`--chat-template`). The gateway renders it; a bundle without one gets the gateway's
 * plain default format.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { z } from 'zod';

export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** Of several named templates, the one transformers' `apply_chat_template` uses by default. */
const DEFAULT_TEMPLATE_NAME = 'default';

/** Why `template` does not parse as a Jinja template, or undefined when it does. */
export function chatTemplateProblem(template: string): string | undefined {
  try {
    new Template(template);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

export const bundleChatSchema = z.strictObject({
  /** A Hugging Face-style Jinja chat template (`messages`, `bos_token`, `eos_token`, ...). */
  template: z
    .string()
    .min(1)
    .superRefine((template, context) => {
      const problem = chatTemplateProblem(template);
      if (problem !== undefined) {
        context.addIssue({
          code: 'custom',
          message: `the chat template does not parse as Jinja: ${problem}`,
        });
      }
    }),
  /** The text of the beginning-of-sequence token, for templates that write `bos_token`. */
  bosToken: z.string().optional(),
  /** The text of the end-of-sequence token, for templates that write `eos_token`. */
  eosToken: z.string().optional(),
});
export type BundleChat = z.infer<typeof bundleChatSchema>;

/** Reads a chat template file (the template text itself, as in a `.jinja` file). */
export async function readChatTemplateFile(path: string): Promise<string> {
  let template: string;
  try {
    template = await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`chat template file ${path} is missing or unreadable`, { cause: error });
  }
  if (template.trim() === '') throw new Error(`chat template file ${path} is empty`);
  const problem = chatTemplateProblem(template);
  if (problem !== undefined) {
    throw new Error(`chat template file ${path} does not parse as Jinja: ${problem}`);
  }
  return template;
}

/** transformers writes special tokens as plain strings or as AddedToken objects. */
const specialTokenSchema = z
  .union([z.string(), z.looseObject({ content: z.string() })], {
    error: 'expected a string or an object with a string "content" (an AddedToken)',
  })
  .nullable()
  .optional();

/** The fields of a Hugging Face `tokenizer_config.json` chat needs; the others are ignored. */
const tokenizerConfigSchema = z.looseObject({
  chat_template: z
    .union(
      [
        z.string().min(1),
        z.array(z.looseObject({ name: z.string(), template: z.string().min(1) })),
      ],
      { error: 'expected a template string or a list of {"name", "template"} objects' },
    )
    .nullable()
    .optional(),
  bos_token: specialTokenSchema,
  eos_token: specialTokenSchema,
});

const tokenText = (token: z.infer<typeof specialTokenSchema>): string | undefined =>
  typeof token === 'object' && token !== null ? token.content : (token ?? undefined);

export interface CheckpointChatOptions {
  /** A template that replaces the checkpoint's own (e.g. read from `--chat-template FILE`). */
  readonly template?: string;
}

/**
 * The chat template of a checkpoint folder: `chat_template` of its `tokenizer_config.json` (a
 * string, or a list of named templates of which "default" is used) with its `bos_token` and
 * `eos_token`, unless `options.template` replaces the template. Undefined when there is no
 * template; throws naming the file and field when `tokenizer_config.json` is malformed.
 */
export async function readCheckpointChat(
  directory: string,
  options: CheckpointChatOptions = {},
): Promise<BundleChat | undefined> {
  let text: string | undefined;
  try {
    text = await readFile(join(directory, TOKENIZER_CONFIG_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`${TOKENIZER_CONFIG_FILE} is unreadable`, { cause: error });
    }
  }
  if (text === undefined) {
    return options.template === undefined ? undefined : { template: options.template };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${TOKENIZER_CONFIG_FILE} is not valid JSON`, { cause: error });
  }
  const parsed = tokenizerConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`${TOKENIZER_CONFIG_FILE}: ${z.prettifyError(parsed.error)}`);
  }
  const config = parsed.data;
  const template = options.template ?? checkpointTemplate(config.chat_template);
  if (template === undefined) return undefined;
  if (options.template === undefined) {
    const problem = chatTemplateProblem(template);
    if (problem !== undefined) {
      throw new Error(
        `${TOKENIZER_CONFIG_FILE}: chat_template does not parse as Jinja: ${problem}`,
      );
    }
  }
  const bosToken = tokenText(config.bos_token);
  const eosToken = tokenText(config.eos_token);
  return {
    template,
    ...(bosToken === undefined ? {} : { bosToken }),
    ...(eosToken === undefined ? {} : { eosToken }),
  };
}

function checkpointTemplate(
  chatTemplate: z.infer<typeof tokenizerConfigSchema>['chat_template'],
): string | undefined {
  if (chatTemplate === null || chatTemplate === undefined || typeof chatTemplate === 'string') {
    return chatTemplate ?? undefined;
  }
  const named = chatTemplate.find((entry) => entry.name === DEFAULT_TEMPLATE_NAME);
  if (named === undefined) {
    throw new Error(
      `${TOKENIZER_CONFIG_FILE}: chat_template lists no template named "${DEFAULT_TEMPLATE_NAME}" ` +
        `(it has ${chatTemplate.map((entry) => `"${entry.name}"`).join(', ') || 'none'}): ` +
        'give the template to use with --chat-template',
    );
  }
  return named.template;
}
