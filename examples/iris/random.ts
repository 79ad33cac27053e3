/**
 * Seeded pseudo-random numbers for the Iris example. Everything random in training (the split, the initial
 * weights, the order of mini-batches) draws from here, so one seed reproduces a run exactly.
 */

/** A source of uniformly distributed numbers in [0, 1). */
export type Random = () => number

/**
 * The mulberry32 generator: 32 bits of state, a fixed increment per draw, and a few multiply-xorshift rounds
 * to scramble it. Small and fast, and more than random enough for shuffling 150 rows.
 */
export const mulberry32 = (seed: number): Random => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let mixed = Math.imul(state ^ (state >>> 15), state | 1)
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61)
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 0x1_0000_0000
  }
}

/**
 * A generator for one named purpose, derived from the run's seed. Separate streams keep the parts of training
 * independent: changing the batch size must not change which rows land in the validation set.
 */
export const seededRandom = (seed: number, stream: string): Random => {
  // FNV-1a over the stream name, folded into the seed and finished with an avalanche step, so that
  // neighbouring seeds and similar names still start far apart.
  let hash = 0x811c9dc5 ^ (seed >>> 0)
  for (let index = 0; index < stream.length; index++) {
    hash = Math.imul(hash ^ stream.charCodeAt(index), 0x01000193)
  }
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b)
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35)
  return mulberry32(hash ^ (hash >>> 16))
}

/** A number drawn uniformly from [low, high). */
export const uniform = (random: Random, low: number, high: number): number => low + (high - low) * random()

/** Puts the items in a random order (Fisher–Yates) and returns the same array. */
export const shuffleInPlace = <A>(items: Array<A>, random: Random): Array<A> => {
  for (let last = items.length - 1; last > 0; last--) {
    const chosen = Math.floor(random() * (last + 1))
    const item = items[last]
    items[last] = items[chosen]
    items[chosen] = item
  }
  return items
}
