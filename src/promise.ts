/**
 * The Promise facade of wandb-effect, for programs that do not use Effect.
 *
 * ```ts
 * import wandb from "wandb-effect/promise"
 *
 * const run = await wandb.init({ project: "demo", config: { lr: 0.01 } })
 * for (let epoch = 0; epoch < 10; epoch++) run.log({ loss: 1 / (epoch + 1) })
 * await run.finish()
 * ```
 *
 * `log` hands the row over synchronously and returns at once. Rejections are the SDK's own error
 * classes. A run the program forgets to finish is finished when the event loop empties (exit code 0), on
 * an uncaught exception (1) and on SIGINT or SIGTERM (255; the process then exits 130 or 143). The SDK
 * never keeps the event loop alive on its own.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import { ConfigFileError, ConfigValueChanged, InvalidArgument, type RunFinished } from "./domain/Errors.js"
import type { InitOptions } from "./domain/InitOptions.js"
import type { Mode, SettingsWithProvenance } from "./domain/Settings.js"
import { RunCore } from "./internal/runCore.js"
import { coreOf, finishOnExit, init as initEffect } from "./programs/Init.js"
import type { FinishOptions, FinishResult, LogOptions, Run as EffectRun } from "./programs/Run.js"
import * as Wandb from "./Wandb.js"

export * from "./domain/Errors.js"
export type { FinishOptions, FinishResult, InitOptions, LogOptions }

// Timers of the SDK's own background work (the flush interval, retry back-off) must not keep a finished
// program alive, so the facade's runtime sleeps on unreferenced timers.
const systemClock = Clock.make()
const unreferencedClock: Clock.Clock = {
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => systemClock.unsafeCurrentTimeMillis(),
  unsafeCurrentTimeNanos: () => systemClock.unsafeCurrentTimeNanos(),
  currentTimeMillis: systemClock.currentTimeMillis,
  currentTimeNanos: systemClock.currentTimeNanos,
  sleep: (duration) => unreferencedSleep(Duration.toMillis(duration))
}

// Node's timers hold at most 2^31 - 1 ms (about 24.8 days); a longer wait (a server's Retry-After far in
// the future) is slept in pieces rather than turned into a 1 ms busy loop.
const MAX_TIMER_MS = 2 ** 31 - 1
const unreferencedSleep = (millis: number): Effect.Effect<void> =>
  millis > MAX_TIMER_MS
    ? Effect.zipRight(unreferencedSleep(MAX_TIMER_MS), Effect.suspend(() => unreferencedSleep(millis - MAX_TIMER_MS)))
    : Effect.async<void>((resume) => {
      const timer = setTimeout(() => resume(Effect.void), Math.max(0, millis))
      timer.unref()
      return Effect.sync(() => clearTimeout(timer))
    })

let runtime: ManagedRuntime.ManagedRuntime<Wandb.WandbEnv, never> | undefined
const getRuntime = () => {
  runtime ??= ManagedRuntime.make(Layer.merge(Wandb.layer, Layer.setClock(unreferencedClock)))
  return runtime
}

// While the SDK itself awaits (init, finish), a referenced timer keeps Node from exiting under it.
const holdingProcess = async <A>(work: () => Promise<A>): Promise<A> => {
  const hold = setInterval(() => {}, 1 << 30)
  try {
    return await work()
  } finally {
    clearInterval(hold)
  }
}

const run = <A, E>(effect: Effect.Effect<A, E, Wandb.WandbEnv>): Promise<A> =>
  holdingProcess(async () => {
    const exit = await getRuntime().runPromiseExit(effect)
    if (Exit.isSuccess(exit)) return exit.value
    // Users catch the SDK's own error classes, never Effect's wrapper.
    throw Cause.squash(exit.cause)
  })

/**
 * @since 0.1.0
 * @category models
 */
export interface ConfigUpdateOptions {
  readonly allowValChange?: boolean | undefined
}

const throwIf = (error: RunFinished | InvalidArgument | ConfigValueChanged | undefined): void => {
  if (error !== undefined) throw error
}

/**
 * A run, as Promise users see it.
 *
 * @since 0.1.0
 * @category models
 */
export class Run {
  readonly id: string
  readonly name: string | undefined
  readonly project: string
  readonly entity: string
  readonly mode: Mode
  readonly dir: string | undefined
  readonly url: string | undefined
  readonly resumed: boolean
  readonly startingStep: number
  readonly settings: SettingsWithProvenance

  readonly config: {
    /** The current config values. */
    readonly get: () => Readonly<Record<string, unknown>>
    /**
     * Adds or changes keys, at once, like `log`: throws `ConfigValueChanged` when a value would change
     * without `allowValChange`, and then applies nothing. A YAML file path is read first, so that form
     * returns a promise.
     */
    readonly update: {
      (values: Record<string, unknown> | ReadonlyArray<string>, options?: ConfigUpdateOptions): void
      (path: string, options?: ConfigUpdateOptions): Promise<void>
    }
  }

  readonly summary: {
    readonly get: () => Record<string, unknown>
    readonly update: (values: Record<string, unknown>) => void
  }

  /** @internal */
  readonly effectRun: EffectRun
  private readonly core: RunCore
  private readonly scope: Scope.CloseableScope
  private finishing: Promise<FinishResult> | undefined

  /** @internal */
  constructor(effectRun: EffectRun, core: RunCore, scope: Scope.CloseableScope) {
    this.effectRun = effectRun
    this.core = core
    this.scope = scope
    this.id = effectRun.id
    this.name = effectRun.name
    this.project = effectRun.project
    this.entity = effectRun.entity
    this.mode = effectRun.mode
    this.dir = effectRun.dir
    this.url = effectRun.url
    this.resumed = effectRun.resumed
    this.startingStep = effectRun.startingStep
    this.settings = effectRun.settings
    const update = (
      values: Record<string, unknown> | ReadonlyArray<string> | string,
      options?: ConfigUpdateOptions
    ): void | Promise<void> => {
      if (typeof values === "string") return run(effectRun.config.update(values, options))
      const parsed = RunCore.configFromInput(values)
      if (parsed instanceof InvalidArgument || parsed instanceof ConfigFileError) throw parsed
      throwIf(core.updateConfig(parsed, options?.allowValChange))
    }
    this.config = { get: () => core.config, update: update as Run["config"]["update"] }
    this.summary = {
      get: () => core.summary(),
      update: (values) => throwIf(core.updateSummary(values))
    }
  }

  /** The step the next row lands on. */
  get step(): number {
    return this.core.step
  }

  get finished(): boolean {
    return this.finishing !== undefined
  }

  /**
   * Logs a row of metrics. Returns at once: the row is written to disk by the run's writer within the
   * flush interval. Throws `RunFinished` after finish and `InvalidArgument` for a non-object.
   */
  log(data: Record<string, unknown>, options?: LogOptions): void {
    const error = this.core.log(data, options)
    // Once a signal or a crash is ending the process, timers of the program may still fire and log into
    // the run being finished for it; those calls are let go instead of turning into a second crash.
    if (error?._tag === "RunFinished" && shuttingDown) return
    throwIf(error)
  }

  /** Tells the server the run is about to be stopped by its scheduler. */
  markPreempting(): void {
    throwIf(this.core.markPreempting())
  }

  /** Finishes the run; later calls return the same result. */
  finish(options?: FinishOptions): Promise<FinishResult> {
    if (this.finishing !== undefined) return this.finishing
    this.finishing = holdingProcess(async () => {
      live.delete(this)
      if (current === this) current = undefined
      try {
        return await run(this.effectRun.finish(options))
      } finally {
        await Effect.runPromise(Scope.close(this.scope, Exit.void))
        inFlight.delete(finishing)
        if (live.size === 0 && inFlight.size === 0) uninstallProcessHooks()
      }
    })
    const finishing = this.finishing
    inFlight.add(finishing)
    return finishing
  }
}

// -----------------------------------------------------------------------------
// runs of this process and the process hooks that finish forgotten ones
// -----------------------------------------------------------------------------

const live = new Set<Run>()
// Finishes under way: a crash or a signal must wait for them too before the process exits.
const inFlight = new Set<Promise<FinishResult>>()
let current: Run | undefined
let shuttingDown = false

// When the process is ending on its own (a crash, a signal, an empty event loop) a finish waits for the
// server at most this long; whatever is not sent by then stays on disk for `wandb-effect sync`.
const SHUTDOWN_FINISH_TIMEOUT = Duration.seconds(10)
const IDLE_FINISH_TIMEOUT = Duration.seconds(60)

const finishAll = (exitCode: number, timeout?: Duration.Duration) =>
  Promise.allSettled([...[...live].map((r) => r.finish({ exitCode, timeout })), ...inFlight])

const onBeforeExit = () => {
  if (live.size > 0) void finishAll(0, IDLE_FINISH_TIMEOUT)
}

// `process.exit()` leaves no time to wait for anything: each run still writes its rows and its exit record.
const onExit = (code: number) => {
  for (const r of live) finishOnExit(r.effectRun, typeof process.exitCode === "number" ? process.exitCode : code)
}

const onUncaughtException = (error: unknown) => {
  // Only when nothing else handles the exception do we stand in for Node's default: report it, finish the
  // runs as failed, and exit 1. With other listeners present the program has chosen to carry on.
  if (process.listenerCount("uncaughtException") > 1) return
  process.stderr.write(`${error instanceof Error ? error.stack ?? String(error) : String(error)}\n`)
  shuttingDown = true
  void finishAll(1, SHUTDOWN_FINISH_TIMEOUT).then(() => process.exit(1))
}

const onSignal = (signal: "SIGINT" | "SIGTERM") => {
  // A program with a handler of its own has chosen what a signal means (finish the epoch, say); its runs
  // are left to it.
  if (process.listenerCount(signal) > 1) return
  if (signal === "SIGTERM") for (const r of live) r.markPreempting()
  shuttingDown = true
  void finishAll(255, SHUTDOWN_FINISH_TIMEOUT).then(() => process.exit(signal === "SIGINT" ? 130 : 143))
}
const onSigint = () => onSignal("SIGINT")
const onSigterm = () => onSignal("SIGTERM")

let hooksInstalled = false

const processHooks: ReadonlyArray<readonly [string, (...args: Array<any>) => void]> = [
  ["beforeExit", onBeforeExit],
  ["exit", onExit],
  ["uncaughtException", onUncaughtException],
  ["SIGINT", onSigint],
  ["SIGTERM", onSigterm]
]

const installProcessHooks = () => {
  if (hooksInstalled) return
  hooksInstalled = true
  for (const [event, hook] of processHooks) process.on(event, hook)
}

const uninstallProcessHooks = () => {
  if (!hooksInstalled) return
  hooksInstalled = false
  for (const [event, hook] of processHooks) process.off(event, hook)
}

/**
 * Starts a run. With a run of this process still live, `reinit` decides: by default the live run is
 * returned; `"finish_previous"` finishes every live run first; `"create_new"` starts another run beside
 * it without making it the current one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const init = async (options?: InitOptions): Promise<Run> => {
  const reinit = options?.reinit ?? options?.settings?.reinit ?? "default"
  if (live.size > 0 && options?.mode !== "disabled") {
    if (reinit === "finish_previous" || reinit === true) await finishAll(0)
    else if (reinit !== "create_new") {
      const previous = current ?? [...live].at(-1)!
      process.stderr.write(`wandb: reinit is "${String(reinit)}", so the live run ${previous.id} is returned.\n`)
      return previous
    }
  }

  const scope = Effect.runSync(Scope.make())
  const effectRun = await run(initEffect(options).pipe(Scope.extend(scope))).catch(async (error) => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  })
  const created = new Run(effectRun, coreOf(effectRun)!, scope)
  if (effectRun.mode !== "disabled") {
    live.add(created)
    installProcessHooks()
  }
  if (reinit !== "create_new") current = created
  return created
}

const requireCurrent = (method: string): Run => {
  if (current === undefined) throw new Error(`You must call wandb.init() before wandb.${method}()`)
  return current
}

/**
 * Logs to the current run.
 *
 * @since 0.1.0
 * @category members
 */
export const log = (data: Record<string, unknown>, options?: LogOptions): void =>
  requireCurrent("log").log(data, options)

/**
 * Finishes the current run, if there is one.
 *
 * @since 0.1.0
 * @category members
 */
export const finish = (options?: FinishOptions): Promise<FinishResult | undefined> =>
  current === undefined ? Promise.resolve(undefined) : current.finish(options)

/**
 * The current run's config.
 *
 * @since 0.1.0
 * @category members
 */
export const config = {
  get: () => requireCurrent("config.get").config.get(),
  update: (values: Record<string, unknown>, options?: ConfigUpdateOptions): void =>
    requireCurrent("config.update").config.update(values, options)
}

/**
 * The current run's summary.
 *
 * @since 0.1.0
 * @category members
 */
export const summary = {
  get: () => requireCurrent("summary.get").summary.get(),
  update: (values: Record<string, unknown>) => requireCurrent("summary.update").summary.update(values)
}

/**
 * The current run: the latest one started without `reinit: "create_new"` and not yet finished.
 *
 * @since 0.1.0
 * @category members
 */
export const currentRun = (): Run | undefined => current

const wandb = { init, log, finish, config, summary, currentRun, Run }

export default wandb
