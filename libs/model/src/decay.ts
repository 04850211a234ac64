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
