/**
 * Per-call durations in whole nanoseconds, kept in a fixed histogram so that recording a million calls
 * allocates nothing and adds nothing to the measured process's memory: one counter per nanosecond up to
 * 64 µs, and the rare longer calls (GC pauses, a synchronous write of the backlog) kept exactly in a list.
 */

const EXACT_LIMIT_NS = 65_536

export interface Quantiles {
  readonly count: number
  readonly minNs: number
  readonly medianNs: number
  readonly p90Ns: number
  readonly p99Ns: number
  readonly p999Ns: number
  readonly maxNs: number
  readonly meanNs: number
  /** Calls that took 64 µs or more. */
  readonly over64us: number
}

export class LatencyHistogram {
  private readonly counts = new Uint32Array(EXACT_LIMIT_NS)
  private readonly long: Array<number> = []
  private count = 0
  private totalNs = 0

  /** Records one duration given in milliseconds, as `performance.now()` differences are. */
  record(ms: number): void {
    const ns = Math.round(ms * 1e6)
    this.count++
    this.totalNs += ns
    if (ns < EXACT_LIMIT_NS) this.counts[ns < 0 ? 0 : ns]!++
    else this.long.push(ns)
  }

  /** The duration at nearest rank `ceil(q * count)`. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let ns = 0; ns < EXACT_LIMIT_NS; ns++) {
      seen += this.counts[ns]!
      if (seen >= rank) return ns
    }
    const sorted = [...this.long].sort((a, b) => a - b)
    return sorted[rank - seen - 1] ?? sorted[sorted.length - 1]!
  }

  summary(): Quantiles {
    let minNs = Number.NaN
    for (let ns = 0; ns < EXACT_LIMIT_NS; ns++) {
      if (this.counts[ns]! > 0) {
        minNs = ns
        break
      }
    }
    if (Number.isNaN(minNs) && this.long.length > 0) minNs = Math.min(...this.long)
    const maxNs = this.long.length > 0 ? this.long.reduce((a, b) => Math.max(a, b)) : this.quantile(1)
    return {
      count: this.count,
      minNs,
      medianNs: this.quantile(0.5),
      p90Ns: this.quantile(0.9),
      p99Ns: this.quantile(0.99),
      p999Ns: this.quantile(0.999),
      maxNs,
      meanNs: this.count === 0 ? Number.NaN : this.totalNs / this.count,
      over64us: this.long.length
    }
  }
}
