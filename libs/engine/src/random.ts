/**
 * Counter-based randomness (DESIGN.md decision 3): the uniform used for output token `index` of
 * choice `choice` is a pure function of (seed, choice, index). A worker that resumes a sequence
 * from a checkpoint therefore draws exactly the numbers the uninterrupted run would have drawn,
 * with no generator state to save.
 */

/** A 32-bit avalanche mix (the "lowbias32" finaliser): every input bit affects every output bit. */
function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const TWO_POW_32 = 0x1_0000_0000;

/** Uniform in [0, 1) with 53 random bits. `seed` may be any safe integer, negative included. */
export function counterUniform(seed: number, choice: number, index: number): number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  const seedLow = seed >>> 0;
  const seedHigh = Math.floor(seed / TWO_POW_32) >>> 0;
  const key = mix32(seedLow ^ mix32(seedHigh ^ 0x9e3779b9));
  const counter = mix32(key ^ mix32(choice ^ 0x85ebca6b) ^ mix32(index + 0x27d4eb2f));
  const high = mix32(counter ^ 0x165667b1) >>> 5; // 27 bits
  const low = mix32(counter ^ 0xd3a2646c) >>> 6; // 26 bits
  return (high * 67108864 + low) / 9007199254740992;
}
