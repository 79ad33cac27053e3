/**
 * The synchronous heart of a run. `log`, config and summary changes update in-memory state and queue
 * events; nothing here waits, allocates a fiber or touches the disk, so the Promise facade can call it
 * straight from a training loop. The run's writer fiber drains the queue into the transaction log.
 */
import { ConfigFileError, ConfigValueChanged, InvalidArgument, RunFinished } from "../domain/Errors.js"
import * as ExtendedJson from "../domain/ExtendedJson.js"
import { type HistoryRow, PATH_SEPARATOR, StepState } from "../domain/History.js"
import * as RunConfig from "../domain/RunConfig.js"
import * as Sparkline from "../domain/Sparkline.js"
import { SummaryState } from "../domain/Summary.js"

/**
 * What the writer turns into records, in the order it happened.
 */
export type RunEvent =
  | { readonly _tag: "History"; readonly row: HistoryRow; readonly runtime: number }
  | { readonly _tag: "Summary"; readonly set: Record<string, unknown>; readonly removed: ReadonlyArray<string> }
  | { readonly _tag: "Config"; readonly changed: Record<string, unknown> }
  | { readonly _tag: "Preempting" }
  | {
    readonly _tag: "Stats"
    readonly timestamp: number
    readonly metrics: ReadonlyArray<readonly [string, number]>
  }
  | { readonly _tag: "Output"; readonly stream: "stdout" | "stderr"; readonly text: string; readonly timestamp: number }

export interface LogOptions {
  readonly step?: number | undefined
  readonly commit?: boolean | undefined
}

export interface RunCoreOptions {
  readonly runId: string
  readonly startTimeMs: number
  readonly startingStep: number
  readonly config: RunConfig.ConfigValues
  readonly allowValChange: boolean
  /** Disabled runs keep state for their members to work but queue nothing. */
  readonly recordEvents: boolean
  readonly warn: (message: string) => void
  readonly now?: () => number
  /**
   * Called synchronously when this many events wait for the writer: a loop that never yields to the
   * event loop leaves the writer fiber no chance to run, so the backlog is written from inside `log`.
   */
  readonly backlogLimit?: number
  /** Rows older than this are written from inside `log` when the writer fiber has not run. */
  readonly flushIntervalMs?: number
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Map)

export class RunCore {
  readonly runId: string
  startTimeMs: number
  startingStep: number
  finished = false
  historyRows = 0

  private readonly steps: StepState
  private readonly summaryState = new SummaryState()
  private configValues: RunConfig.ConfigValues
  private readonly allowValChange: boolean
  private readonly recordEvents: boolean
  private readonly warn: (message: string) => void
  private readonly now: () => number
  private readonly samplers = new Map<string, Sparkline.Sampler>()
  private queue: Array<RunEvent> = []
  private warnedAboutDrops = false
  private readonly backlogLimit: number
  private readonly flushIntervalMs: number
  private lastDrainMs: number
  /** Set by whoever owns the writer; see `RunCoreOptions.backlogLimit`. */
  onBacklog: (() => void) | undefined

  constructor(options: RunCoreOptions) {
    this.runId = options.runId
    this.startTimeMs = options.startTimeMs
    this.startingStep = options.startingStep
    this.steps = new StepState(options.startingStep)
    this.configValues = { ...options.config }
    this.allowValChange = options.allowValChange
    this.recordEvents = options.recordEvents
    this.warn = options.warn
    this.now = options.now ?? Date.now
    this.backlogLimit = options.backlogLimit ?? 1024
    this.flushIntervalMs = options.flushIntervalMs ?? 500
    this.lastDrainMs = options.startTimeMs
  }

  /**
   * Continues a stored run: steps go on after its last one, its runtime keeps counting, its config keys
   * that this run did not set come back, and its summary is the starting summary.
   */
  continueFrom(from: {
    readonly startingStep: number
    readonly runtime: number
    readonly config: RunConfig.ConfigValues
    readonly summary: Record<string, unknown>
  }): void {
    this.startingStep = from.startingStep
    this.steps.current = from.startingStep
    this.startTimeMs -= from.runtime * 1000
    this.configValues = { ...from.config, ...this.configValues }
    const summary = Object.fromEntries(Object.entries(from.summary).filter(([key]) => key !== "_wandb"))
    this.summaryState.update(summary)
  }

  get step(): number {
    return this.steps.current
  }

  get droppedRows(): number {
    return this.steps.dropped
  }

  log(data: unknown, options?: LogOptions): RunFinished | InvalidArgument | undefined {
    if (this.finished) return new RunFinished({ runId: this.runId, method: "log" })
    if (!isRecord(data)) {
      return new InvalidArgument({ method: "log", reason: "expects an object of metric names to values" })
    }
    const step = options?.step
    if (step !== undefined && (!Number.isSafeInteger(step) || step < 0)) {
      return new InvalidArgument({
        method: "log",
        reason: `step must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got ${step}`
      })
    }

    const nowMs = this.now()
    const outcome = this.steps.log(data, step, options?.commit, nowMs / 1000)
    if (outcome._tag === "Dropped") {
      if (!this.warnedAboutDrops) {
        this.warnedAboutDrops = true
        this.warn(
          `Tried to log to step ${outcome.step}, which is less than the current step ${outcome.current}. ` +
            `Steps must increase; this row and later ones like it are dropped and counted at finish.`
        )
      }
      return undefined
    }
    for (const row of outcome.committed) this.commitRow(row, nowMs)
    return undefined
  }

  private commitRow(row: HistoryRow, nowMs: number): void {
    const runtime = (nowMs - this.startTimeMs) / 1000
    this.historyRows++
    this.summaryState.applyRow(row, runtime)
    for (const key in row.values) {
      const value = row.values[key]
      if (typeof value !== "number") continue
      let sampler = this.samplers.get(key)
      if (sampler === undefined) {
        sampler = new Sparkline.Sampler()
        this.samplers.set(key, sampler)
      }
      sampler.add(value)
    }
    if (this.recordEvents) {
      this.queue.push({ _tag: "History", row, runtime })
      this.maybeDrain(nowMs)
    }
  }

  // A loop that never yields to the event loop would keep rows in memory for as long as it runs; once the
  // backlog is large, or older than the flush interval, `log` itself hands it to the writer.
  private maybeDrain(nowMs: number): void {
    if (this.onBacklog === undefined) return
    if (this.queue.length >= this.backlogLimit || nowMs - this.lastDrainMs >= this.flushIntervalMs) {
      this.lastDrainMs = nowMs
      this.onBacklog()
    }
  }

  /** The writer fiber drained the queue: the interval counts from now. */
  drained(nowMs: number): void {
    this.lastDrainMs = nowMs
  }

  /** Commits the pending row, as finish does before the exit. */
  flushHistory(): void {
    const nowMs = this.now()
    for (const row of this.steps.flush()) this.commitRow(row, nowMs)
  }

  /** A copy: changing it changes nothing, so every change goes through `updateConfig` and its rules. */
  get config(): Readonly<RunConfig.ConfigValues> {
    return structuredClone(this.configValues)
  }

  updateConfig(
    values: RunConfig.ConfigValues,
    allowValChange: boolean | undefined
  ): ConfigValueChanged | RunFinished | InvalidArgument | undefined {
    if (this.finished) return new RunFinished({ runId: this.runId, method: "config.update" })
    const plan = RunConfig.planUpdate(this.configValues, values, allowValChange ?? this.allowValChange)
    if (!plan.ok) return plan.error
    const size = ExtendedJson.stringify({ ...this.configValues, ...plan.changed }).length
    if (size > RunConfig.MAX_CONFIG_BYTES) {
      return new InvalidArgument({
        method: "config.update",
        reason: `the config would be ${size} bytes as JSON; W&B accepts at most ${RunConfig.MAX_CONFIG_BYTES}`
      })
    }
    if (Object.keys(plan.changed).length === 0) return undefined
    this.configValues = { ...this.configValues, ...plan.changed }
    if (this.recordEvents) this.queue.push({ _tag: "Config", changed: plan.changed })
    return undefined
  }

  /** Turns any accepted `config.update` input that needs no file into values. */
  static configFromInput(input: unknown): RunConfig.ConfigValues | InvalidArgument | ConfigFileError {
    if (Array.isArray(input)) {
      if (input.every((a) => typeof a === "string")) return RunConfig.fromArgv(input)
      return new InvalidArgument({ method: "config.update", reason: "an array must hold command-line strings" })
    }
    if (isRecord(input)) return RunConfig.fromObject(input)
    return new InvalidArgument({
      method: "config.update",
      reason: "expects an object, a flags object, an argv array or a YAML file path"
    })
  }

  summary(): Record<string, unknown> {
    return this.summaryState.nested()
  }

  /** The summary's leaves with nested keys joined by dots, for display. */
  summaryDotted(): Record<string, unknown> {
    const flat = this.summaryState.flat()
    const out: Record<string, unknown> = {}
    for (const key in flat) out[key.split(PATH_SEPARATOR).join(".")] = flat[key]
    return out
  }

  updateSummary(values: unknown): RunFinished | InvalidArgument | undefined {
    if (this.finished) return new RunFinished({ runId: this.runId, method: "summary.update" })
    if (!isRecord(values)) return new InvalidArgument({ method: "summary.update", reason: "expects an object" })
    const { removed, set } = this.summaryState.update(values)
    if (this.recordEvents) this.queue.push({ _tag: "Summary", set, removed })
    return undefined
  }

  /** Sets summary values without an explicit update event, as the final runtime is. */
  setSummaryLeaves(values: Record<string, unknown>): void {
    const { removed, set } = this.summaryState.update(values)
    if (this.recordEvents) this.queue.push({ _tag: "Summary", set, removed })
  }

  markPreempting(): RunFinished | undefined {
    if (this.finished) return new RunFinished({ runId: this.runId, method: "markPreempting" })
    if (this.recordEvents) this.queue.push({ _tag: "Preempting" })
    return undefined
  }

  /** A system metrics sample; kept until finish starts. */
  recordStats(timestamp: number, metrics: ReadonlyArray<readonly [string, number]>): void {
    if (this.finished || !this.recordEvents) return
    this.queue.push({ _tag: "Stats", timestamp, metrics })
  }

  /** Text the program wrote to stdout or stderr while the run was live. */
  recordOutput(stream: "stdout" | "stderr", text: string, timestamp: number): void {
    if (this.finished || !this.recordEvents || text.length === 0) return
    this.queue.push({ _tag: "Output", stream, text, timestamp })
    this.maybeDrain(this.now())
  }

  /** Hands every queued event to the writer, oldest first. */
  drain(): Array<RunEvent> {
    if (this.queue.length === 0) return []
    const events = this.queue
    this.queue = []
    return events
  }

  get queued(): number {
    return this.queue.length
  }

  histories(): Map<string, ReadonlyArray<number>> {
    const out = new Map<string, ReadonlyArray<number>>()
    for (const [key, sampler] of this.samplers) out.set(key.split(PATH_SEPARATOR).join("."), sampler.values())
    return out
  }
}
