/**
 * GPT-NeoX weights as llama.cpp's `gptneox` architecture reads them from GGUF (the key and tensor
 * names of llama.cpp's gguf-py constants and `convert_hf_to_gguf.py`'s GPT-NeoX conversion):
 * - `attn_qkv` rows are [all heads' q; all heads' k; all heads' v]: llama.cpp's graph takes Q, K
 *   and V as three contiguous thirds of the fused projection, while Hugging Face interleaves them
 *   per head ([H, 3, d]), so the rows (and bias) are regrouped;
 * - RoPE is NeoX style (rotate_half) on the first `rope.dimension_count` dims of each head, which
 *   llama.cpp implies for this architecture; `use_parallel_residual` is true (Pythia);
 * - `post_attention_layernorm` is `ffn_norm`; `embed_out` is `output` (not tied);
 * - the vocabulary is a placeholder that llama.cpp can load: a `gpt2` (byte-level BPE) vocabulary
 *   without merges whose ids 0-255 are the bytes (GPT-2's byte-to-unicode spelling), 256 end of
 *   text, and every further id a placeholder; callers feed token ids. (`no_vocab` loads in
 *   llama.cpp but node-llama-cpp aborts on it: it tokenizes on load.)
 * Only softmax attention exists in llama.cpp: DiJiang tensors are not exported; for a DiJiang
 * model this file is its softmax baseline (the same backbone weights).
 * 1-D tensors (norms, biases) stay f32 in every file type, as llama.cpp's converter keeps them.
 */
import { headDim, rotaryDims, type ModelConfig } from '../config.js';
import { getTensor, layerPrefix, type Weights } from '../weights.js';
import { writeGguf, type GgmlTensorType, type GgufTensor, type GgufValue } from './gguf-write.js';

export const GGUF_FILE_TYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
export type GgufFileType = (typeof GGUF_FILE_TYPES)[number];

/** llama_ftype of each file type (`general.file_type`): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0. */
const LLAMA_FTYPE: Record<GgufFileType, number> = { f32: 0, f16: 1, q8_0: 7, q4_0: 2 };

export interface GgufExportOptions {
  /** Type of the 2-D weights (embeddings included). @defaultValue 'f32' */
  type?: GgufFileType;
  /** `general.name`. */
  name: string;
  /**
   * `gptneox.context_length`, the length the model was trained for; llama.cpp contexts may be
   * longer (RoPE without scaling goes on). @defaultValue config.maxPositionEmbeddings
   */
  contextLength?: number;
}

/** The fused QKV rows regrouped from Hugging Face's per-head [H, 3, d] to [3, H, d]. */
export function qkvRowsToLlamaOrder(
  values: Float32Array,
  numHeads: number,
  d: number,
  rowLength: number,
): Float32Array {
  const out = new Float32Array(values.length);
  for (let head = 0; head < numHeads; head++) {
    for (let part = 0; part < 3; part++) {
      for (let i = 0; i < d; i++) {
        const from = ((head * 3 + part) * d + i) * rowLength;
        const to = ((part * numHeads + head) * d + i) * rowLength;
        out.set(values.subarray(from, from + rowLength), to);
      }
    }
  }
  return out;
}

/** The byte tokenizer's end-of-text id (config.ts BYTE_VOCAB_SIZE - 1). */
const END_OF_TEXT_ID = 256;
/** llama_token_type values. */
const TOKEN_TYPE = { normal: 1, control: 3 } as const;

/** GPT-2's printable spelling of each byte (its `bytes_to_unicode`), as BPE vocabularies store them. */
function byteSpelling(byte: number): string {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  if (printable(byte)) return String.fromCharCode(byte);
  let shifted = 0;
  for (let b = 0; b < byte; b++) if (!printable(b)) shifted++;
  return String.fromCharCode(256 + shifted);
}

function placeholderVocabulary(vocabSize: number): string[] {
  return Array.from({ length: vocabSize }, (_unused, id) =>
    id < END_OF_TEXT_ID
      ? byteSpelling(id)
      : id === END_OF_TEXT_ID
        ? '<|endoftext|>'
        : `<|id_${id}|>`,
  );
}

/** The metadata llama.cpp's `gptneox` loader reads (hyperparameters, placeholder vocabulary). */
export function gptNeoxGgufMetadata(
  config: ModelConfig,
  options: GgufExportOptions,
): Map<string, GgufValue> {
  const type = options.type ?? 'f32';
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  return new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'gptneox' }],
    ['general.name', { type: 'string', value: options.name }],
    ['general.file_type', u32(LLAMA_FTYPE[type])],
    ['gptneox.vocab_size', u32(config.vocabSize)],
    ['gptneox.context_length', u32(options.contextLength ?? config.maxPositionEmbeddings)],
    ['gptneox.embedding_length', u32(config.hiddenSize)],
    ['gptneox.block_count', u32(config.numLayers)],
    ['gptneox.feed_forward_length', u32(config.intermediateSize)],
    ['gptneox.attention.head_count', u32(config.numHeads)],
    ['gptneox.attention.head_count_kv', u32(config.numHeads)],
    ['gptneox.rope.dimension_count', u32(rotaryDims(config))],
    ['gptneox.rope.freq_base', { type: 'f32', value: config.rotaryBase }],
    ['gptneox.use_parallel_residual', { type: 'bool', value: true }],
    ['gptneox.attention.layer_norm_epsilon', { type: 'f32', value: config.layerNormEps }],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'gpt-2' }],
    ['tokenizer.ggml.tokens', { type: 'strings', value: placeholderVocabulary(config.vocabSize) }],
    [
      'tokenizer.ggml.token_type',
      {
        type: 'i32s',
        value: Array.from({ length: config.vocabSize }, (_unused, id) =>
          id === END_OF_TEXT_ID ? TOKEN_TYPE.control : TOKEN_TYPE.normal,
        ),
      },
    ],
    ['tokenizer.ggml.merges', { type: 'strings', value: [] }],
    ...(config.vocabSize > END_OF_TEXT_ID
      ? ([
          ['tokenizer.ggml.bos_token_id', u32(END_OF_TEXT_ID)],
          ['tokenizer.ggml.eos_token_id', u32(END_OF_TEXT_ID)],
        ] as const)
      : []),
  ]);
}

/** The GGUF tensors in llama.cpp's names and ggml dim order ([in, out] for [out, in] weights). */
export function gptNeoxGgufTensors(
  config: ModelConfig,
  weights: Weights,
  type: GgufFileType = 'f32',
): GgufTensor[] {
  const hidden = config.hiddenSize;
  const ffn = config.intermediateSize;
  const vocab = config.vocabSize;
  const matrixType: GgmlTensorType = type;
  const tensors: GgufTensor[] = [];
  const vector = (name: string, source: string, length: number): void => {
    tensors.push({
      name,
      dims: [length],
      type: 'f32',
      data: getTensor(weights, source, [length]).data,
    });
  };
  const matrix = (name: string, source: string, rows: number, columns: number): void => {
    tensors.push({
      name,
      dims: [columns, rows],
      type: matrixType,
      data: getTensor(weights, source, [rows, columns]).data,
    });
  };
  matrix('token_embd.weight', 'gpt_neox.embed_in.weight', vocab, hidden);
  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = layerPrefix(layer);
    const blk = `blk.${layer}.`;
    vector(`${blk}attn_norm.weight`, `${p}input_layernorm.weight`, hidden);
    vector(`${blk}attn_norm.bias`, `${p}input_layernorm.bias`, hidden);
    const d = headDim(config);
    const qkv = getTensor(weights, `${p}attention.query_key_value.weight`, [3 * hidden, hidden]);
    const qkvBias = getTensor(weights, `${p}attention.query_key_value.bias`, [3 * hidden]);
    tensors.push({
      name: `${blk}attn_qkv.weight`,
      dims: [hidden, 3 * hidden],
      type: matrixType,
      data: qkvRowsToLlamaOrder(qkv.data, config.numHeads, d, hidden),
    });
    tensors.push({
      name: `${blk}attn_qkv.bias`,
      dims: [3 * hidden],
      type: 'f32',
      data: qkvRowsToLlamaOrder(qkvBias.data, config.numHeads, d, 1),
    });
    matrix(`${blk}attn_output.weight`, `${p}attention.dense.weight`, hidden, hidden);
    vector(`${blk}attn_output.bias`, `${p}attention.dense.bias`, hidden);
    vector(`${blk}ffn_norm.weight`, `${p}post_attention_layernorm.weight`, hidden);
    vector(`${blk}ffn_norm.bias`, `${p}post_attention_layernorm.bias`, hidden);
    matrix(`${blk}ffn_up.weight`, `${p}mlp.dense_h_to_4h.weight`, ffn, hidden);
    vector(`${blk}ffn_up.bias`, `${p}mlp.dense_h_to_4h.bias`, ffn);
    matrix(`${blk}ffn_down.weight`, `${p}mlp.dense_4h_to_h.weight`, hidden, ffn);
    vector(`${blk}ffn_down.bias`, `${p}mlp.dense_4h_to_h.bias`, hidden);
  }
  vector('output_norm.weight', 'gpt_neox.final_layer_norm.weight', hidden);
  vector('output_norm.bias', 'gpt_neox.final_layer_norm.bias', hidden);
  matrix('output.weight', 'embed_out.weight', vocab, hidden);
  return tensors;
}

/**
 * Writes the GPT-NeoX backbone of `weights` as a GGUF file llama.cpp loads as `gptneox`. For
 * q8_0 and q4_0, the hidden and feed-forward sizes must be multiples of 32 (every Pythia shape's
 * are); unlike llama-quantize's presets, every 2-D weight (embeddings and LM head too) gets the
 * one type.
 */
export async function writeGptNeoxGguf(
  path: string,
  config: ModelConfig,
  weights: Weights,
  options: GgufExportOptions,
): Promise<{ bytes: number }> {
  const type = options.type ?? 'f32';
  return writeGguf(
    path,
    gptNeoxGgufMetadata(config, options),
    gptNeoxGgufTensors(config, weights, type),
  );
}
