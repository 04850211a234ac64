import { join } from 'node:path';
import { Option } from 'commander';
import type { Command } from 'commander';
import { parseSeed, weightsOption } from './arguments.js';
import {
  ATTENTION_KINDS,
  convertCheckpoint,
  DEFAULT_CONVERT_SEED,
  readChatTemplateFile,
  TOKENIZER_CONFIG_FILE,
} from '#model';
import type { AttentionKind, WeightPrecision } from '#model';
import { buildProgressBar } from './progress.js';

interface ConvertCommandOptions {
  from: string;
  out: string;
  attention: AttentionKind;
  seed: number;
  id?: string;
  fp16?: boolean;
  weights: WeightPrecision;
  chatTemplate?: string;
}

const DIJIANG_SOURCE_TEXT = {
  checkpoint: 'DiJiang tensors from the checkpoint (served as trained)',
  transform:
    'DiJiang tensors initialised by the transform step (fine-tune before expecting a good LM)',
  none: 'softmax attention kept',
} as const;

/** Says whether a written bundle carries a chat template, and which file it was read from. */
export function chatTemplateLine(source: string | undefined): string {
  return source === undefined
    ? "no chat template: chat requests get the gateway's default format"
    : `chat template bundled from ${source}`;
}

/** Adds `convert` to the `model` command group: `dijiang model convert --from HF_DIR --out DIR`. */
export function registerConvertCommand(model: Command): void {
  model
    .command('convert')
    .description(
      'Convert a Hugging Face GPT-NeoX checkpoint (Pythia, or DiJiang with its tensors) into a model bundle. ' +
        'Reads config.json, model.safetensors or model.safetensors.index.json with its shards (F32, F16, BF16), ' +
        'and tokenizer.json and the chat template of tokenizer_config.json when present.',
    )
    .requiredOption('--from <dir>', 'Hugging Face checkpoint folder')
    .requiredOption('--out <dir>', 'bundle folder to write (created if missing)')
    .addOption(
      new Option(
        '--attention <kind>',
        'dijiang: serve trained DiJiang tensors, or add seeded ones to a plain checkpoint; softmax: keep the original attention',
      )
        .choices(ATTENTION_KINDS)
        .default('dijiang'),
    )
    .option(
      '--seed <n>',
      'seed of the transform step for a plain checkpoint',
      parseSeed,
      DEFAULT_CONVERT_SEED,
    )
    .option('--id <id>', 'model id in the bundle (default: the --out folder name)')
    .option('--fp16', 'also write the fp16 graph for CUDA workers')
    .addOption(weightsOption())
    .option(
      '--chat-template <file>',
      `Jinja chat template to bundle instead of the one in ${TOKENIZER_CONFIG_FILE}`,
    )
    .action(async (_options: unknown, command: Command) => {
      const options = command.opts<ConvertCommandOptions>();
      const chatTemplate =
        options.chatTemplate === undefined
          ? undefined
          : await readChatTemplateFile(options.chatTemplate);
      const { onProgress, stop } = buildProgressBar();
      const converted = await convertCheckpoint(options.from, options.out, {
        attention: options.attention,
        seed: options.seed,
        ...(options.id === undefined ? {} : { id: options.id }),
        ...(options.fp16 === undefined ? {} : { fp16: options.fp16 }),
        weights: options.weights,
        ...(chatTemplate === undefined ? {} : { chatTemplate }),
        onProgress,
      }).finally(stop);
      const { manifest, dijiangSource } = converted;
      const { config } = manifest;
      const chatSource =
        manifest.chat === undefined
          ? undefined
          : (options.chatTemplate ?? join(options.from, TOKENIZER_CONFIG_FILE));
      process.stdout.write(
        [
          `wrote ${options.out} (model id ${manifest.id})`,
          `  ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads, vocab ${config.vocabSize}, ${manifest.parameterCount} parameters`,
          `  attention ${config.attention}: ${DIJIANG_SOURCE_TEXT[dijiangSource]}`,
          `  tokenizer ${config.tokenizer}; ${options.weights} weights; files: ${Object.keys(manifest.files).join(', ')}`,
          `  ${chatTemplateLine(chatSource)}`,
          '',
        ].join('\n'),
      );
    });
}
