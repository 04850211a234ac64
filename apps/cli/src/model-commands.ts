import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import type { Command } from 'commander';
import { parseSeed, weightsOption } from './arguments.js';
import {
  ATTENTION_KINDS,
  BUNDLE_MANIFEST,
  checkBundleInputs,
  headDim,
  initWeights,
  isPresetName,
  loadBundle,
  presetConfig,
  PRESET_NAMES,
  QUANT_BLOCK_SIZE,
  readChatTemplateFile,
  writeBundle,
} from '#model';
import type {
  AttentionKind,
  BundleManifest,
  ModelConfig,
  PresetName,
  WeightPrecision,
  WriteBundleOptions,
} from '#model';
import { chatTemplateLine, registerConvertCommand } from './convert-command.js';
import { registerExportGgufCommand } from './export-gguf-command.js';
import { buildProgressBar } from './progress.js';

/** Seed of `model create` when none is given. */
const DEFAULT_CREATE_SEED = 0;

interface CreateOptions {
  preset: PresetName;
  out: string;
  seed: number;
  attention: AttentionKind;
  id?: string;
  fp16?: boolean;
  weights: WeightPrecision;
  chatTemplate?: string;
  tokenizer?: string;
}

/** The bundle options of `model create`, or why they cannot work, before any weight is drawn. */
async function createBundleOptions(
  options: CreateOptions,
  config: ModelConfig,
): Promise<WriteBundleOptions> {
  if (config.tokenizer === 'hf' && options.tokenizer === undefined) {
    throw new Error(
      `preset ${options.preset} uses a Hugging Face tokenizer: give its tokenizer.json with --tokenizer FILE`,
    );
  }
  if (config.tokenizer === 'byte' && options.tokenizer !== undefined) {
    throw new Error(
      `preset ${options.preset} uses the byte tokenizer: --tokenizer does not apply to it`,
    );
  }
  const chatTemplate =
    options.chatTemplate === undefined
      ? undefined
      : await readChatTemplateFile(options.chatTemplate);
  const bundleOptions: WriteBundleOptions = {
    id: options.id ?? `${options.preset}-${options.attention}`,
    seed: options.seed,
    ...(options.fp16 === undefined ? {} : { fp16: options.fp16 }),
    weights: options.weights,
    ...(options.tokenizer === undefined ? {} : { tokenizerJsonPath: options.tokenizer }),
    ...(chatTemplate === undefined ? {} : { chat: { template: chatTemplate } }),
  };
  await checkBundleInputs(options.out, config, bundleOptions);
  return bundleOptions;
}

function parsePreset(value: string): PresetName {
  if (!isPresetName(value)) {
    throw new InvalidArgumentError(`unknown preset; choose one of ${PRESET_NAMES.join(', ')}`);
  }
  return value;
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit] ?? 'B'}`;
}

function decaySummary(decay: BundleManifest['decay'], tablePositions: number): string[] {
  if (decay === undefined) return [];
  if (decay.form === 'tables') {
    return [
      `  decay: position tables of ${tablePositions} entries; past them the last ratio and product continue`,
    ];
  }
  return [
    `  decay: per-head constant (${tablePositions}-entry tables state it; exact at every position), g per layer:`,
    ...decay.headDecays.map(
      (row, layer) => `    layer ${layer}: ${row.map((g) => g.toFixed(4)).join(' ')}`,
    ),
  ];
}

function chatTemplateSummary(chat: BundleManifest['chat']): string {
  if (chat === undefined)
    return "chat template: none (chat requests get the gateway's default format)";
  const tokens = [
    ...(chat.bosToken === undefined ? [] : [`bos ${JSON.stringify(chat.bosToken)}`]),
    ...(chat.eosToken === undefined ? [] : [`eos ${JSON.stringify(chat.eosToken)}`]),
  ];
  return [`chat template: ${chat.template.length} characters`, ...tokens].join(', ');
}

function weightsSummary(weights: WeightPrecision): string {
  switch (weights) {
    case 'fp32':
      return 'weights: fp32 (CPU graph)';
    case 'fp16':
      return 'weights: fp16 (CPU graph; widened to fp32 when loaded)';
    case 'int8':
    case 'int4':
      return `weights: ${weights} (CPU graph; blocks of ${QUANT_BLOCK_SIZE} with one fp32 scale each; embedding, layers and LM head)`;
  }
}

/** Adds the `model` command group: `create`, `inspect`, `convert` and `export-gguf`. */
export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('Build, convert and inspect model bundles');

  model
    .command('create')
    .description(
      'Create a model bundle from a preset with seeded, deterministic weights (no checkpoint needed)',
    )
    .requiredOption('--preset <name>', `one of ${PRESET_NAMES.join(', ')}`, parsePreset)
    .requiredOption('--out <dir>', 'bundle folder to write (created if missing)')
    .option('--seed <n>', 'initialisation seed', parseSeed, DEFAULT_CREATE_SEED)
    .addOption(
      new Option('--attention <kind>', 'attention kind')
        .choices(ATTENTION_KINDS)
        .default('dijiang'),
    )
    .option('--id <id>', 'model id in the bundle (default: PRESET-ATTENTION)')
    .option('--fp16', 'also write the fp16 graph for CUDA workers')
    .addOption(weightsOption())
    .option('--chat-template <file>', 'Jinja chat template to bundle (Hugging Face style)')
    .option(
      '--tokenizer <file>',
      'Hugging Face tokenizer.json to bundle (required by the pythia presets, which have no byte tokenizer)',
    )
    .action(async (_options: unknown, command: Command) => {
      const options = command.opts<CreateOptions>();
      const config = presetConfig(options.preset, options.attention);
      // Every input is checked before the weights, which take seconds to minutes to draw.
      const bundleOptions = await createBundleOptions(options, config);
      const { onProgress, stop } = buildProgressBar();
      let manifest: BundleManifest;
      try {
        const weights = initWeights(config, options.seed, onProgress);
        manifest = await writeBundle(options.out, config, weights, {
          ...bundleOptions,
          onProgress,
        });
      } finally {
        stop();
      }
      process.stdout.write(
        `wrote ${options.out} (model id ${manifest.id}, ${manifest.parameterCount} parameters, seed ${options.seed}, ${options.weights} weights)\n` +
          `  ${chatTemplateLine(options.chatTemplate)}\n`,
      );
    });

  model
    .command('inspect')
    .description(
      'Verify a model bundle and print its config, sizes, memory per sequence and model card',
    )
    .argument('<dir>', 'bundle folder')
    .action(async (dir: string) => {
      const { manifest } = await loadBundle(dir);
      const { config } = manifest;
      const lines = [
        `model ${manifest.id} (${dir}): checksums verified`,
        `  architecture ${config.architecture}, attention ${config.attention}, tokenizer ${config.tokenizer}`,
        `  vocab ${config.vocabSize}, hidden ${config.hiddenSize}, layers ${config.numLayers}, heads ${config.numHeads} (d ${headDim(config)}), ffn ${config.intermediateSize}`,
        `  rotary pct ${config.rotaryPct}, base ${config.rotaryBase}; decay tables / max positions ${config.maxPositionEmbeddings}; layer norm eps ${config.layerNormEps}`,
        `  parameters ${manifest.parameterCount}${manifest.seed === undefined ? '' : ` (seed ${manifest.seed})`}`,
        config.attention === 'dijiang'
          ? `  state per sequence ${formatBytes(manifest.stateBytesPerSequence)} (${manifest.stateBytesPerSequence} bytes, any context length)`
          : `  KV cache per token ${formatBytes(manifest.kvBytesPerToken)} (${manifest.kvBytesPerToken} bytes)`,
        ...decaySummary(manifest.decay, config.maxPositionEmbeddings),
        `  ${chatTemplateSummary(manifest.chat)}`,
        `  graphs: ${Object.entries(manifest.graphs)
          .map(([precision, file]) => `${precision} ${file}`)
          .join(', ')}`,
        `  ${weightsSummary(manifest.weights ?? 'fp32')}`,
        '  files:',
        `    ${BUNDLE_MANIFEST} ${formatBytes((await stat(join(dir, BUNDLE_MANIFEST))).size)}`,
        ...Object.entries(manifest.files).map(
          ([name, entry]) => `    ${name} ${formatBytes(entry.bytes)}`,
        ),
        '',
      ];
      if (manifest.card !== undefined) {
        lines.push(
          `model card (${manifest.card}):`,
          '',
          await readFile(join(dir, manifest.card), 'utf8'),
        );
      }
      process.stdout.write(lines.join('\n'));
    });

  registerConvertCommand(model);
  registerExportGgufCommand(model);
}
