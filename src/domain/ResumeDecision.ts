/**
 * The resume decision: given the `resume` setting and what the server knows of the run id, start a new run,
 * continue the stored one, or refuse. Pure: the caller asks the server and acts on the answer.
 *
 * @since 0.1.0
 */
import * as ExtendedJson from "./ExtendedJson.js"
import type { Resume } from "./Settings.js"

/**
 * What the server holds of a run (the text fields as it sent them).
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredRun {
  readonly storageId: string
  readonly historyLineCount: number | undefined
  readonly summaryMetrics: string | undefined
  readonly config: string | undefined
  readonly historyTail: string | undefined
  readonly eventsTail: string | undefined
  readonly wandbConfig: string | undefined
  readonly tags: ReadonlyArray<string> | undefined
  readonly notes: string | undefined
  readonly displayName: string | undefined
}

/**
 * What a resumed run continues from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Continuation {
  readonly storageId: string
  /** The step the first new row lands on. */
  readonly startingStep: number
  /** Seconds the run had already run; its timer continues from there. */
  readonly runtime: number
  readonly config: Record<string, unknown>
  readonly summary: Record<string, unknown>
  readonly tags: ReadonlyArray<string> | undefined
  readonly notes: string | undefined
  readonly displayName: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type ResumeDecision =
  | { readonly _tag: "New" }
  | { readonly _tag: "Resume"; readonly from: Continuation }
  | { readonly _tag: "Refuse"; readonly reason: "not-found" | "exists" | "unreadable" }

const parseObject = (text: string | undefined): Record<string, unknown> | undefined => {
  if (text === undefined) return undefined
  try {
    const value = ExtendedJson.parse(text)
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : undefined
  } catch {
    return undefined
  }
}

const lastLine = (tail: string | undefined): Record<string, unknown> | undefined => {
  if (tail === undefined) return undefined
  try {
    const lines = ExtendedJson.parse(tail)
    if (!Array.isArray(lines) || lines.length === 0) return {}
    const last = lines[lines.length - 1]
    return typeof last === "string" ? parseObject(last) : undefined
  } catch {
    return undefined
  }
}

/**
 * A run exists only when a client started it: its `_wandb` config has the telemetry key `t`. A run the
 * server pre-created (a sweep's) does not count.
 *
 * @since 0.1.0
 * @category decisions
 */
export const exists = (stored: StoredRun | undefined): stored is StoredRun =>
  stored !== undefined && parseObject(stored.wandbConfig)?.["t"] !== undefined

const numberAt = (object: Record<string, unknown> | undefined, key: string): number | undefined => {
  const value = object?.[key]
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

/**
 * Decides for a `resume` value (unset means no question was asked: a new run).
 *
 * @since 0.1.0
 * @category decisions
 */
export const decide = (resume: Resume | undefined, stored: StoredRun | undefined): ResumeDecision => {
  if (resume === undefined) return { _tag: "New" }
  const started = exists(stored)
  if (resume === "never") return started ? { _tag: "Refuse", reason: "exists" } : { _tag: "New" }
  if (!started) return resume === "must" ? { _tag: "Refuse", reason: "not-found" } : { _tag: "New" }

  const summary = parseObject(stored.summaryMetrics)
  const configText = parseObject(stored.config)
  const last = lastLine(stored.historyTail)
  const lastEvent = lastLine(stored.eventsTail)
  if (summary === undefined || configText === undefined || last === undefined || lastEvent === undefined) {
    // What cannot be read cannot be continued, whatever the resume value: the official client aborts too.
    return { _tag: "Refuse", reason: "unreadable" }
  }

  const lines = stored.historyLineCount ?? 0
  const lastStep = numberAt(last, "_step") ?? numberAt(summary, "_step") ?? 0
  // Steps are whole numbers from 0 that a log record can carry; anything else cannot be continued.
  if (!Number.isSafeInteger(lastStep) || lastStep < 0) return { _tag: "Refuse", reason: "unreadable" }
  const startingStep = lines > 0 ? Math.floor(lastStep) + 1 : Math.floor(lastStep)
  const wandb = summary["_wandb"]
  const summaryRuntime = typeof wandb === "object" && wandb !== null
    ? numberAt(wandb as Record<string, unknown>, "runtime")
    : numberAt(summary, "_runtime")
  const runtime = Math.max(
    numberAt(lastEvent, "_runtime") ?? 0,
    summaryRuntime ?? 0,
    numberAt(last, "_runtime") ?? 0
  )

  const config: Record<string, unknown> = {}
  for (const key of Object.keys(configText)) {
    if (key === "_wandb") continue
    const entry = configText[key]
    const wrapped = typeof entry === "object" && entry !== null && "value" in entry
    config[key] = wrapped ? (entry as { value: unknown }).value : entry
  }

  return {
    _tag: "Resume",
    from: {
      storageId: stored.storageId,
      startingStep,
      runtime,
      config,
      summary,
      tags: stored.tags,
      notes: stored.notes ?? undefined,
      displayName: stored.displayName
    }
  }
}
