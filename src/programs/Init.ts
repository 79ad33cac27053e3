/**
 * `init`: resolves settings, prepares the run directory and transaction log, starts the writer fiber and
 * hands back a `Run` whose finish is tied to the caller's scope.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import {
  ConfigFileError,
  CredentialsMissing,
  DirectoryNotWritable,
  FinishTimeout,
  ResumeError,
  RunIdInUse,
  type InitError,
  InitTimeout,
  InvalidArgument,
  InvalidSettings,
  SettingViolation,
  StorageError
} from "../domain/Errors.js"
import * as ExtendedJson from "../domain/ExtendedJson.js"
import * as Footer from "../domain/Footer.js"
import * as InitOptions from "../domain/InitOptions.js"
import * as Records from "../domain/Records.js"
import * as ResumeDecision from "../domain/ResumeDecision.js"
import * as RunConfig from "../domain/RunConfig.js"
import * as RunId from "../domain/RunId.js"
import * as Settings from "../domain/Settings.js"
import * as WireFormat from "../domain/WireFormat.js"
import type { Record as LogRecord, RunRecord } from "../internal/proto/wandb_internal_pb.js"
import { type RunEvent, RunCore } from "../internal/runCore.js"
import { ConsoleCapture } from "../layers/ConsoleCapture.js"
import { type Credential, Credentials, requireWellFormed } from "../layers/Credentials.js"
import { RunDirectory, type RunPaths } from "../layers/RunDirectory.js"
import { retryOptions, ServerApi, type ServerClient, type UpsertedRun } from "../layers/ServerApi.js"
import { SettingsSources } from "../layers/SettingsSources.js"
import { SystemMonitor } from "../layers/SystemMonitor.js"
import { type LogWriter, TransactionLog } from "../layers/TransactionLog.js"
import * as Replay from "./Replay.js"
import type { FinishOptions, FinishResult, Run } from "./Run.js"

/**
 * The services `init` needs; `Wandb.layer` provides them on Node.
 *
 * @since 0.1.0
 * @category models
 */
export type WandbEnv =
  | SettingsSources
  | ConsoleCapture
  | SystemMonitor
  | Credentials
  | ServerApi
  | RunDirectory
  | TransactionLog
  | FileSystem.FileSystem
  | Path.Path

const runCores = new WeakMap<Run, RunCore>()
const exitNow = new WeakMap<Run, (exitCode: number) => void>()

/**
 * Finishes a run synchronously, as far as that can go, when the process is exiting under it.
 *
 * @internal
 */
export const finishOnExit = (run: Run, exitCode: number): void => exitNow.get(run)?.(exitCode)

// Two live runs of one process must not share an id: both would append to one run on the server. A run's
// id is free again once it finished.
const liveRunIds = new Set<string>()

/**
 * The synchronous core behind a run, for the Promise facade's hot path.
 *
 * @internal
 */
export const coreOf = (run: Run): RunCore | undefined => runCores.get(run)

// -----------------------------------------------------------------------------
// settings and config
// -----------------------------------------------------------------------------

interface Prepared {
  readonly settings: Settings.SettingsWithProvenance
  readonly config: RunConfig.ConfigValues
  readonly cwd: string
  readonly filesRead: ReadonlyArray<string>
}


const readConfigFile = (fs: FileSystem.FileSystem, path: Path.Path, file: string, cwd: string) =>
  fs.readFileString(path.resolve(cwd, file)).pipe(
    Effect.mapError((error) =>
      new ConfigFileError({
        path: file,
        reason: error._tag === "SystemError" && error.reason === "NotFound"
          ? "the file does not exist"
          : error._tag === "SystemError" && error.reason === "BadResource"
          ? "is not a readable file"
          : error.message
      })
    ),
    Effect.flatMap((text) => {
      const parsed = RunConfig.fromYaml(text)
      return parsed.ok
        ? Effect.succeed(parsed.values)
        : Effect.fail(new ConfigFileError({ path: file, reason: parsed.reason }))
    })
  )

const prepare = (options: unknown) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const loaded = yield* (yield* SettingsSources).load
    const decoded = InitOptions.decode(options)
    const violations: Array<SettingViolation> = [...loaded.violations, ...decoded.violations]

    let config: RunConfig.ConfigValues = {}
    const input = decoded.config
    if (typeof input === "string") {
      const fromFile = yield* readConfigFile(fs, path, input, loaded.cwd).pipe(Effect.either)
      if (fromFile._tag === "Right") config = fromFile.right
      else {
        violations.push(
          new SettingViolation({ setting: "config", source: "init-argument", reason: fromFile.left.message })
        )
      }
    } else if (Array.isArray(input)) {
      config = RunConfig.fromArgv(input as ReadonlyArray<string>)
    } else if (input !== undefined) {
      config = RunConfig.fromObject(input as Record<string, unknown>)
    }
    config = RunConfig.filterKeys(config, decoded.configIncludeKeys, decoded.configExcludeKeys)

    const resolved = Settings.resolve(
      loaded.machine,
      [...loaded.sources, decoded.initSettings, decoded.initArguments],
      violations
    )
    if (resolved._tag === "Left") return yield* Effect.fail(resolved.left)
    let settings = resolved.right

    // magic captures the program's command-line flags; values given in `config` win over them.
    if (settings.magic.value) config = { ...RunConfig.fromArgv(process.argv.slice(2)), ...config }

    const size = ExtendedJson.stringify(config).length
    if (size > RunConfig.MAX_CONFIG_BYTES) {
      return yield* Effect.fail(
        new InvalidSettings({
          violations: [
            new SettingViolation({
              setting: "config",
              source: "init-argument",
              reason: `is ${size} bytes as JSON; W&B accepts at most ${RunConfig.MAX_CONFIG_BYTES}`
            })
          ]
        })
      )
    }

    if (settings.project.value === undefined) {
      settings = Settings.override(settings, "project", yield* inferProject(loaded.cwd), "inferred")
    }
    return { settings, config, cwd: loaded.cwd, filesRead: loaded.filesRead } satisfies Prepared
  })

// The project defaults to the name of the git repository the program runs in, else "uncategorized",
// as in the official client.
const inferProject = (cwd: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    let dir = path.resolve(cwd)
    for (;;) {
      if (yield* fs.exists(path.join(dir, ".git")).pipe(Effect.orElseSucceed(() => false))) {
        const name = path.basename(dir)
        const relative = path.relative(dir, cwd)
        return relative === "" ? name : `${name}-${relative.split(path.sep).join("_")}`
      }
      const parent = path.dirname(dir)
      if (parent === dir) return "uncategorized"
      dir = parent
    }
  })

// -----------------------------------------------------------------------------
// the auto-resume file
// -----------------------------------------------------------------------------

const RESUME_FILE = "wandb-resume.json"

const resumeFileOf = (cwd: string, values: Settings.Settings) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const root = path.resolve(cwd, values.dir)
    const useDot = values.useDotWandb ??
      (yield* fs.exists(path.join(root, ".wandb")).pipe(Effect.orElseSucceed(() => false)))
    return path.join(root, useDot ? ".wandb" : "wandb", RESUME_FILE)
  })

// A missing or unreadable file means no remembered id, as in the official client.
const readResumeFile = (file: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(Effect.option)
    if (text._tag === "None") return undefined
    try {
      const parsed = JSON.parse(text.value) as { run_id?: unknown }
      return typeof parsed.run_id === "string" && parsed.run_id !== "" ? parsed.run_id : undefined
    } catch {
      return undefined
    }
  })

const writeResumeFile = (file: string, runId: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(path.dirname(file), { recursive: true })
    yield* fs.writeFileString(file, JSON.stringify({ run_id: runId }))
  }).pipe(Effect.mapError((error) => new DirectoryNotWritable({ path: file, reason: error.message })))

const removeFile = (file: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.remove(file).pipe(Effect.ignore))

// -----------------------------------------------------------------------------
// printing
// -----------------------------------------------------------------------------

interface Printer {
  readonly info: (line: string) => Effect.Effect<void>
  readonly essential: (line: string) => Effect.Effect<void>
  readonly warn: (line: string) => Effect.Effect<void>
}

// The console is captured when the run starts, so lines printed later from the synchronous core (a
// dropped-row warning inside `log`) go where the caller's `Console` sends them.
const makePrinter = (settings: Settings.Settings, console: Console.Console): Printer => {
  const print = (line: string) => (settings.silent ? Effect.void : console.error(`wandb: ${line}`))
  return {
    info: (line) => (settings.quiet ? Effect.void : print(line)),
    essential: print,
    warn: (line) => print(`WARNING ${line}`)
  }
}

// -----------------------------------------------------------------------------
// the run
// -----------------------------------------------------------------------------

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>): number =>
  Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 255 : 1

// Each batch of history rows is followed by one summary record with the latest value of every key the
// rows carried, as wandb-core follows each row with its derived summary; one per batch keeps the log small.
const eventRecords = (runId: string, events: ReadonlyArray<RunEvent>): Array<LogRecord> => {
  const records: Array<LogRecord> = []
  let derived: Record<string, unknown> | undefined
  const closeBatch = () => {
    if (derived !== undefined) records.push(Records.summary(runId, derived))
    derived = undefined
  }
  for (const event of events) {
    if (event._tag !== "History") closeBatch()
    switch (event._tag) {
      case "History": {
        records.push(Records.history(runId, event.row, event.runtime))
        derived ??= {}
        Object.assign(derived, event.row.values)
        derived["_step"] = event.row.step
        derived["_runtime"] = event.runtime
        derived["_timestamp"] = event.row.timestamp
        break
      }
      case "Summary":
        records.push(Records.summary(runId, event.set, event.removed))
        break
      case "Config":
        records.push(Records.config(runId, event.changed))
        break
      case "Preempting":
        records.push(Records.preempting(runId))
        break
      case "Stats":
        records.push(Records.stats(runId, event.timestamp, event.metrics))
        break
      case "Output":
        records.push(Records.outputRaw(runId, event.stream, event.text, event.timestamp))
        break
    }
  }
  closeBatch()
  return records
}

interface Journal {
  readonly write: (records: ReadonlyArray<LogRecord>) => Effect.Effect<void>
  /** Numbers, appends and writes at once, from synchronous code. */
  readonly writeNow: (records: ReadonlyArray<LogRecord>) => StorageError | undefined
  readonly flush: Effect.Effect<void, StorageError>
  readonly sync: Effect.Effect<void, StorageError>
  readonly writer: LogWriter
}

// Numbers records 1, 2, 3… in the order they reach the log; the writer fiber, the backlog drain and finish
// share it.
const makeJournal = (writer: LogWriter, recent: Replay.RecentRecords | undefined): Journal => {
  let num = 0n
  const number = (records: ReadonlyArray<LogRecord>) => {
    for (const record of records) record.num = ++num
  }
  // Online, what is written is also kept briefly in memory for the sender.
  const onFramed = recent === undefined
    ? undefined
    : (record: LogRecord, start: number, end: number) => recent.add(start, end, record)
  return {
    write: (records) =>
      Effect.suspend(() => {
        number(records)
        return writer.append(records, onFramed)
      }),
    writeNow: (records) => {
      number(records)
      return writer.appendAndFlushSync(records, onFramed)
    },
    flush: writer.flush,
    sync: writer.sync,
    writer
  }
}

/**
 * Starts a run. Its finish is registered in the current scope: the scope closing finishes the run with
 * exit code 0 on success, 1 on failure and 255 on interruption.
 *
 * @since 0.1.0
 * @category constructors
 */
export const init = (
  options?: InitOptions.InitOptions
): Effect.Effect<Run, InitError, Scope.Scope | WandbEnv> =>
  Effect.acquireRelease(
    start(options),
    (run, exit) => run.finish({ exitCode: exitCodeOf(exit) }).pipe(Effect.ignoreLogged)
  ).pipe(Effect.withSpan("Wandb.init"))

const start = (options: InitOptions.InitOptions | undefined) =>
  Effect.gen(function*() {
    const prepared = yield* prepare(options)
    const values = Settings.values(prepared.settings)
    const printer = makePrinter(values, yield* Console.consoleWith(Effect.succeed))
    const startTime = new Date()

    if (prepared.filesRead.length > 0) yield* printer.info(`Loading settings from ${prepared.filesRead.join(", ")}`)

    let settings = prepared.settings
    let mode = values.mode
    let credentials: Option.Option<Credential> = Option.none()
    if (mode === "online") {
      credentials = yield* (yield* Credentials).find(settings)
      if (Option.isNone(credentials)) {
        if (values.force) return yield* Effect.fail(new CredentialsMissing({ baseUrl: values.baseUrl }))
        yield* printer.essential(
          `No API key is configured for ${values.baseUrl}; this run is saved offline. ` +
            `Sync it later with \`wandb-effect sync\`, or set WANDB_API_KEY.`
        )
        mode = "offline"
        settings = Settings.override(settings, "mode", "offline", "fallback: no API key")
      } else {
        yield* requireWellFormed(credentials.value)
      }
    }
    // Not yet: resumeFrom and forkFrom are validated, but an online run never rewinds or forks.
    // Not yet: syncTensorboard, monitorGym and saveCode are validated and have no effect.
    if (values.resume !== undefined && mode === "offline") {
      yield* printer.warn(`resume "${values.resume}" is ignored since this run is offline.`)
    }

    const resumeFile = mode === "disabled" ? undefined : yield* resumeFileOf(prepared.cwd, values)
    let runId = values.id
    if (values.resume === "auto" && resumeFile !== undefined) {
      const remembered = yield* readResumeFile(resumeFile)
      if (remembered !== undefined && runId !== undefined && remembered !== runId) {
        yield* printer.warn(`Ignoring run id ${remembered} from ${resumeFile}: the run id is set to ${runId}.`)
      }
      runId ??= remembered
    }
    if (runId === undefined) {
      runId = RunId.generate()
      settings = Settings.override(settings, "id", runId, "generated")
    } else if (values.id === undefined) {
      settings = Settings.override(settings, "id", runId, `resume file ${resumeFile}`)
    }
    // `resume: "auto"` remembers the id until a run with it ends well; a run without resume forgets it.
    if (resumeFile !== undefined) {
      if (values.resume === "auto") yield* writeResumeFile(resumeFile, runId)
      else if (values.resume === undefined) yield* removeFile(resumeFile)
    }

    const core = new RunCore({
      runId,
      startTimeMs: startTime.getTime(),
      startingStep: 0,
      config: prepared.config,
      allowValChange: values.allowValChange,
      recordEvents: mode !== "disabled",
      flushIntervalMs: values.flushInterval * 1000,
      warn: (message) => Effect.runSync(printer.warn(message))
    })

    const finalValues = Settings.values(settings)
    const base = {
      id: runId,
      name: finalValues.name,
      project: mode === "disabled" && finalValues.project === "uncategorized" ? "dummy" : finalValues.project!,
      entity: finalValues.entity ?? (mode === "disabled" ? "dummy" : ""),
      mode,
      url: undefined,
      resumed: false,
      startingStep: 0,
      settings
    }

    if (mode === "disabled") return makeDisabledRun(base, core)
    if (liveRunIds.has(runId)) return yield* Effect.fail(new RunIdInUse({ runId }))
    liveRunIds.add(runId)
    yield* Effect.addFinalizer(() => Effect.sync(() => liveRunIds.delete(runId)))
    if (Option.isNone(credentials)) return yield* startLocal(base, core, finalValues, printer, startTime, prepared.cwd)

    const online = yield* connect(base, core, finalValues, credentials.value, startTime, printer)
    const connected = {
      ...base,
      entity: online.upserted.entity,
      project: online.upserted.project,
      name: online.upserted.displayName ?? base.name,
      url: online.url,
      resumed: online.continuation !== undefined,
      startingStep: core.startingStep
    }
    return yield* startLocal(connected, core, finalValues, printer, startTime, prepared.cwd, online)
  })

interface Online {
  readonly client: ServerClient
  readonly upserted: UpsertedRun
  readonly continuation: ResumeDecision.Continuation | undefined
  readonly url: string
}

// Creating the run on the server is all init waits on the network for, and all of it shares the init
// timeout: the account check (which also tells a rejected key from a server problem), then the upsert.
const connect = (
  base: RunBase,
  core: RunCore,
  values: Settings.Settings,
  credential: Credential,
  startTime: Date,
  printer: Printer
) =>
  Effect.gen(function*() {
    let phase = "checking the API key (Viewer)"
    let lastError: string | undefined
    const client = (yield* ServerApi).connect({
      baseUrl: values.baseUrl,
      apiKey: credential.key,
      username: values.username,
      ...retryOptions(values),
      // Failed attempts are retried until the init timeout; the last one says why init gave up.
      onRetry: (operation, reason) => (lastError = `${operation}: ${reason}`)
    })
    const remember = <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.tapError(effect, (error) => Effect.sync(() => (lastError = error.message)))

    const handshake = Effect.gen(function*() {
      const viewer = yield* remember(client.viewer)
      const entity = values.entity ?? viewer.entity

      let continuation: ResumeDecision.Continuation | undefined
      if (values.resume !== undefined) {
        phase = "checking whether the run exists (RunResumeStatus)"
        const stored = yield* remember(client.runResumeStatus({ entity, project: base.project, runId: base.id }))
        const decision = ResumeDecision.decide(values.resume, stored)
        if (decision._tag === "Refuse") {
          return yield* Effect.fail(
            new ResumeError({ reason: decision.reason, runId: base.id, entity: entity ?? "", project: base.project })
          )
        }
        if (decision._tag === "Resume") {
          continuation = decision.from
          core.continueFrom(decision.from)
        }
      }

      phase = "creating the run (UpsertBucket)"
      const info = runInfo(base, values, core, startTime, entity)
      const input = Replay.upsertInput(Records.run(info).recordType.value as RunRecord, core.config, platform())
      // A resumed run keeps its tags and notes unless this init gives new ones, as in the official client.
      const upserted = yield* remember(client.upsertBucket(
        continuation === undefined ? input : {
          ...input,
          id: continuation.storageId,
          tags: values.tags ?? continuation.tags,
          notes: values.notes ?? continuation.notes
        }
      ))
      return { upserted, continuation }
    })

    const timeoutMillis = Math.round(values.initTimeout * 1000)
    // A slow server is said once, with why, rather than waited on in silence.
    const waitingNote = Effect.sleep("5 seconds").pipe(
      Effect.zipRight(Effect.suspend(() =>
        printer.essential(
          `Waiting for ${values.baseUrl} (${phase}${lastError === undefined ? "" : `; last error: ${lastError}`}); ` +
            `giving up after ${values.initTimeout} s.`
        )
      )),
      Effect.zipRight(Effect.never)
    )
    // init runs inside acquireRelease's uninterruptible acquire; the network wait alone is made
    // interruptible, or the timeout could not stop it.
    const { continuation, upserted } = yield* Effect.raceFirst(handshake, waitingNote).pipe(
      Effect.interruptible,
      Effect.timeoutFail({
        duration: Duration.millis(timeoutMillis),
        onTimeout: () => new InitTimeout({ phase, timeoutMillis, ...(lastError === undefined ? {} : { lastError }) })
      })
    )
    return {
      client,
      upserted,
      continuation,
      url: WireFormat.runUrl(values.baseUrl, upserted.entity, upserted.project, upserted.runId)
    } satisfies Online
  }).pipe(Effect.withSpan("Wandb.connect"))

const platform = Replay.currentPlatform

const runInfo = (
  base: RunBase,
  values: Settings.Settings,
  core: RunCore,
  startTime: Date,
  entity: string | undefined
): Records.RunInfo => ({
  runId: base.id,
  entity,
  project: base.project,
  displayName: base.name,
  group: values.group,
  jobType: values.jobType,
  notes: values.notes,
  tags: values.tags ?? [],
  host: values.host,
  startTime,
  config: core.config,
  startingStep: core.startingStep,
  resumed: base.resumed,
  gitRemoteUrl: values.gitRemoteUrl,
  gitCommit: values.gitCommit
})

type RunBase = Pick<
  Run,
  "id" | "name" | "project" | "entity" | "mode" | "url" | "resumed" | "startingStep" | "settings"
>

const configMembers = (
  core: RunCore,
  readFile: (file: string) => Effect.Effect<RunConfig.ConfigValues, ConfigFileError>
) => ({
  get: Effect.sync(() => core.config),
  update: (values: InitOptions.ConfigInput, options?: { readonly allowValChange?: boolean | undefined }) =>
    Effect.gen(function*() {
      const parsed = typeof values === "string" ? yield* readFile(values) : RunCore.configFromInput(values)
      if (parsed instanceof InvalidArgument || parsed instanceof ConfigFileError) return yield* Effect.fail(parsed)
      const error = core.updateConfig(parsed, options?.allowValChange)
      if (error !== undefined) return yield* Effect.fail(error)
    })
})

const fromResult = <E>(error: E | undefined): Effect.Effect<void, E> =>
  error === undefined ? Effect.void : Effect.fail(error)

const makeDisabledRun = (base: RunBase, core: RunCore): Run => {
  // A disabled run keeps every member working in memory and never touches disk or network.
  const result: FinishResult = {
    runId: base.id,
    exitCode: 0,
    historyRows: 0,
    droppedRows: 0,
    runDir: undefined,
    url: undefined,
    synced: false
  }
  const run: Run = {
    ...base,
    dir: undefined,
    step: Effect.sync(() => core.step),
    log: (data, options) => Effect.suspend(() => fromResult(core.log(data, options))),
    config: configMembers(core, (file) => Effect.fail(new ConfigFileError({ path: file, reason: "disabled run" }))),
    summary: {
      get: Effect.sync(() => core.summary()),
      update: (values) => Effect.suspend(() => fromResult(core.updateSummary(values)))
    },
    finish: (options) =>
      Effect.sync(() => {
        core.flushHistory()
        return {
          ...result,
          exitCode: options?.exitCode ?? 0,
          historyRows: core.historyRows,
          droppedRows: core.droppedRows
        }
      }),
    markPreempting: Effect.void
  }
  runCores.set(run, core)
  return run
}

const startLocal = (
  base: RunBase,
  core: RunCore,
  values: Settings.Settings,
  printer: Printer,
  startTime: Date,
  cwd: string,
  online?: Online
) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const runDirectory = yield* RunDirectory
    const log = yield* TransactionLog
    const outer = yield* Effect.scope

    const paths = yield* runDirectory.create({
      root: path.resolve(cwd, values.dir),
      runId: base.id,
      offline: online === undefined,
      startTime,
      useDotWandb: values.useDotWandb,
      symlink: values.symlink
    })
    yield* runDirectory.debug(
      paths,
      "INFO",
      `wandb-effect ${Records.SDK_VERSION} starting run ${base.id} (${online === undefined ? "offline" : online.url})`
    )

    // The run's own resources live in a child scope, so an explicit finish releases them at once while the
    // caller's scope stays open.
    const runScope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
    const writer = yield* log.create(paths.transactionLog).pipe(
      Scope.extend(runScope),
      Effect.mapError((error) => new StorageError(error))
    )
    const recent = online === undefined ? undefined : new Replay.RecentRecords()
    const wake = yield* Queue.sliding<void>(1)
    const journal = makeJournal(writer, recent)

    const info = runInfo(base, values, core, startTime, online?.upserted.entity ?? values.entity)
    yield* journal.write([Records.header(base.id), Records.run(info)])
    yield* journal.flush

    // Online, the sender follows the log from the first record after the run record (the upsert in init
    // already created the run). It lives in the caller's scope: finish waits for it, bounded by its timeout,
    // after the writer's scope has put everything on disk.
    const status = Replay.initialStatus()
    const sender = online === undefined ? undefined : yield* Replay.replay({
      logPath: paths.transactionLog,
      filesDir: paths.filesDir,
      client: online.client,
      follow: true,
      writtenThrough: journal.writer.written,
      transmitInterval: Duration.seconds(values.fileStreamInterval),
      pollInterval: Duration.seconds(Math.min(values.flushInterval, 1)),
      started: {
        upserted: online.upserted,
        offset: writer.written(),
        config: core.config,
        startTime: startTime.getTime() / 1000
      },
      platform: platform(),
      recent,
      wake,
      status,
      onStopped: () => Effect.runFork(printer.essential(`Run ${base.id} was stopped from the W&B app.`)),
      onDroppedLine: (step, bytes) =>
        Effect.runFork(
          printer.warn(`The row at step ${step} is ${bytes} bytes, over the server's line limit; not sent.`)
        )
    }).pipe(Effect.interruptible, Effect.forkIn(outer))

    core.onBacklog = () => {
      // This runs inside the program's `log` call, which must never throw for the writer's sake.
      try {
        const error = journal.writeNow(eventRecords(base.id, core.drain()))
        if (error !== undefined) Effect.runFork(runDirectory.debug(paths, "ERROR", error.message))
      } catch (defect) {
        Effect.runFork(runDirectory.debug(paths, "ERROR", `backlog not written: ${String(defect)}`))
      }
    }
    const drainOnce = Effect.suspend(() => {
      core.drained(Date.now())
      return journal.write(eventRecords(base.id, core.drain()))
    }).pipe(Effect.zipRight(journal.flush))
    // A failed flush keeps its bytes buffered in the writer, so the next tick writes them again; and the
    // writer goes on whatever happens, since a stopped writer would lose everything logged after.
    yield* drainOnce.pipe(
      Effect.catchAllCause((cause) => runDirectory.debug(paths, "ERROR", Cause.pretty(cause))),
      Effect.repeat(Schedule.spaced(Duration.seconds(values.flushInterval))),
      Effect.interruptible,
      Effect.forkIn(runScope)
    )

    // Console output and system metrics go into the log like everything else; both stop with the run's
    // scope, before the footer is printed.
    if (values.console === "wrap") {
      yield* (yield* ConsoleCapture).capture((stream, text) => core.recordOutput(stream, text, Date.now() / 1000)).pipe(
        Scope.extend(runScope)
      )
    }
    if (!values.disableStats) {
      const monitor = yield* SystemMonitor
      yield* Effect.sleep(Duration.seconds(values.statsInterval)).pipe(
        Effect.zipRight(monitor.sample),
        Effect.tap((sample) => Effect.sync(() => core.recordStats(sample.timestamp, sample.metrics))),
        Effect.forever,
        Effect.interruptible,
        Effect.forkIn(runScope)
      )
    }

    yield* printer.info(`Tracking run with wandb-effect version ${Records.SDK_VERSION}`)
    yield* printer.info(`Run data is saved locally in ${paths.runDir}`)
    if (online === undefined) {
      yield* printer.info("Run is offline: nothing is sent until you sync it.")
    } else {
      yield* printer.essential(`Syncing run ${base.name ?? base.id}`)
      yield* printer.essential(`View run at ${online.url}`)
    }

    const finished = yield* Deferred.make<FinishResult, FinishTimeout | StorageError>()
    let finishing = false

    const performFinish = (options: FinishOptions | undefined) =>
      Effect.gen(function*() {
        const exitCode = options?.exitCode ?? 0
        core.flushHistory()
        const runtime = (Date.now() - core.startTimeMs) / 1000
        core.setSummaryLeaves({ _wandb: { runtime: Math.floor(runtime) }, _runtime: runtime })
        core.finished = true
        liveRunIds.delete(base.id)

        // The files come first: a live sender uploads them as soon as it reads the exit record. They can be
        // made again from the log, so failing to write them must not keep the exit record from it.
        yield* writeRunFiles(runDirectory, paths, core, values, startTime).pipe(
          Effect.provideService(Path.Path, path),
          Effect.catchAllCause((cause) =>
            printer.warn(`The run's files could not be written: ${Cause.squash(cause)}; the log has everything.`)
          )
        )
        yield* journal.write([
          ...eventRecords(base.id, core.drain()),
          Records.exit(base.id, exitCode, runtime),
          ...Records.closing(base.id)
        ])
        yield* journal.sync
        yield* Queue.offer(wake, undefined)
        yield* Scope.close(runScope, Exit.void)
        yield* runDirectory.debug(paths, "INFO", `run ${base.id} finished with exit code ${exitCode}`)
        if (exitCode === 0 && values.resume !== undefined) {
          yield* removeFile(path.join(paths.wandbDir, RESUME_FILE)).pipe(
            Effect.provideService(FileSystem.FileSystem, fs)
          )
        }

        let synced = false
        if (sender !== undefined) {
          const timeout = options?.timeout === undefined
            ? values.finishTimeout > 0 ? Duration.seconds(values.finishTimeout) : undefined
            : Duration.decode(options.timeout)
          // finish is uninterruptible, so an interrupted program (Ctrl-C) still completes its upload. Only the
          // finish timeout can cut the wait: the timeout runs the wait on a fiber of its own, which alone is
          // made interruptible (marking this fiber so would let a pending interruption end the wait at once).
          const wait = Fiber.join(sender).pipe(Effect.either)
          const joined = yield* (timeout === undefined
            ? Effect.asSome(showProgress(wait, status, values))
            : showProgress(Effect.interruptible(wait), status, values).pipe(Effect.timeoutOption(timeout)))
          if (Option.isNone(joined)) {
            yield* Fiber.interrupt(sender)
            yield* printer.warn(
              `Finishing timed out; sync the rest later with \`npx wandb-effect sync ${paths.runDir}\``
            )
            return yield* Effect.fail(
              new FinishTimeout({
                runId: base.id,
                timeoutMillis: Duration.toMillis(timeout!),
                pending: describePending(status, core.historyRows),
                runDir: paths.runDir
              })
            )
          }
          if (Either.isLeft(joined.value)) {
            yield* printer.warn(
              `Part of this run did not reach the server (${joined.value.left.message}). Everything is on disk: ` +
                `sync it later with \`npx wandb-effect sync ${paths.runDir}\``
            )
          } else {
            synced = true
            yield* fs.writeFileString(`${paths.transactionLog}.synced`, "").pipe(Effect.ignore)
          }
        }

        const result: FinishResult = {
          runId: base.id,
          exitCode,
          historyRows: core.historyRows,
          droppedRows: core.droppedRows,
          runDir: paths.runDir,
          url: online?.url,
          synced
        }
        if (!values.quiet) {
          const lines = Footer.render({
            runId: base.id,
            name: base.name,
            offline: online === undefined,
            runDir: paths.runDir,
            url: online?.url,
            histories: core.histories(),
            summary: core.summaryDotted(),
            droppedRows: core.droppedRows,
            logsDir: displayPath(path, paths.logsDir),
            syncCommand: online === undefined || !synced ? `npx wandb-effect sync ${paths.runDir}` : undefined
          })
          for (const line of lines) yield* printer.essential(line)
        }
        return result
      })

    const finish = (options?: FinishOptions) =>
      Effect.suspend(() => {
        if (finishing) return Deferred.await(finished)
        finishing = true
        return performFinish(options).pipe(
          Effect.exit,
          Effect.flatMap((exit) => Deferred.done(finished, exit)),
          Effect.zipRight(Deferred.await(finished)),
          Effect.uninterruptible
        )
      }).pipe(Effect.withSpan("Run.finish", { attributes: { runId: base.id } }))

    // For a process that exits without finishing (`process.exit()`): what can be done without waiting, done
    // at once. The rows and the exit record reach the disk; the upload is left to a later sync.
    const finishNow = (exitCode: number) => {
      if (finishing) return
      finishing = true
      core.flushHistory()
      const runtime = (Date.now() - core.startTimeMs) / 1000
      core.setSummaryLeaves({ _wandb: { runtime: Math.floor(runtime) }, _runtime: runtime })
      core.finished = true
      liveRunIds.delete(base.id)
      journal.writeNow([
        ...eventRecords(base.id, core.drain()),
        Records.exit(base.id, exitCode, runtime),
        ...Records.closing(base.id)
      ])
    }

    const run: Run = {
      ...base,
      dir: paths.runDir,
      step: Effect.sync(() => core.step),
      log: (data, options) => Effect.suspend(() => fromResult(core.log(data, options))),
      config: configMembers(core, (file) => readConfigFile(fs, path, file, cwd)),
      summary: {
        get: Effect.sync(() => core.summary()),
        update: (data) => Effect.suspend(() => fromResult(core.updateSummary(data)))
      },
      finish,
      markPreempting: Effect.suspend(() => fromResult(core.markPreempting()))
    }
    runCores.set(run, core)
    exitNow.set(run, finishNow)
    return run
  })

const describePending = (status: Replay.ReplayStatus, historyRows: number): string => {
  const parts: Array<string> = []
  if (status.historyAcknowledged < historyRows) {
    parts.push(`history rows ${status.historyAcknowledged} to ${historyRows - 1} of ${historyRows}`)
  }
  if (status.phase !== "done") {
    parts.push(status.phase === "reading" ? "the summary, files and completion" : status.phase)
  }
  return parts.join("; ") || "the completion"
}

// On a terminal, one line shows how far the upload is while finish waits for it.
const showProgress = <A, E, R>(
  wait: Effect.Effect<A, E, R>,
  status: Replay.ReplayStatus,
  values: Settings.Settings
) => {
  if (values.silent || values.quiet || !process.stderr.isTTY) return wait
  const draw = Effect.sync(() =>
    process.stderr.write(`\rwandb: uploading: ${status.historyAcknowledged} history rows sent, ${status.phase}   `)
  )
  return Effect.zipLeft(
    // The drawing loop is interruptible on its own: finish runs uninterruptibly, and the loop must end
    // when the wait does.
    Effect.raceFirst(
      wait,
      Effect.interruptible(Effect.forever(Effect.zipRight(draw, Effect.sleep("250 millis")))) as Effect.Effect<never>
    ),
    Effect.sync(() => process.stderr.write("\r\u001b[K"))
  )
}

// Inside the working directory a relative path is shorter to read; elsewhere the absolute one is clearer.
const displayPath = (path: Path.Path, file: string): string => {
  const relative = path.relative(process.cwd(), file)
  return relative === "" ? "." : relative.startsWith("..") ? file : relative
}

// The files the official client leaves in `files/` at finish, in its formats.
const writeRunFiles = (
  runDirectory: RunDirectory["Type"],
  paths: RunPaths,
  core: RunCore,
  values: Settings.Settings,
  startTime: Date
) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const wandbKey = WireFormat.wandbConfigValue(platform(), { start_time: startTime.getTime() / 1000 })
    yield* runDirectory.writeFile(path.join(paths.filesDir, "config.yaml"), RunConfig.toYaml(core.config, wandbKey))
    yield* runDirectory.writeFile(
      path.join(paths.filesDir, "wandb-summary.json"),
      ExtendedJson.stringify(core.summary()) + "\n"
    )
    const metadata = {
      os: `${process.platform}-${process.arch}`,
      startedAt: startTime.toISOString(),
      args: process.argv.slice(2),
      program: values.program,
      root: paths.root,
      host: values.host,
      username: values.username,
      executable: process.execPath,
      ...(values.gitRemoteUrl !== undefined || values.gitCommit !== undefined
        ? { git: { remote: values.gitRemoteUrl, commit: values.gitCommit } }
        : {}),
      writerId: core.runId
    }
    yield* runDirectory.writeFile(path.join(paths.filesDir, "wandb-metadata.json"), JSON.stringify(metadata, null, 2))
  })

