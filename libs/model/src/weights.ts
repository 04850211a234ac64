import { PROGRESS_STEP, stageCounter, type BuildProgress } from './build-progress.js';
import { headDim, type ModelConfig } from './config.js';
import { deriveSeed, normalIcdf, Rng } from './rng.js';

/** A float32 tensor in row-major order. Linear weights keep torch's [out, in] layout. */
export interface Tensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Tensors keyed by their Hugging Face GPT-NeoX names (see {@link expectedTensorShapes}). */
export type Weights = Map<string, Tensor>;

export function layerPrefix(layer: number): string {
  return `gpt_neox.layers.${layer}.`;
}

/** Names of the tensors DiJiang adds to each layer's attention (DIJIANG.md §2). */
export const DIJIANG_TENSOR_SUFFIXES = [
  'attention.proj_matrix',
  'attention.W_G',
  'attention.group_norm.weight',
  'attention.group_norm.bias',
  'attention.D1',
  'attention.D2',
] as const;

function dijiangShapes(config: ModelConfig): Map<string, readonly number[]> {
  const d = headDim(config);
  const hidden = config.hiddenSize;
  const table = [1, config.numHeads, config.maxPositionEmbeddings, 1];
  const shapes = new Map<string, readonly number[]>();
  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = layerPrefix(layer);
    shapes.set(`${p}attention.proj_matrix`, [d, d]);
    shapes.set(`${p}attention.W_G`, [hidden, hidden]);
    shapes.set(`${p}attention.group_norm.weight`, [hidden]);
    shapes.set(`${p}attention.group_norm.bias`, [hidden]);
    shapes.set(`${p}attention.D1`, table);
    shapes.set(`${p}attention.D2`, table);
  }
  return shapes;
}

/**
 * Every tensor the model needs, with its shape. DiJiang tensors are included only for
 * `attention: 'dijiang'`. Buffers that checkpoints may also hold (`attention.bias`,
 * `attention.masked_bias`, `rotary_emb.inv_freq`) are not needed and not listed.
 */
export function expectedTensorShapes(config: ModelConfig): Map<string, readonly number[]> {
  const hidden = config.hiddenSize;
  const ffn = config.intermediateSize;
  const shapes = new Map<string, readonly number[]>();
  shapes.set('gpt_neox.embed_in.weight', [config.vocabSize, hidden]);
  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = layerPrefix(layer);
    shapes.set(`${p}input_layernorm.weight`, [hidden]);
    shapes.set(`${p}input_layernorm.bias`, [hidden]);
    shapes.set(`${p}post_attention_layernorm.weight`, [hidden]);
    shapes.set(`${p}post_attention_layernorm.bias`, [hidden]);
    shapes.set(`${p}attention.query_key_value.weight`, [3 * hidden, hidden]);
    shapes.set(`${p}attention.query_key_value.bias`, [3 * hidden]);
    shapes.set(`${p}attention.dense.weight`, [hidden, hidden]);
    shapes.set(`${p}attention.dense.bias`, [hidden]);
    shapes.set(`${p}mlp.dense_h_to_4h.weight`, [ffn, hidden]);
    shapes.set(`${p}mlp.dense_h_to_4h.bias`, [ffn]);
    shapes.set(`${p}mlp.dense_4h_to_h.weight`, [hidden, ffn]);
    shapes.set(`${p}mlp.dense_4h_to_h.bias`, [hidden]);
  }
  shapes.set('gpt_neox.final_layer_norm.weight', [hidden]);
  shapes.set('gpt_neox.final_layer_norm.bias', [hidden]);
  shapes.set('embed_out.weight', [config.vocabSize, hidden]);
  if (config.attention === 'dijiang') {
    for (const [name, shape] of dijiangShapes(config)) shapes.set(name, shape);
  }
  return shapes;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

/** Total number of parameters, decay tables included. */
export function parameterCount(config: ModelConfig): number {
  let total = 0;
  for (const shape of expectedTensorShapes(config).values()) total += elementCount(shape);
  return total;
}

/** The tensor `name`, checked against the expected shape; throws naming the tensor otherwise. */
export function getTensor(weights: Weights, name: string, shape: readonly number[]): Tensor {
  const tensor = weights.get(name);
  if (tensor === undefined)
    throw new Error(`missing tensor ${name} (expected shape [${shape.join(', ')}])`);
  if (
    tensor.shape.length !== shape.length ||
    tensor.shape.some((dim, i) => dim !== shape[i]) ||
    tensor.data.length !== elementCount(shape)
  ) {
    throw new Error(
      `tensor ${name} has shape [${tensor.shape.join(', ')}] (${tensor.data.length} values), expected [${shape.join(', ')}]`,
    );
  }
  return tensor;
}

/** Checks that `weights` holds every expected tensor with the expected shape. */
export function validateWeights(config: ModelConfig, weights: Weights): void {
  for (const [name, shape] of expectedTensorShapes(config)) getTensor(weights, name, shape);
}

/** GPT-NeoX initialisation std for Linear and Embedding weights. */
export const INIT_STD = 0.02;

function seededRng(seed: number, name: string): Rng {
  return new Rng(deriveSeed(seed, name));
}

/** N(0, std) values; `advance` hears of every {@link PROGRESS_STEP} of them as they are drawn. */
function normalTensor(
  shape: readonly number[],
  std: number,
  rng: Rng,
  advance: (values: number) => void,
): Tensor {
  const data = new Float32Array(elementCount(shape));
  for (let start = 0; start < data.length; start += PROGRESS_STEP) {
    const end = Math.min(start + PROGRESS_STEP, data.length);
    for (let i = start; i < end; i++) data[i] = std * rng.normal();
    advance(end - start);
  }
  return { shape, data };
}

function filledTensor(shape: readonly number[], value: number): Tensor {
  return { shape, data: new Float32Array(elementCount(shape)).fill(value) };
}

/**
 * Seeded, deterministic initialisation of every tensor (GPT-NeoX style: N(0, 0.02) for Linear and
 * Embedding weights, zero biases, LayerNorm weight 1 and bias 0; DiJiang tensors as
 * {@link initDijiangTensors}). Each tensor draws from its own stream derived from (seed, name).
 * `onProgress` hears of the parameters set so far (stage `weights`, out of
 * {@link parameterCount}).
 */
export function initWeights(
  config: ModelConfig,
  seed: number,
  onProgress?: BuildProgress,
): Weights {
  const advance = stageCounter('weights', parameterCount(config), onProgress);
  const weights: Weights = new Map();
  const dijiang: Weights =
    config.attention === 'dijiang' ? initDijiangTensors(config, seed) : new Map<string, Tensor>();
  for (const [name, shape] of expectedTensorShapes(config)) {
    const dijiangTensor = dijiang.get(name);
    if (dijiangTensor !== undefined) {
      weights.set(name, dijiangTensor);
      advance(dijiangTensor.data.length);
    } else if (name.endsWith('layernorm.weight') || name.endsWith('layer_norm.weight')) {
      weights.set(name, filledTensor(shape, 1));
      advance(elementCount(shape));
    } else if (name.endsWith('.bias')) {
      weights.set(name, filledTensor(shape, 0));
      advance(elementCount(shape));
    } else {
      weights.set(name, normalTensor(shape, INIT_STD, seededRng(seed, name), advance));
    }
  }
  return weights;
}

/** Per-head decay g_h = 1 - exp(linspace(ln(1/32), ln(1/512), H))[h] (RetNet style). */
export function headDecays(numHeads: number): Float64Array {
  const decays = new Float64Array(numHeads);
  const first = Math.log(1 / 32);
  const last = Math.log(1 / 512);
  for (let h = 0; h < numHeads; h++) {
    const fraction = numHeads === 1 ? 0 : h / (numHeads - 1);
    decays[h] = 1 - Math.exp(first + (last - first) * fraction);
  }
  return decays;
}

/**
 * The orthonormal DCT-II matrix C[k, n] = s_k cos(pi k (2n + 1) / (2d)), s_0 = sqrt(1/d),
 * s_k = sqrt(2/d) (scipy `dct(eye(d), axis=0, norm='ortho')`), row-major [d, d].
 */
export function dctMatrix(d: number): Float64Array {
  const matrix = new Float64Array(d * d);
  for (let k = 0; k < d; k++) {
    const scale = Math.sqrt((k === 0 ? 1 : 2) / d);
    for (let n = 0; n < d; n++) {
      matrix[k * d + n] = scale * Math.cos((Math.PI * k * (2 * n + 1)) / (2 * d));
    }
  }
  return matrix;
}

/**
 * The DiJiang tensors only (the paper's "transform" step, also used when converting a plain
 * Pythia checkpoint): per layer `proj_matrix` = C @ diag(icdf(u)), u ~ U(0, 1); `W_G`
 * xavier-uniform with gain 2^-2.5; GroupNorm weight 1 and bias 0; D1[h, t] = g_h^t and
 * D2[h, t] = g_h^-t. Seeded per tensor name like {@link initWeights}, so both give the same values.
 */
export function initDijiangTensors(config: ModelConfig, seed: number): Weights {
  const d = headDim(config);
  const hidden = config.hiddenSize;
  const maxPos = config.maxPositionEmbeddings;
  const dct = dctMatrix(d);
  const decays = headDecays(config.numHeads);
  const weights: Weights = new Map();
  for (const [name, shape] of dijiangShapes(config)) {
    const rng = seededRng(seed, name);
    const data = new Float32Array(elementCount(shape));
    if (name.endsWith('proj_matrix')) {
      const scales = Array.from({ length: d }, () => normalIcdf(rng.uniform()));
      for (let k = 0; k < d; k++) {
        for (let n = 0; n < d; n++) data[k * d + n] = (dct[k * d + n] ?? 0) * (scales[n] ?? 0);
      }
    } else if (name.endsWith('W_G')) {
      const bound = 2 ** -2.5 * Math.sqrt(6 / (hidden + hidden));
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    } else if (name.endsWith('group_norm.weight')) {
      data.fill(1);
    } else if (name.endsWith('D1') || name.endsWith('D2')) {
      const sign = name.endsWith('D1') ? 1 : -1;
      for (let h = 0; h < config.numHeads; h++) {
        for (let t = 0; t < maxPos; t++) {
          const value = (decays[h] ?? 0) ** (sign * t);
          if (!Number.isFinite(Math.fround(value))) {
            throw new Error(
              `${name}[0, ${h}, ${t}, 0] = g^${sign * t} overflows float32: maxPositionEmbeddings ${maxPos} is too large for the released decay initialisation`,
            );
          }
          data[h * maxPos + t] = value;
        }
      }
    }
    weights.set(name, { shape, data });
  }
  return weights;
}
