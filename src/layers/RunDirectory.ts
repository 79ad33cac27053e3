/**
 * The run directory: `<dir>/wandb/offline-run-YYYYMMDD_HHMMSS-<id>` (or `run-…` online) with `files/`,
 * `logs/` and `tmp/code/`, the relative `latest-run`, `debug.log` and `debug-internal.log` links, and
 * the run's `logs/debug.log`.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { DirectoryNotWritable, StorageError } from "../domain/Errors.js"

/**
 * The paths of one run.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunPaths {
  readonly root: string
  readonly wandbDir: string
  readonly runDir: string
  readonly filesDir: string
  readonly logsDir: string
  readonly transactionLog: string
  readonly debugLog: string
}

/**
 * What a run directory is made from.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunDirectoryRequest {
  /** The root (`dir`), absolute or relative to the working directory. */
  readonly root: string
  readonly runId: string
  readonly offline: boolean
  readonly startTime: Date
  readonly useDotWandb: boolean | undefined
  readonly symlink: boolean
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RunDirectory extends Context.Tag("wandb-effect/RunDirectory")<RunDirectory, {
  readonly create: (request: RunDirectoryRequest) => Effect.Effect<RunPaths, DirectoryNotWritable>
  /** Appends lines to the run's `logs/debug.log`, each with a timestamp and level. */
  readonly debug: (paths: RunPaths, level: "INFO" | "WARNING" | "ERROR", message: string) => Effect.Effect<void>
  readonly writeFile: (path: string, content: string) => Effect.Effect<void, StorageError>
}>() {}

const pad = (n: number, width = 2) => String(n).padStart(width, "0")

/**
 * `YYYYMMDD_HHMMSS` in local time, the stamp of run directory names.
 *
 * @since 0.1.0
 * @category formatting
 */
export const timespec = (date: Date): string =>
  `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}_` +
  `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`

const stamp = (date: Date): string =>
  `${timespec(date).replace("_", " ")}.${pad(date.getMilliseconds(), 3)}`

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path

  const notWritable = (at: string) => (error: { readonly message: string }) =>
    new DirectoryNotWritable({ path: at, reason: error.message })

  // Links are replaced atomically: made beside the old one under a temporary name, then renamed over it.
  // A platform without symlinks simply has none; the run does not depend on them.
  const replaceLink = (wandbDir: string, name: string, target: string) => {
    const link = path.join(wandbDir, name)
    const temporary = `${link}.${process.pid}`
    return fs.remove(temporary).pipe(
      Effect.ignore,
      Effect.zipRight(fs.symlink(target, temporary)),
      Effect.zipRight(fs.rename(temporary, link)),
      Effect.ignore
    )
  }

  const create = (request: RunDirectoryRequest) =>
    Effect.gen(function*() {
      const root = path.resolve(request.root)
      const useDot = request.useDotWandb ??
        (yield* fs.exists(path.join(root, ".wandb")).pipe(Effect.orElseSucceed(() => false)))
      const wandbDir = path.join(root, useDot ? ".wandb" : "wandb")
      yield* fs.makeDirectory(wandbDir, { recursive: true }).pipe(Effect.mapError(notWritable(root)))

      // Two runs with one id in one second get `-1`, `-2`…: a plain mkdir claims the name atomically.
      const base = `${request.offline ? "offline-run" : "run"}-${timespec(request.startTime)}-${request.runId}`
      let name = base
      for (let suffix = 1;; suffix++) {
        const made = yield* fs.makeDirectory(path.join(wandbDir, name)).pipe(
          Effect.as(true),
          Effect.catchIf(
            (error) => error._tag === "SystemError" && error.reason === "AlreadyExists",
            () => Effect.succeed(false)
          ),
          Effect.mapError(notWritable(wandbDir))
        )
        if (made) break
        name = `${base}-${suffix}`
      }

      const runDir = path.join(wandbDir, name)
      const paths: RunPaths = {
        root,
        wandbDir,
        runDir,
        filesDir: path.join(runDir, "files"),
        logsDir: path.join(runDir, "logs"),
        transactionLog: path.join(runDir, `run-${request.runId}.wandb`),
        debugLog: path.join(runDir, "logs", "debug.log")
      }
      for (const dir of [paths.filesDir, paths.logsDir, path.join(runDir, "tmp", "code")]) {
        yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(notWritable(runDir)))
      }
      yield* fs.writeFileString(paths.debugLog, "").pipe(Effect.mapError(notWritable(paths.logsDir)))
      // Kept empty: this client has no separate internal process, but the official layout links to it.
      yield* fs.writeFileString(path.join(paths.logsDir, "debug-internal.log"), "").pipe(Effect.ignore)

      if (request.symlink) {
        yield* replaceLink(wandbDir, "latest-run", name)
        yield* replaceLink(wandbDir, "debug.log", path.join(name, "logs", "debug.log"))
        yield* replaceLink(wandbDir, "debug-internal.log", path.join(name, "logs", "debug-internal.log"))
      }
      return paths
    }).pipe(Effect.withSpan("RunDirectory.create"))

  const debug = (paths: RunPaths, level: "INFO" | "WARNING" | "ERROR", message: string) =>
    fs.writeFileString(paths.debugLog, `${stamp(new Date())} ${level.padEnd(7)} ${message}\n`, { flag: "a" }).pipe(
      Effect.ignore
    )

  const writeFile = (file: string, content: string) =>
    fs.writeFileString(file, content).pipe(
      Effect.mapError((error) => new StorageError({ path: file, operation: "write", reason: error.message }))
    )

  return RunDirectory.of({ create, debug, writeFile })
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RunDirectory, never, FileSystem.FileSystem | Path.Path> = Layer.effect(
  RunDirectory,
  make
)
