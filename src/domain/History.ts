/**
 * The step and commit rules of `run.log`, as a small state machine with no I/O: rows go in, committed
 * rows come out. It follows the official client: steps only go up, an explicit step is held open until a
 * later step or `commit: true`, and data for a step already passed is dropped (and counted, never silent).
 *
 * @since 0.1.0
 */

/**
 * Separates the segments of a nested key in a flattened row. A control character no real metric name
 * carries, so `{"a.b": 1}` (one key with a dot) and `{a: {b: 1}}` (a nested key) stay distinct.
 *
 * @since 0.1.0
 * @category flattening
 */
export const PATH_SEPARATOR = "\u001f"

/**
 * A row with nested objects flattened: each key is a path of segments joined by `PATH_SEPARATOR`.
 *
 * @since 0.1.0
 * @category models
 */
export type FlatRow = Record<string, unknown>

/**
 * A committed history row.
 *
 * @since 0.1.0
 * @category models
 */
export interface HistoryRow {
  readonly step: number
  readonly values: FlatRow
  /** Unix seconds of the last `log` call that contributed to the row, or the user's `_timestamp`. */
  readonly timestamp: number
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (value === null || typeof value !== "object") return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * Flattens plain nested objects into `target` (leaves are everything that is not a plain, non-empty
 * object). Keys starting with `_step` are dropped: the step is the state machine's to assign.
 *
 * @since 0.1.0
 * @category flattening
 */
export const flattenInto = (
  target: FlatRow,
  data: Record<string, unknown>,
  prefix = "",
  parents: Array<object> = []
): void => {
  parents.push(data)
  for (const key in data) {
    const value = data[key]
    if (value === undefined) continue
    if (prefix === "" && key === "_step") continue
    const path = prefix === "" ? key : prefix + PATH_SEPARATOR + key
    if (isPlainObject(value) && !isEmpty(value)) {
      // An object inside itself is a leaf that says so, not an endless key path.
      if (parents.includes(value)) target[path] = "<circular>"
      else flattenInto(target, value, path, parents)
    } else {
      target[path] = snapshot(value)
    }
  }
  parents.pop()
}

// A row is written later than it is logged, so values a program may change afterwards (arrays it keeps
// pushing to, dates, typed arrays) are copied now. Numbers and strings, nearly every value, pass as they are.
const snapshot = (value: unknown): unknown => {
  if (value === null || typeof value !== "object") return value
  try {
    return structuredClone(value)
  } catch {
    return value
  }
}

const isEmpty = (value: Record<string, unknown>): boolean => {
  for (const _ in value) return false
  return true
}

/**
 * Splits a flattened key into its segments.
 *
 * @since 0.1.0
 * @category flattening
 */
export const splitPath = (key: string): Array<string> => key.split(PATH_SEPARATOR)

/**
 * Rebuilds nested objects from a flat row.
 *
 * @since 0.1.0
 * @category flattening
 */
export const unflatten = (row: FlatRow): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const key in row) {
    if (!key.includes(PATH_SEPARATOR)) {
      out[key] = row[key]
      continue
    }
    const path = splitPath(key)
    let node = out
    for (let i = 0; i < path.length - 1; i++) {
      const next = node[path[i]!]
      if (!isPlainObject(next)) node[path[i]!] = {}
      node = node[path[i]!] as Record<string, unknown>
    }
    node[path[path.length - 1]!] = row[key]
  }
  return out
}

/**
 * What one `log` call did.
 *
 * @since 0.1.0
 * @category models
 */
export type LogOutcome =
  | { readonly _tag: "Accepted"; readonly committed: ReadonlyArray<HistoryRow> }
  | { readonly _tag: "Dropped"; readonly step: number; readonly current: number }

/**
 * The mutable step state of one run. `current` is the step the next row lands on (`run.step`).
 *
 * @since 0.1.0
 * @category state
 */
export class StepState {
  current: number
  private pending: FlatRow | undefined
  private pendingTimestamp = 0
  dropped = 0

  constructor(startingStep = 0) {
    this.current = startingStep
  }

  /**
   * Applies one `log(data, { step, commit })` call. `now` is Unix seconds.
   */
  log(data: Record<string, unknown>, step: number | undefined, commit: boolean | undefined, now: number): LogOutcome {
    if (step === undefined) {
      this.merge(data, now)
      if (commit === false) return accepted([])
      return accepted(this.commit())
    }

    if (step < this.current) {
      this.dropped++
      return { _tag: "Dropped", step, current: this.current }
    }

    const committed: Array<HistoryRow> = []
    if (step > this.current) {
      const row = this.takePending()
      if (row !== undefined) committed.push(row)
      this.current = step
    }
    this.merge(data, now)
    if (commit === true) committed.push(...this.commit())
    return accepted(committed)
  }

  /** Commits whatever is pending, as at finish. */
  flush(): ReadonlyArray<HistoryRow> {
    const row = this.takePending()
    return row === undefined ? [] : [row]
  }

  private merge(data: Record<string, unknown>, now: number): void {
    if (this.pending === undefined) this.pending = {}
    flattenInto(this.pending, data)
    this.pendingTimestamp = now
  }

  private commit(): Array<HistoryRow> {
    const row = this.takePending()
    // A commit of nothing still moves past the step, as the official client's `log({}, commit=True)` does.
    if (row === undefined) this.current++
    return row === undefined ? [] : [row]
  }

  private takePending(): HistoryRow | undefined {
    const values = this.pending
    this.pending = undefined
    if (values === undefined || isEmpty(values)) return undefined
    const userTimestamp = values["_timestamp"]
    const timestamp = typeof userTimestamp === "number" ? userTimestamp : this.pendingTimestamp
    const row: HistoryRow = { step: this.current, values, timestamp }
    this.current++
    return row
  }
}

const accepted = (committed: ReadonlyArray<HistoryRow>): LogOutcome => ({ _tag: "Accepted", committed })
