import { Option } from 'commander';
import type { Command } from 'commander';
import { exportBundleGguf, exportCheckpointGguf, GGUF_FILE_TYPES } from '#model';
import type { GgufFileType } from '#model';

interface ExportGgufOptions {
  model?: string;
  from?: string;
  out: string;
  type: GgufFileType;
}

/**
 * Adds `export-gguf` to the `model` command group: the GPT-NeoX backbone as a GGUF file that
 * llama.cpp runs (architecture `gptneox`), to measure this project against it on the same weights.
 */
export function registerExportGgufCommand(model: Command): void {
  model
    .command('export-gguf')
    .description(
      "Write a model's GPT-NeoX weights with softmax attention as a GGUF file for llama.cpp " +
        '(architecture gptneox, placeholder byte-level vocabulary: feed it token ids). ' +
        'From a bundle built by `model create` (its seed redraws the weights; a DiJiang bundle gives ' +
        'its softmax baseline) or from a plain Hugging Face GPT-NeoX checkpoint.',
    )
    .option('--model <dir>', 'bundle folder built by `model create`')
    .option('--from <dir>', 'Hugging Face GPT-NeoX checkpoint folder (instead of --model)')
    .requiredOption('--out <file>', 'GGUF file to write')
    .addOption(
      new Option(
        '--type <type>',
        'type of every 2-D weight (embeddings and LM head included); norms and biases stay f32',
      )
        .choices(GGUF_FILE_TYPES)
        .default('f32'),
    )
    .action(async (_options: unknown, command: Command) => {
      const options = command.opts<ExportGgufOptions>();
      if ((options.model === undefined) === (options.from === undefined)) {
        command.error('error: give exactly one of --model <dir> and --from <dir>');
      }
      const result =
        options.model === undefined
          ? await exportCheckpointGguf(options.from ?? '', options.out, options.type)
          : await exportBundleGguf(options.model, options.out, options.type);
      const { config } = result;
      process.stdout.write(
        [
          `wrote ${result.path} (${result.bytes} bytes, GGUF v3, architecture gptneox, ${result.type} weights)`,
          `  from ${result.source}`,
          `  ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads, vocab ${config.vocabSize}; softmax attention`,
          '',
        ].join('\n'),
      );
    });
}
