/**
 * Bounded samples of each metric's history and the one-line sparklines the finish footer prints.
 *
 * @since 0.1.0
 */

const BARS = "▁▂▃▄▅▆▇█"

/**
 * Keeps at most `capacity` evenly spaced points of an unbounded series: when full, every other point
 * is dropped and the stride doubles, so memory stays fixed however long a run logs.
 *
 * @since 0.1.0
 * @category models
 */
export class Sampler {
  private readonly points: Array<number> = []
  private stride = 1
  private seen = 0

  constructor(private readonly capacity = 256) {}

  add(value: number): void {
    if (this.seen++ % this.stride !== 0) return
    this.points.push(value)
    if (this.points.length >= this.capacity) {
      for (let i = 0; i < this.points.length / 2; i++) this.points[i] = this.points[i * 2]!
      this.points.length = Math.floor(this.points.length / 2)
      this.stride *= 2
    }
  }

  values(): ReadonlyArray<number> {
    return this.points
  }
}

/**
 * Renders values as a sparkline of at most `width` bars, averaging neighbours when there are more
 * values than bars. Non-finite values are left out of the scale and shown as spaces.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (values: ReadonlyArray<number>, width = 40): string => {
  if (values.length === 0) return ""
  const buckets: Array<number> = []
  const perBucket = Math.max(1, values.length / width)
  for (let start = 0; start < values.length; start += perBucket) {
    const slice = values.slice(Math.floor(start), Math.max(Math.floor(start) + 1, Math.floor(start + perBucket)))
    const finite = slice.filter(Number.isFinite)
    buckets.push(finite.length === 0 ? NaN : finite.reduce((a, b) => a + b, 0) / finite.length)
  }
  const finite = buckets.filter(Number.isFinite)
  const min = Math.min(...finite)
  const max = Math.max(...finite)
  return buckets.map((v) => {
    if (!Number.isFinite(v)) return " "
    if (max === min) return BARS[3]
    return BARS[Math.min(BARS.length - 1, Math.floor(((v - min) / (max - min)) * BARS.length))]
  }).join("")
}
