/**
 * Kernel-approximation study (DIJIANG.md §5; `node dist/bench/kernels.js` after `npm run build`):
 * how well each feature map phi makes phi(q) . phi(k) stand in for softmax attention's
 * exp(q . k / sqrt(d)) on the same q, k, v, as the feature count m grows. Metric: the relative
 * Frobenius error ||O - O_exact|| / ||O_exact|| of the normalised attention output
 * O = (Phi_q Phi_k^T V) / (Phi_q Phi_k^T 1), averaged over seeded trials, in float64.
 * Results: bench/results/kernels.json and kernels.md.
 *
 * Environment (defaults in brackets): BENCH_KERNEL_TOKENS [256] queries and keys per trial,
 * BENCH_KERNEL_TRIALS [10].
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { normalIcdf, Rng } from '#model';
import { describeMachine, machineInfo, markdownTable } from './machine.js';

/** Head dim of every Pythia shape but 1B and 2.8B. */
const D = 64;
const TOKENS = Number(process.env.BENCH_KERNEL_TOKENS ?? 256);
const TRIALS = Number(process.env.BENCH_KERNEL_TRIALS ?? 10);
const FEATURE_COUNTS = [
  { label: 'd', m: D },
  { label: '2d', m: 2 * D },
  { label: '4d', m: 4 * D },
  { label: 'd ln d', m: Math.round(D * Math.log(D)) },
];

/** Row-major matrix. */
interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

function matrix(rows: number, cols: number, fill: (row: number, col: number) => number): Matrix {
  const data = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = fill(r, c);
  return { rows, cols, data };
}

function at(m: Matrix, row: number, col: number): number {
  return m.data[row * m.cols + col] ?? Number.NaN;
}

/** Normalised attention output for a positive similarity function given as a matrix [q, k]. */
function attend(similarity: Matrix, values: Matrix): Matrix {
  return matrix(similarity.rows, values.cols, () => 0).data.length === 0
    ? matrix(0, 0, () => 0)
    : (() => {
        const out = new Float64Array(similarity.rows * values.cols);
        for (let i = 0; i < similarity.rows; i++) {
          let total = 0;
          for (let j = 0; j < similarity.cols; j++) {
            const weight = at(similarity, i, j);
            total += weight;
            for (let c = 0; c < values.cols; c++)
              out[i * values.cols + c] =
                (out[i * values.cols + c] ?? 0) + weight * at(values, j, c);
          }
          for (let c = 0; c < values.cols; c++)
            out[i * values.cols + c] = (out[i * values.cols + c] ?? 0) / total;
        }
        return { rows: similarity.rows, cols: values.cols, data: out };
      })();
}

/** phi(q) . phi(k) for every query and key. */
function featureSimilarity(queryFeatures: Matrix, keyFeatures: Matrix): Matrix {
  return matrix(queryFeatures.rows, keyFeatures.rows, (i, j) => {
    let sum = 0;
    for (let f = 0; f < queryFeatures.cols; f++)
      sum += at(queryFeatures, i, f) * at(keyFeatures, j, f);
    return sum;
  });
}

function relativeError(approx: Matrix, exact: Matrix): number {
  let diff = 0;
  let norm = 0;
  exact.data.forEach((value, i) => {
    diff += ((approx.data[i] ?? Number.NaN) - value) ** 2;
    norm += value ** 2;
  });
  return Math.sqrt(diff / norm);
}

/** The orthonormal DCT-II matrix: C[k, n] = s_k cos(pi k (2n + 1) / (2d)). */
const dct = matrix(
  D,
  D,
  (k, n) => Math.sqrt((k === 0 ? 1 : 2) / D) * Math.cos((Math.PI * k * (2 * n + 1)) / (2 * D)),
);

/** Van der Corput (Halton base 2) point i, randomly shifted modulo 1 (Cranley-Patterson). */
function halton(index: number, shift: number): number {
  let result = 0;
  let fraction = 0.5;
  for (let i = index; i > 0; i = Math.floor(i / 2)) {
    result += fraction * (i % 2);
    fraction /= 2;
  }
  return (result + shift) % 1;
}

/**
 * A feature map: the projection directions w_f (rows of a [m, d] matrix) applied to x, then a
 * positive function of (x, w_f . x). Inputs are pre-scaled by d^-1/4 unless `raw`, so that
 * q' . k' = q . k / sqrt(d) (the code's softmax map sees q and k unscaled, as the model does).
 */
interface FeatureMap {
  readonly name: string;
  /** Uses m features; a fixed map ignores m and is reported once. */
  readonly growsWithM: boolean;
  features(x: Matrix, m: number, rng: Rng): Matrix;
}

function scaled(x: Matrix): Matrix {
  const factor = D ** -0.25;
  return { ...x, data: x.data.map((value) => value * factor) };
}

/** Projections x @ W^T for directions W [m, d]. */
function project(x: Matrix, directions: Matrix): Matrix {
  return matrix(x.rows, directions.rows, (i, f) => {
    let sum = 0;
    for (let c = 0; c < D; c++) sum += at(x, i, c) * at(directions, f, c);
    return sum;
  });
}

function squaredNorm(x: Matrix, row: number): number {
  let sum = 0;
  for (let c = 0; c < x.cols; c++) sum += at(x, row, c) ** 2;
  return sum;
}

/** exp(w . x - [|x|^2 / 2]) / sqrt(m): the positive random-feature estimator of exp(q . k). */
function exponentialFeatures(x: Matrix, directions: Matrix, withNorm: boolean): Matrix {
  const projected = project(x, directions);
  const m = directions.rows;
  return matrix(x.rows, m, (i, f) => {
    const shift = withNorm ? squaredNorm(x, i) / 2 : 0;
    return Math.exp(at(projected, i, f) - shift) / Math.sqrt(m);
  });
}

/** DCT directions scaled by t: row f is t_f C[f mod d, :] (blocks of d rows for m > d). */
function dctDirections(m: number, scale: (f: number) => number, transpose: boolean): Matrix {
  return matrix(m, D, (f, c) => scale(f) * (transpose ? at(dct, c, f % D) : at(dct, f % D, c)));
}

/** The state of a trial that a QMC map needs: the random shift of its low-discrepancy sequence. */
function qmcScales(rng: Rng): (f: number) => number {
  const shift = rng.uniform();
  return (f) => normalIcdf(halton(f + 1, shift));
}

const maps: readonly FeatureMap[] = [
  {
    name: 'Performer positive random features exp(w.x - |x|^2/2), w ~ N(0, I)',
    growsWithM: true,
    features: (x, m, rng) =>
      exponentialFeatures(
        scaled(x),
        matrix(m, D, () => rng.normal()),
        true,
      ),
  },
  {
    name: "paper's DCT features exp(T C x - |x|^2/2), t ~ N(0, 1)",
    growsWithM: true,
    features: (x, m, rng) => {
      const t = Array.from({ length: m }, () => rng.normal());
      return exponentialFeatures(
        scaled(x),
        dctDirections(m, (f) => t[f] ?? 0, false),
        true,
      );
    },
  },
  {
    name: "paper's DCT features exp(T C x) without the |x|^2 term, t ~ N(0, 1)",
    growsWithM: true,
    features: (x, m, rng) => {
      const t = Array.from({ length: m }, () => rng.normal());
      return exponentialFeatures(
        scaled(x),
        dctDirections(m, (f) => t[f] ?? 0, false),
        false,
      );
    },
  },
  {
    name: 'quasi-Monte Carlo DCT features exp(T C x - |x|^2/2), t = icdf(shifted Halton)',
    growsWithM: true,
    features: (x, m, rng) =>
      exponentialFeatures(scaled(x), dctDirections(m, qmcScales(rng), false), true),
  },
  {
    name: "the code's map softmax(x C T) on unscaled x, t ~ N(0, 1)",
    growsWithM: true,
    features: (x, m, rng) => {
      const t = Array.from({ length: m }, () => rng.normal());
      const logits = project(
        x,
        dctDirections(m, (f) => t[f] ?? 0, true),
      );
      return matrix(x.rows, m, (i, f) => {
        let max = -Infinity;
        for (let g = 0; g < m; g++) max = Math.max(max, at(logits, i, g));
        let total = 0;
        for (let g = 0; g < m; g++) total += Math.exp(at(logits, i, g) - max);
        return Math.exp(at(logits, i, f) - max) / total;
      });
    },
  },
  {
    name: 'reference: uniform attention, phi(x) = 1 (the mean of V)',
    growsWithM: false,
    features: (x) => matrix(x.rows, 1, () => 1),
  },
  {
    name: 'elu(x) + 1 (m = d, no randomness)',
    growsWithM: false,
    features: (x) => {
      const input = scaled(x);
      return matrix(x.rows, D, (i, c) => {
        const value = at(input, i, c);
        return value > 0 ? value + 1 : Math.exp(value);
      });
    },
  },
];

interface Cell {
  m: number;
  label: string;
  meanRelativeError: number;
  stdRelativeError: number;
}

const machine = machineInfo();
const started = performance.now();
const results: { map: string; cells: Cell[] }[] = [];
for (const [mapIndex, map] of maps.entries()) {
  const cells: Cell[] = [];
  for (const { m, label } of map.growsWithM ? FEATURE_COUNTS : [{ m: D, label: 'd' }]) {
    const errors: number[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      // The same q, k, v for every map in a trial; the map's own randomness is seeded apart.
      const data = new Rng(1000 + trial);
      const q = matrix(TOKENS, D, () => data.normal());
      const k = matrix(TOKENS, D, () => data.normal());
      const v = matrix(TOKENS, D, () => data.normal());
      const exact = attend(
        matrix(TOKENS, TOKENS, (i, j) => {
          let dot = 0;
          for (let c = 0; c < D; c++) dot += at(q, i, c) * at(k, j, c);
          return Math.exp(dot / Math.sqrt(D));
        }),
        v,
      );
      const rng = new Rng(7919 * (mapIndex + 1) + 31 * m + trial);
      // One draw of the map's randomness serves both q and k.
      const state = rng.nextUint32();
      const similarity = featureSimilarity(
        map.features(q, m, new Rng(state)),
        map.features(k, m, new Rng(state)),
      );
      errors.push(relativeError(attend(similarity, v), exact));
    }
    const mean = errors.reduce((sum, e) => sum + e, 0) / errors.length;
    const std = Math.sqrt(errors.reduce((sum, e) => sum + (e - mean) ** 2, 0) / errors.length);
    cells.push({ m, label, meanRelativeError: mean, stdRelativeError: std });
    console.log(`${map.name}, m = ${m}: ${mean.toFixed(4)} ± ${std.toFixed(4)}`);
  }
  results.push({ map: map.name, cells });
}
const seconds = (performance.now() - started) / 1000;

const command = 'npm run bench -- kernels';
const setup = `d = ${D}; ${TOKENS} queries and keys with q, k, v ~ N(0, 1) per component; exact attention softmax(q k^T / sqrt(d)) V; ${TRIALS} seeded trials per cell (mean ± standard deviation); float64.`;
await mkdir('bench/results', { recursive: true });
await writeFile(
  'bench/results/kernels.json',
  `${JSON.stringify({ command, machine, setup, seconds, results }, null, 2)}\n`,
);
const markdown = [
  '# Kernel-approximation study (DIJIANG.md §5)',
  '',
  `Command: \`${command}\`. Machine: ${describeMachine(machine)}. ${seconds.toFixed(1)} s.`,
  '',
  `Relative error ||O - O_exact||_F / ||O_exact||_F of the normalised attention output O = (Phi_q Phi_k^T V) / (Phi_q Phi_k^T 1). ${setup} Except for the code's map, inputs are scaled by d^-1/4 so that q' . k' = q . k / sqrt(d). For m > d the DCT maps stack blocks of the d x d DCT with independent scales t.`,
  '',
  markdownTable(
    ['feature map', ...FEATURE_COUNTS.map(({ label, m }) => `m = ${label} (${m})`)],
    results.map(({ map, cells }) => [
      // A literal | would end the Markdown table cell.
      map.replaceAll('|', '\\|'),
      ...FEATURE_COUNTS.map(({ m }) => {
        const cell = cells.find((entry) => entry.m === m);
        return cell === undefined
          ? '-'
          : `${cell.meanRelativeError.toFixed(3)} ± ${cell.stdRelativeError.toFixed(3)}`;
      }),
    ]),
  ),
  '',
  "The code's map is not an estimator of exp(q . k / sqrt(d)): its zero-shot error shows why DiJiang's quality comes from fine-tuning rather than from the kernel approximation.",
  '',
].join('\n');
await writeFile('bench/results/kernels.md', markdown);
console.log(markdown);
