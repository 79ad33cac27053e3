/**
 * `sync`: replays offline runs, and online runs that did not finish sending, through the same sender a
 * live run uses. A run is marked synced (`run-<id>.wandb.synced`) only once the server confirmed every
 * record, its files and its completion; a marked run is skipped, so syncing twice sends nothing twice.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { CredentialsMissing } from "../domain/Errors.js"
import * as Settings from "../domain/Settings.js"
import * as WireFormat from "../domain/WireFormat.js"
import { Credentials, requireWellFormed } from "../layers/Credentials.js"
import { retryOptions, ServerApi } from "../layers/ServerApi.js"
import { SettingsSources } from "../layers/SettingsSources.js"
import * as Replay from "./Replay.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface SyncOptions {
  readonly entity?: string | undefined
  readonly project?: string | undefined
  /** Sync runs already marked synced again (the server skips the history lines it has). */
  readonly includeSynced?: boolean | undefined
  /** Called while a run uploads, with the share of its log the server has. */
  readonly onProgress?: ((log: string, fraction: number) => void) | undefined
}

/**
 * What sync did with one run.
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncOutcome {
  readonly log: string
  readonly status: "synced" | "skipped" | "failed"
  readonly runId: string | undefined
  readonly url: string | undefined
  readonly historyLines: number
  /** What cut the log short, when something did; every record before it was sent. */
  readonly cut: string | undefined
  readonly error: string | undefined
}

const isRunLog = (name: string) => /\.wandb$/.test(name)

/**
 * The logs that paths name: a `.wandb` file itself; every `.wandb` in a run directory; every run directory
 * in a wandb directory. With no path, the `wandb/` (or `.wandb/`) directory under `cwd`.
 *
 * @since 0.1.0
 * @category discovery
 */
export const discover = (paths: ReadonlyArray<string>, cwd: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const logsIn = (dir: string) =>
      fs.readDirectory(dir).pipe(
        Effect.map((names) => names.filter(isRunLog).sort().map((name) => path.join(dir, name))),
        Effect.orElseSucceed(() => [] as Array<string>)
      )

    let roots = paths.map((p) => path.resolve(cwd, p))
    if (roots.length === 0) {
      const dot = path.join(cwd, ".wandb")
      roots = [(yield* fs.exists(dot).pipe(Effect.orElseSucceed(() => false))) ? dot : path.join(cwd, "wandb")]
    }

    const found: Array<string> = []
    const missing: Array<string> = []
    for (const root of roots) {
      if (paths.length > 0 && !(yield* fs.exists(root).pipe(Effect.orElseSucceed(() => false)))) {
        missing.push(root)
        continue
      }
      if (isRunLog(root)) {
        found.push(root)
        continue
      }
      const direct = yield* logsIn(root)
      if (direct.length > 0) {
        found.push(...direct)
        continue
      }
      const children = yield* fs.readDirectory(root).pipe(Effect.orElseSucceed(() => [] as Array<string>))
      for (const child of children.sort()) {
        if (!/^(offline-)?run-/.test(child)) continue
        found.push(...(yield* logsIn(path.join(root, child))))
      }
    }
    return { logs: [...new Set(found)], missing }
  })

const connectFromSettings = Effect.gen(function*() {
  const loaded = yield* (yield* SettingsSources).load
  const resolved = Settings.resolve(loaded.machine, loaded.sources, loaded.violations)
  if (resolved._tag === "Left") return yield* Effect.fail(resolved.left)
  const settings = resolved.right
  const credential = yield* (yield* Credentials).find(settings)
  if (Option.isNone(credential)) {
    return yield* Effect.fail(new CredentialsMissing({ baseUrl: settings.baseUrl.value }))
  }
  yield* requireWellFormed(credential.value)
  const client = (yield* ServerApi).connect({
    baseUrl: settings.baseUrl.value,
    apiKey: credential.value.key,
    username: settings.username.value,
    ...retryOptions(Settings.values(settings))
  })
  return { client, settings: Settings.values(settings), cwd: loaded.cwd }
})

/**
 * Syncs the runs under `paths` and reports each one. Fails only when no connection can be made at all
 * (no or a malformed API key); a run that fails is reported and the others still go.
 *
 * @since 0.1.0
 * @category programs
 */
export const sync = (paths: ReadonlyArray<string> | string = [], options: SyncOptions = {}) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { client, cwd, settings } = yield* connectFromSettings
    const { logs, missing } = yield* discover(typeof paths === "string" ? [paths] : paths, cwd)
    const platform = Replay.currentPlatform()

    // A path that names nothing is a failure, not "nothing to do": it is most likely a typo.
    const outcomes: Array<SyncOutcome> = missing.map((log) => ({
      log,
      status: "failed",
      runId: undefined,
      url: undefined,
      historyLines: 0,
      cut: undefined,
      error: "no such file or directory"
    }))
    for (const log of logs) {
      const marker = `${log}.synced`
      if (options.includeSynced !== true && (yield* fs.exists(marker).pipe(Effect.orElseSucceed(() => false)))) {
        outcomes.push({
          log,
          status: "skipped",
          runId: undefined,
          url: undefined,
          historyLines: 0,
          cut: undefined,
          error: undefined
        })
        continue
      }

      const status = Replay.initialStatus()
      const size = yield* fs.stat(log).pipe(Effect.map((info) => Number(info.size)), Effect.orElseSucceed(() => 0))
      const report = options.onProgress === undefined ? Effect.void : Effect.forever(
        Effect.zipRight(
          Effect.sync(() => options.onProgress!(log, size === 0 ? 1 : Math.min(1, status.offsetAcknowledged / size))),
          Effect.sleep("200 millis")
        )
      )
      const result = yield* Replay.replay({
        logPath: log,
        filesDir: path.join(path.dirname(log), "files"),
        client,
        follow: false,
        transmitInterval: Duration.zero,
        pollInterval: Duration.millis(10),
        overrides: { entity: options.entity, project: options.project },
        platform,
        writeFinalFiles: true,
        status
      }).pipe(Effect.raceFirst(Effect.zipRight(report, Effect.never)), Effect.either)

      if (result._tag === "Left") {
        outcomes.push({
          log,
          status: "failed",
          runId: undefined,
          url: undefined,
          historyLines: status.historyAcknowledged,
          cut: undefined,
          error: result.left.message
        })
        continue
      }
      const done = result.right
      yield* fs.writeFileString(marker, "").pipe(Effect.ignore)
      outcomes.push({
        log,
        status: "synced",
        runId: done.run.runId,
        url: WireFormat.runUrl(settings.baseUrl, done.run.entity, done.run.project, done.run.runId),
        historyLines: done.historyLines,
        cut: Option.match(done.damage, { onNone: () => undefined, onSome: (damage) => damage.message }),
        error: undefined
      })
    }
    return outcomes
  }).pipe(Effect.withSpan("Wandb.sync"))

/**
 * One line per run, as the command line prints them.
 *
 * @since 0.1.0
 * @category rendering
 */
export const describeOutcome = (outcome: SyncOutcome): string => {
  switch (outcome.status) {
    case "skipped":
      return `${outcome.log}: already synced, skipped`
    case "failed":
      return `${outcome.log}: FAILED after ${outcome.historyLines} history rows: ${outcome.error}`
    case "synced": {
      const cut = outcome.cut === undefined ? "" : ` (the log was cut: ${outcome.cut}; completed as failed)`
      return `${outcome.log}: synced; the server has ${outcome.historyLines} history rows at ${outcome.url}${cut}`
    }
  }
}
