/**
 * The numbers the runner derives from each measurement, the targets, and the printed table.
 */
import type { ChildResult, LogTiming, LoopTiming, Sdk, Task } from "./Measurement.js"
import type { StoredHistory, Traffic } from "./ServerWatch.js"
import type { ChildOutcome } from "./spawn.js"

export interface MeasurementRecord {
  readonly label: string
  readonly sdk: Sdk
  readonly task: Task
  readonly runId: string
  readonly outcome: ChildOutcome
  /** Every request the server saw while the child ran (the server is reset before each child). */
  readonly traffic: Traffic
  readonly history: StoredHistory | undefined
  /** Epoch milliseconds at which the server held every history row, if it ever did. */
  readonly allStoredAt: number | undefined
}

export interface Results {
  readonly date: string
  readonly durationS: number
  readonly machine: Readonly<Record<string, unknown>>
  readonly setup: Readonly<Record<string, unknown>>
  readonly summary: Summary
  readonly measurements: ReadonlyArray<MeasurementRecord>
}

// ---------------------------------------------------------------------------------------------------------------
// Derived numbers
// ---------------------------------------------------------------------------------------------------------------

const MB = 1e6

export interface InitNumbers {
  readonly importMs: number | null
  readonly firstInitMs: number | null
  /** Median of the inits after the first one in the same process. */
  readonly laterInitMedianMs: number | null
  readonly firstFinishMs: number | null
  readonly peakRssMB: number | null
  readonly status: string
}

export interface LogNumbers {
  readonly rows: number
  readonly status: string
  readonly importMs: number | null
  readonly timerMedianNs: number | null
  readonly logMedianNetNs: number | null
  readonly logP99NetNs: number | null
  readonly logP999NetNs: number | null
  readonly logMeanNetNs: number | null
  readonly logMaxMs: number | null
  readonly callsOver64us: number | null
  readonly loopMs: number | null
  readonly finishMs: number | null
  /** Rows ÷ seconds from the first `log` call to the moment the server held every row. */
  readonly rowsPerSecond: number | null
  readonly storedRows: number
  readonly extraLines: number
  readonly duplicateWrites: number
  readonly repeatedSteps: number
  readonly peakRssMB: number | null
  readonly peakRssSource: string
  readonly peakPhase: string | null
  /** Request body bytes ÷ rows the server stored (rows that never arrived cost nothing per row). */
  readonly fileStreamBytesPerRow: number | null
  readonly allBytesPerRow: number | null
  readonly requests: string
  readonly runState: string | null
  readonly wallS: number
}

const median = (values: ReadonlyArray<number>): number | null => {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const statusOf = (m: MeasurementRecord): string => {
  const { outcome } = m
  const limitS = outcome.wallMs / 1000
  if (outcome.killed === "time limit") {
    const where = outcome.result?.phase === "logged" ? " in finish" : ""
    return `killed at ${limitS.toFixed(0)} s limit${where}`
  }
  if (outcome.killed !== undefined) return `killed: ${outcome.killed}`
  if (outcome.result?.error !== undefined) return `failed: ${outcome.result.error.split("\n")[0]}`
  if (outcome.result === undefined) return `no result (exit ${outcome.exitCode ?? outcome.signal})`
  return outcome.exitCode === 0 ? "ok" : `exit ${outcome.exitCode}`
}

/**
 * The child's own maxRSS when it got to its final report; otherwise (killed, or failed early) the higher of
 * what it last reported and the `VmHWM` the runner read from outside.
 */
const peakRss = (outcome: ChildOutcome, result: ChildResult | undefined) => {
  const inside = result === undefined ? 0 : Math.max(result.memory.maxRssBytes, result.memory.peakSampledRssBytes)
  if (result?.phase === "done") return { bytes: inside, source: "maxRSS" }
  const outside = outcome.peakRssFromOutsideBytes ?? 0
  if (inside === 0 && outside === 0) return { bytes: null, source: "none" }
  return inside >= outside
    ? { bytes: inside, source: "maxRSS" }
    : { bytes: outside, source: "VmHWM read by the runner" }
}

export const initNumbers = (m: MeasurementRecord): InitNumbers => {
  const result = m.outcome.result
  const inits = result?.inits ?? []
  return {
    importMs: result?.importMs ?? null,
    firstInitMs: inits[0]?.initMs ?? null,
    laterInitMedianMs: median(inits.slice(1).map((i) => i.initMs)),
    firstFinishMs: inits[0]?.finishMs ?? null,
    peakRssMB: peakRss(m.outcome, result).bytes === null ? null : peakRss(m.outcome, result).bytes! / MB,
    status: statusOf(m)
  }
}

const isFinished = (run: LoopTiming | LogTiming | undefined): run is LogTiming =>
  run !== undefined && "finishMs" in run

export const logNumbers = (m: MeasurementRecord): LogNumbers => {
  const rows = m.task.kind === "log" ? m.task.rows : 0
  const result = m.outcome.result
  const run = result?.logRun
  const timer = run?.timer
  const log = run?.log
  const net = (ns: number | undefined) => (ns === undefined || timer === undefined ? null : ns - timer.medianNs)
  const fileStream = m.traffic.byChannel["file_stream"]
  const allBytes = Object.values(m.traffic.byChannel).reduce((sum, channel) => sum + channel.bodyBytes, 0)
  const count = (channel: string) => m.traffic.byChannel[channel]?.requests ?? 0
  const peak = peakRss(m.outcome, result)
  const peaks = Object.entries(result?.memory.peaks ?? {})
  const peakPhase = peak.source !== "maxRSS"
    ? "VmHWM"
    : peaks.length === 0
    ? null
    : peaks.reduce((a, b) => (b[1].rssBytes > a[1].rssBytes ? b : a))[0]
  const stored = m.history?.storedRows ?? 0
  return {
    rows,
    status: statusOf(m),
    importMs: result?.importMs ?? null,
    timerMedianNs: timer?.medianNs ?? null,
    logMedianNetNs: net(log?.medianNs),
    logP99NetNs: net(log?.p99Ns),
    logP999NetNs: net(log?.p999Ns),
    logMeanNetNs: log === undefined || timer === undefined ? null : log.meanNs - timer.meanNs,
    logMaxMs: log === undefined ? null : log.maxNs / 1e6,
    callsOver64us: log?.over64us ?? null,
    loopMs: run?.loopMs ?? null,
    finishMs: isFinished(run) ? run.finishMs : null,
    rowsPerSecond: m.allStoredAt === undefined || run === undefined
      ? null
      : rows / ((m.allStoredAt - run.firstLogAt) / 1000),
    storedRows: m.history?.storedRows ?? 0,
    extraLines: m.history?.extraLines ?? 0,
    duplicateWrites: m.history?.duplicateWrites ?? 0,
    repeatedSteps: m.history?.repeatedSteps ?? 0,
    peakRssMB: peak.bytes === null ? null : peak.bytes / MB,
    peakRssSource: peak.source,
    peakPhase,
    fileStreamBytesPerRow: fileStream === undefined || stored === 0 ? null : fileStream.bodyBytes / stored,
    allBytesPerRow: stored === 0 ? null : allBytes / stored,
    requests: `${count("graphql")}/${count("file_stream")}/${count("upload")}`,
    runState: m.history?.state ?? null,
    wallS: m.outcome.wallMs / 1000
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------------------------

export interface TargetCheck {
  readonly target: string
  /** `null` when the run did not include what the target speaks of. */
  readonly met: boolean | null
  readonly measured: string
}

export interface Summary {
  readonly init: Partial<Record<string, InitNumbers>>
  readonly log: Partial<Record<string, LogNumbers>>
  readonly targets: ReadonlyArray<TargetCheck>
}

const key = (m: MeasurementRecord) =>
  m.task.kind === "log"
    ? `${m.sdk} log ${m.task.rows}`
    : m.task.kind === "init"
    ? `${m.sdk} init ${m.task.mode}`
    : m.sdk

export const summarize = (measurements: ReadonlyArray<MeasurementRecord>): Summary => {
  const init: Record<string, InitNumbers> = {}
  const log: Record<string, LogNumbers> = {}
  for (const m of measurements) {
    if (m.task.kind === "init") init[key(m)] = initNumbers(m)
    if (m.task.kind === "log") log[key(m)] = logNumbers(m)
  }
  const ours = Object.entries(log).filter(([name]) => name.startsWith("wandb-effect ")).map(([, n]) => n)
  const at = (rows: number) => log[`wandb-effect log ${rows}`]
  const check = (target: string, measured: string, met: boolean | null): TargetCheck => ({ target, met, measured })

  const arrivals = ours.map((n) => `${count(n.storedRows)} of ${count(n.rows)} rows stored`).join(", ")
  const medians = ours.map((n) => `${fmt(n.logMedianNetNs, 0)} ns at ${count(n.rows)} rows`).join(", ")
  const offline = init["wandb-effect init offline"]
  const million = at(1_000_000)
  const hundredK = at(100_000)
  const targets = [
    check(
      "every row arrives",
      arrivals || "not measured",
      ours.length === 0 ? null : ours.every((n) => n.storedRows === n.rows && n.extraLines === 0)
    ),
    check(
      "log median < 1 µs",
      medians || "not measured",
      ours.length === 0 ? null : ours.every((n) => n.logMedianNetNs !== null && n.logMedianNetNs < 1000)
    ),
    check(
      "peak RSS < 150 MB at 1M rows",
      million?.peakRssMB == null ? "not measured" : `${fmt(million.peakRssMB, 0)} MB`,
      million?.peakRssMB == null ? null : million.peakRssMB < 150
    ),
    check(
      "init < 50 ms offline (first init)",
      offline?.firstInitMs == null ? "not measured" : `${fmt(offline.firstInitMs, 1)} ms`,
      offline?.firstInitMs == null ? null : offline.firstInitMs < 50
    ),
    check(
      "finish < 1 s at 100k rows",
      hundredK?.finishMs == null ? "not measured" : `${fmt(hundredK.finishMs, 0)} ms`,
      hundredK?.finishMs == null ? null : hundredK.finishMs < 1000
    )
  ]
  return { init, log, targets }
}

// ---------------------------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------------------------

const fmt = (value: number | null | undefined, digits: number): string =>
  value === null || value === undefined || Number.isNaN(value)
    ? "—"
    : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const count = (rows: number): string =>
  rows === 0
    ? "0"
    : rows % 1_000_000 === 0
    ? `${rows / 1_000_000}M`
    : rows % 1000 === 0
    ? `${rows / 1000}k`
    : fmt(rows, 0)

const verdict = (met: boolean | null) => (met === null ? "n/a" : met ? "met" : "NOT met")

type Row = readonly [label: string, ours: string, theirs: string, target?: string, met?: string]

const COLUMNS = [38, 22, 34, 12, 7] as const

const line = (cells: Row): string =>
  cells.map((cell, i) => (cell ?? "").padEnd(COLUMNS[i]!)).join(" ").trimEnd()

export const printTable = (results: Results): void => {
  const { summary } = results
  const out: Array<string> = []
  const section = (title: string) => out.push("", title)
  const row = (...cells: Row) => out.push(line(cells))

  row("", "wandb-effect", "@wandb/sdk", "target", "ours")
  out.push("-".repeat(COLUMNS.reduce((a, b) => a + b + 1, 0) - 1))

  const offline = summary.init["wandb-effect init offline"]
  const onlineOurs = summary.init["wandb-effect init online"]
  const onlineTheirs = summary.init["@wandb/sdk init online"]
  const initTarget = summary.targets.find((t) => t.target.startsWith("init"))
  section("start-up (fresh process per column; init = await init(...))")
  row("import the SDK (ms)", fmt(onlineOurs?.importMs, 0), fmt(onlineTheirs?.importMs, 0))
  row("init offline, first (ms)", fmt(offline?.firstInitMs, 1), "—", "< 50 ms", verdict(initTarget?.met ?? null))
  row("init offline, later ones, median (ms)", fmt(offline?.laterInitMedianMs, 1), "—")
  row("init online, first (ms)", fmt(onlineOurs?.firstInitMs, 1), fmt(onlineTheirs?.firstInitMs, 1))
  row(
    "init online, later ones, median (ms)",
    fmt(onlineOurs?.laterInitMedianMs, 1),
    fmt(onlineTheirs?.laterInitMedianMs, 1)
  )
  row("finish of an empty online run (ms)", fmt(onlineOurs?.firstFinishMs, 1), fmt(onlineTheirs?.firstFinishMs, 1))
  row("peak RSS of the init child (MB)", fmt(onlineOurs?.peakRssMB, 0), fmt(onlineTheirs?.peakRssMB, 0))

  const rowCounts = [...new Set(Object.values(summary.log).map((n) => n!.rows))].sort((a, b) => a - b)
  for (const rows of rowCounts) {
    const ours = summary.log[`wandb-effect log ${rows}`]
    const theirs = summary.log[`@wandb/sdk log ${rows}`]
    const both = (pick: (n: LogNumbers) => string): [string, string] => [
      ours === undefined ? "not run" : pick(ours),
      theirs === undefined ? "not run" : pick(theirs)
    ]
    const is100k = rows === 100_000
    const is1M = rows === 1_000_000
    const target = (name: string) => summary.targets.find((t) => t.target.startsWith(name))
    section(`${count(rows)} rows of 10 numbers, online, one run, log loop then finish`)
    row("child outcome", ...both((n) => n.status))
    row("timer cost, median (ns)", ...both((n) => fmt(n.timerMedianNs, 0)))
    row("log, median, net of timer (ns)", ...both((n) => fmt(n.logMedianNetNs, 0)), "< 1,000 ns", verdict(
      ours?.logMedianNetNs == null ? null : ours.logMedianNetNs < 1000
    ))
    row("log, p99, net (ns)", ...both((n) => fmt(n.logP99NetNs, 0)))
    row("log, p99.9, net (ns)", ...both((n) => fmt(n.logP999NetNs, 0)))
    row("log, mean, net (ns)", ...both((n) => fmt(n.logMeanNetNs, 0)))
    row("log, slowest call (ms)", ...both((n) => fmt(n.logMaxMs, 1)))
    row("log calls of 64 µs or more", ...both((n) => fmt(n.callsOver64us, 0)))
    row("logging loop, wall (ms)", ...both((n) => fmt(n.loopMs, 0)))
    row(
      "finish after the last row (ms)",
      ...both((n) => fmt(n.finishMs, 0)),
      is100k ? "< 1,000 ms" : "",
      is100k ? verdict(target("finish")?.met ?? null) : ""
    )
    row(
      "rows/s, first log → server has all",
      ...both((n) => (n.rowsPerSecond === null ? "never all" : fmt(n.rowsPerSecond, 0)))
    )
    row("rows stored / logged", ...both((n) => `${fmt(n.storedRows, 0)} / ${fmt(n.rows, 0)}`), "all", verdict(
      ours === undefined ? null : ours.storedRows === ours.rows && ours.extraLines === 0
    ))
    row("duplicate lines / repeated _step", ...both((n) => `${n.duplicateWrites} / ${n.repeatedSteps}`))
    row("run state on the server", ...both((n) => n.runState ?? "—"))
    row(
      "peak RSS (MB)",
      ...both((n) => `${fmt(n.peakRssMB, 0)}${n.peakPhase === null ? "" : ` (${n.peakPhase})`}`),
      is1M ? "< 150 MB" : "",
      is1M ? verdict(target("peak RSS")?.met ?? null) : ""
    )
    row("file_stream body bytes / stored row", ...both((n) => fmt(n.fileStreamBytesPerRow, 1)))
    row("all body bytes / stored row", ...both((n) => fmt(n.allBytesPerRow, 1)))
    row("requests graphql/file_stream/upload", ...both((n) => n.requests))
    row("child wall time (s)", ...both((n) => fmt(n.wallS, 1)))
  }

  section("targets (wandb-effect)")
  const measuredWidth = COLUMNS[1] + COLUMNS[2] + COLUMNS[3] + 2
  for (const t of summary.targets) {
    out.push(`${t.target.padEnd(COLUMNS[0])} ${t.measured.padEnd(measuredWidth)} ${verdict(t.met)}`)
  }

  const baseline = results.measurements.find((m) => m.task.kind === "baseline")?.outcome.result?.memory.maxRssBytes
  out.push(
    "",
    "Both SDKs run in child processes started as `node --import tsx --conditions=source bench/child.ts`",
    "(wandb-effect from src/ through its Promise facade; @wandb/sdk from its published build).",
    `Such a child with no SDK loaded peaks at ${fmt(baseline === undefined ? null : baseline / MB, 0)} MB RSS.`,
    "log: performance.now() around each call; the median cost of performance.now() around an empty",
    "statement (same loop) is subtracted from median, p99 and p99.9 (mean: mean subtracted).",
    "Bytes: request bodies as received by the server (HTTP headers not counted, uncompressed here).",
    "MB = 10^6 bytes."
  )
  process.stdout.write(`${out.join("\n")}\n`)
}
