/**
 * The run summary: by default the last value of every logged metric, plus what the user sets
 * explicitly. Kept flat (see `History.PATH_SEPARATOR`) so a history row updates it key by key.
 *
 * @since 0.1.0
 */
import { flattenInto, type FlatRow, type HistoryRow, PATH_SEPARATOR, unflatten } from "./History.js"

/**
 * @since 0.1.0
 * @category state
 */
export class SummaryState {
  private readonly values: FlatRow = {}

  /** Every leaf of the row becomes the summary's value for that key. */
  applyRow(row: HistoryRow, runtime: number): void {
    for (const key in row.values) this.values[key] = row.values[key]
    this.values["_step"] = row.step
    this.values["_runtime"] = runtime
    this.values["_timestamp"] = row.timestamp
  }

  /**
   * An explicit update replaces each given top-level key as a whole: `update({ a: { b: 1 } })` leaves no
   * other leaf under `a`. Returns the flat leaves that were set and the prefixes that were cleared.
   */
  update(data: Record<string, unknown>): { readonly set: FlatRow; readonly removed: ReadonlyArray<string> } {
    const removed: Array<string> = []
    for (const top of Object.keys(data)) {
      if (data[top] === undefined) continue
      for (const key of Object.keys(this.values)) {
        if (key === top || key.startsWith(top + PATH_SEPARATOR)) {
          delete this.values[key]
          removed.push(key)
        }
      }
    }
    const set: FlatRow = {}
    flattenInto(set, data)
    for (const key in set) this.values[key] = set[key]
    return { set, removed: removed.filter((key) => !(key in set)) }
  }

  /** Removes a top-level key and everything under it; returns the removed leaves. */
  remove(top: string): ReadonlyArray<string> {
    const removed: Array<string> = []
    for (const key of Object.keys(this.values)) {
      if (key === top || key.startsWith(top + PATH_SEPARATOR)) {
        delete this.values[key]
        removed.push(key)
      }
    }
    return removed
  }

  flat(): Readonly<FlatRow> {
    return this.values
  }

  nested(): Record<string, unknown> {
    return unflatten(this.values)
  }
}
