/**
 * DiJiang decay tables in the form the streaming graph uses (DIJIANG.md §3): per layer and head,
 * log r_t = log D1[t] - log D1[t-1] (log r_0 = 0: the state before position 0 is zero) and
 * c_t = D1[t] D2[t]. D1 and D2 are never used alone, so D2's huge values (~1.7e28 at 2048 for the
 * released initialisation) never reach float32 arithmetic.
 */
import type { ModelConfig } from './config.js';
import { getTensor, layerPrefix, type Weights } from './weights.js';

export interface DecayTables {
  /** Per layer, [maxPositionEmbeddings, numHeads] row-major: log r_t for head h at t * H + h. */
  readonly logRatio: Float64Array[];
  /** Per layer, [maxPositionEmbeddings, numHeads] row-major: c_t for head h at t * H + h. */
  readonly coefficient: Float64Array[];
}

/** Throws naming layer, head and position for the first D1 entry that is not positive. */
export function assertPositiveD1(config: ModelConfig, weights: Weights): void {
  decayTables(config, weights);
}

export function decayTables(config: ModelConfig, weights: Weights): DecayTables {
  const heads = config.numHeads;
  const maxPos = config.maxPositionEmbeddings;
  const table = [1, heads, maxPos, 1];
  const logRatio: Float64Array[] = [];
  const coefficient: Float64Array[] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const d1Name = `${layerPrefix(layer)}attention.D1`;
    const d1 = getTensor(weights, d1Name, table).data;
    const d2 = getTensor(weights, `${layerPrefix(layer)}attention.D2`, table).data;
    const layerLogRatio = new Float64Array(maxPos * heads);
    const layerCoefficient = new Float64Array(maxPos * heads);
    for (let h = 0; h < heads; h++) {
      let previousLog = 0;
      for (let t = 0; t < maxPos; t++) {
        const value = d1[h * maxPos + t] ?? Number.NaN;
        if (!(value > 0 && Number.isFinite(value))) {
          throw new Error(
            `${d1Name}[0, ${h}, ${t}, 0] = ${value} (layer ${layer}, head ${h}, position ${t}): D1 entries must be positive and finite, the streaming form needs log(D1[t] / D1[t-1])`,
          );
        }
        const logValue = Math.log(value);
        layerLogRatio[t * heads + h] = t === 0 ? 0 : logValue - previousLog;
        previousLog = logValue;
        const c = value * (d2[h * maxPos + t] ?? Number.NaN);
        if (!Number.isFinite(c)) {
          throw new Error(
            `layer ${layer}, head ${h}, position ${t}: c_t = D1[t] * D2[t] = ${c} is not finite`,
          );
        }
        layerCoefficient[t * heads + h] = c;
      }
    }
    logRatio.push(layerLogRatio);
    coefficient.push(layerCoefficient);
  }
  return { logRatio, coefficient };
}

/**
 * How a DiJiang bundle's decay behaves along positions, recorded in its manifest:
 * - `constant`: per layer and head one ratio r = g and one product c at every position (D1[t] =
 *   a g^t, D2[t] = b g^-t). The tables then only need to be long enough to state g (the trainer
 *   writes 64 positions or fewer), and the graph's continuation past them is exact at any length,
 *   however short the memory (g = 0.3 is fine: g^2047 would underflow a 2048-entry table).
 * - `tables`: ratios or products that vary with position (a fine-tuned checkpoint's). Past the
 *   tables the last ratio and product continue: our extension, not the authors' (DIJIANG.md §4).
 */
export type DecayForm =
  | {
      readonly form: 'constant';
      readonly headDecays: number[][];
      readonly headProducts: number[][];
    }
  | { readonly form: 'tables' };

/**
 * Tolerances for calling tables constant: float32 tables round each D1 and D2 entry by up to
 * 6e-8 relative, so log ratios differ by ~1.2e-7 and products by ~1.2e-7 relative.
 */
const CONSTANT_LOG_RATIO_ATOL = 1e-6;
const CONSTANT_PRODUCT_RTOL = 1e-5;

export function decayForm(config: ModelConfig, weights: Weights): DecayForm {
  const { logRatio, coefficient } = decayTables(config, weights);
  const heads = config.numHeads;
  const maxPos = config.maxPositionEmbeddings;
  const headDecays: number[][] = [];
  const headProducts: number[][] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const ratios = logRatio[layer] ?? new Float64Array();
    const products = coefficient[layer] ?? new Float64Array();
    const layerDecays: number[] = [];
    const layerProducts: number[] = [];
    for (let h = 0; h < heads; h++) {
      const firstLogRatio = ratios[heads + h] ?? Number.NaN;
      const product = products[h] ?? Number.NaN;
      let logRatioSum = 0;
      for (let t = 1; t < maxPos; t++) {
        const logRatioAt = ratios[t * heads + h] ?? Number.NaN;
        const productAt = products[t * heads + h] ?? Number.NaN;
        if (
          !(Math.abs(logRatioAt - firstLogRatio) <= CONSTANT_LOG_RATIO_ATOL) ||
          !(Math.abs(productAt - product) <= CONSTANT_PRODUCT_RTOL * Math.abs(product))
        ) {
          return { form: 'tables' };
        }
        logRatioSum += logRatioAt;
      }
      // The mean over the table: each entry's float32 rounding averages out.
      layerDecays.push(Math.exp(logRatioSum / (maxPos - 1)));
      layerProducts.push(product);
    }
    headDecays.push(layerDecays);
    headProducts.push(layerProducts);
  }
  return { form: 'constant', headDecays, headProducts };
}
