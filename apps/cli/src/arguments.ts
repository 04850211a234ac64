import { InvalidArgumentError, Option } from 'commander';
import { WEIGHT_PRECISIONS } from '#model';

/** Command-line argument parsers whose errors name the option and the accepted range. */

export function numberIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isFinite(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`${name} must be a number between ${min} and ${max}`);
    }
    return parsed;
  };
}

export function integerIn(name: string, min: number, max: number) {
  const parse = numberIn(name, min, max);
  return (value: string): number => {
    const parsed = parse(value);
    if (!Number.isInteger(parsed)) throw new InvalidArgumentError(`${name} must be an integer`);
    return parsed;
  };
}

/** Seeds of seeded model initialisation: non-negative safe integers. */
export function parseSeed(value: string): number {
  const seed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(seed)) {
    throw new InvalidArgumentError('the seed must be a non-negative integer');
  }
  return seed;
}

/** `--weights`: how the bundle's CPU graph stores its weights (`model create` and `model convert`). */
export function weightsOption(): Option {
  return new Option(
    '--weights <precision>',
    'how the CPU graph stores its weights: fp32 as trained; fp16 half the size on disk, same speed; ' +
      'int8 / int4 block-quantized (32 per block) for faster memory-bound decoding',
  )
    .choices(WEIGHT_PRECISIONS)
    .default('fp32');
}
