/**
 * The lines printed when a run finishes: where it is, its history as sparklines, its summary and how to
 * sync it, after the official client's footer.
 *
 * @since 0.1.0
 */
import * as Sparkline from "./Sparkline.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface FooterInput {
  readonly runId: string
  readonly name: string | undefined
  readonly offline: boolean
  readonly runDir: string | undefined
  readonly url: string | undefined
  readonly histories: ReadonlyMap<string, ReadonlyArray<number>>
  readonly summary: Record<string, unknown>
  readonly droppedRows: number
  readonly logsDir: string | undefined
  /** The command that syncs the run, for offline runs. */
  readonly syncCommand: string | undefined
}

const MAX_ROWS = 10

const formatValue = (value: unknown): string | undefined => {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value)
    if (!Number.isFinite(value)) return String(value)
    return String(Math.round(value * 1e5) / 1e5)
  }
  if (typeof value === "string") return value.length > 20 ? `${value.slice(0, 20)}...` : value
  if (typeof value === "boolean") return String(value)
  return undefined
}

// Keys are cut so one very long name cannot widen every line of the footer.
const MAX_KEY = 40
const shorten = (key: string) => (key.length > MAX_KEY ? `${key.slice(0, MAX_KEY - 1)}…` : key)

const table = (rows: Array<[string, string]>, extra: number): Array<string> => {
  rows = rows.map(([key, value]) => [shorten(key), value])
  const width = Math.max(...rows.map(([key]) => key.length))
  const lines = rows.map(([key, value]) => `  ${key.padStart(width)} ${value}`)
  if (extra > 0) lines.push(`  ${"".padStart(width)} +${extra} ...`)
  return lines
}

/**
 * The footer's lines, without the `wandb: ` prefix the printer adds.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (input: FooterInput): Array<string> => {
  const lines: Array<string> = []

  const metrics = [...input.histories.keys()].filter((key) => !key.startsWith("_")).sort()
  if (metrics.length > 0) {
    lines.push("", "Run history:")
    const rows = metrics.slice(0, MAX_ROWS).map((key): [string, string] => [
      key,
      Sparkline.render(input.histories.get(key)!)
    ])
    lines.push(...table(rows, metrics.length - rows.length))
  }

  const summaryRows = Object.keys(input.summary)
    .filter((key) => !key.startsWith("_"))
    .sort()
    .flatMap((key): Array<[string, string]> => {
      const shown = formatValue(input.summary[key])
      return shown === undefined ? [] : [[key, shown]]
    })
  if (summaryRows.length > 0) {
    lines.push("", "Run summary:")
    lines.push(...table(summaryRows.slice(0, MAX_ROWS), summaryRows.length - MAX_ROWS))
  }

  if (input.droppedRows > 0) {
    lines.push("", `${input.droppedRows} logged row(s) were dropped: their step was below the current step.`)
  }

  lines.push("")
  const label = input.name === undefined ? input.runId : `${input.name} (${input.runId})`
  if (input.offline) {
    lines.push(`Run ${label} is saved locally in ${input.runDir}`)
    if (input.syncCommand !== undefined) {
      lines.push("You can sync this run to the cloud by running:", input.syncCommand)
    }
  } else if (input.url !== undefined) {
    lines.push(`View run ${label} at: ${input.url}`)
  }
  if (input.logsDir !== undefined) lines.push(`Find logs at: ${input.logsDir}`)
  return lines
}
