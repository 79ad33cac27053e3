/**
 * The `Run` a scoped `init` gives: its identity, its settings with provenance, and the members that log
 * metrics, change config and summary, and finish it.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type {
  ConfigFileError,
  ConfigValueChanged,
  FinishTimeout,
  InvalidArgument,
  RunFinished,
  StorageError
} from "../domain/Errors.js"
import type { ConfigInput } from "../domain/InitOptions.js"
import type { Mode, SettingsWithProvenance } from "../domain/Settings.js"

/**
 * Options of `log`. Without `step` each call is a new row; with `step` the row stays open until a later
 * step or `commit: true`.
 *
 * @since 0.1.0
 * @category models
 */
export interface LogOptions {
  readonly step?: number | undefined
  readonly commit?: boolean | undefined
}

/**
 * What finishing a run reports.
 *
 * @since 0.1.0
 * @category models
 */
export interface FinishResult {
  readonly runId: string
  readonly exitCode: number
  /** History rows written. */
  readonly historyRows: number
  /** Rows dropped because they were logged at a step below the current one. */
  readonly droppedRows: number
  readonly runDir: string | undefined
  readonly url: string | undefined
  /** Online: whether the server confirmed every record, the files and the completion. */
  readonly synced: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FinishOptions {
  /** Defaults to 0; the scope's finalizer passes 1 on failure and 255 on interruption. */
  readonly exitCode?: number | undefined
  /** How long uploads may take before `FinishTimeout`; unbounded by default. The data stays on disk. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunConfigAccess {
  /** The current config values. */
  readonly get: Effect.Effect<Readonly<Record<string, unknown>>>
  /**
   * Adds or changes keys. Changing an existing key's value fails with `ConfigValueChanged` unless
   * `allowValChange` (default: the init option of the same name) allows it; nothing is applied then.
   */
  readonly update: (
    values: ConfigInput,
    options?: { readonly allowValChange?: boolean | undefined }
  ) => Effect.Effect<void, ConfigValueChanged | ConfigFileError | InvalidArgument | RunFinished>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunSummaryAccess {
  /** The summary as nested objects: the last value of each logged metric and what was set explicitly. */
  readonly get: Effect.Effect<Record<string, unknown>>
  /** Sets top-level keys explicitly; a later logged value of the same key replaces them again. */
  readonly update: (values: Record<string, unknown>) => Effect.Effect<void, InvalidArgument | RunFinished>
}

/**
 * A live run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Run {
  readonly id: string
  readonly name: string | undefined
  readonly project: string
  readonly entity: string
  readonly mode: Mode
  /** The run directory; absent in disabled mode. */
  readonly dir: string | undefined
  /** The run's page; absent offline and disabled. */
  readonly url: string | undefined
  readonly resumed: boolean
  readonly startingStep: number
  readonly settings: SettingsWithProvenance
  /** The step the next row lands on. */
  readonly step: Effect.Effect<number>
  readonly log: (
    data: Record<string, unknown>,
    options?: LogOptions
  ) => Effect.Effect<void, InvalidArgument | RunFinished>
  readonly config: RunConfigAccess
  readonly summary: RunSummaryAccess
  /** Finishes the run once; later calls return the same result. */
  readonly finish: (options?: FinishOptions) => Effect.Effect<FinishResult, FinishTimeout | StorageError>
  /** Tells the server the run is about to be stopped by its scheduler, so it is shown as preempted. */
  readonly markPreempting: Effect.Effect<void, RunFinished>
}
