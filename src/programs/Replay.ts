/**
 * The sender: reads a transaction log and says on the wire what it holds. A live run follows its own log
 * as it grows; `sync` replays a closed one. Both are this one program, so what sync sends is what the
 * live run would have sent.
 *
 * The log is the queue. The sender reads a bounded window of records past what the server has
 * acknowledged, turns them into one file_stream request, and moves on only when the server took it, so
 * memory stays bounded however slow or absent the server is, and nothing accepted by `log` is lost.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import { type NetworkError, type ServerError, StorageError, TransactionLogCorrupt } from "../domain/Errors.js"
import { type ConsoleLine, ConsoleLog, fileStreamLine } from "../domain/ConsoleLog.js"
import * as ExtendedJson from "../domain/ExtendedJson.js"
import * as RunConfig from "../domain/RunConfig.js"
import * as WireFormat from "../domain/WireFormat.js"
import {
  OutputRawRecord_OutputType,
  type Record as LogRecord,
  type RunRecord
} from "../internal/proto/wandb_internal_pb.js"
import type { RunPath, ServerClient, UpsertBucketInput, UpsertedRun } from "../layers/ServerApi.js"
import { type LogDamage, TransactionLog } from "../layers/TransactionLog.js"

/**
 * The file_stream files this client writes.
 *
 * @since 0.1.0
 * @category constants
 */
export const HISTORY_FILE = "wandb-history.jsonl"

/**
 * @since 0.1.0
 * @category constants
 */
export const SUMMARY_FILE = "wandb-summary.json"

/**
 * @since 0.1.0
 * @category constants
 */
export const EVENTS_FILE = "wandb-events.jsonl"

/**
 * @since 0.1.0
 * @category constants
 */
export const OUTPUT_FILE = "output.log"

// Roughly what one file_stream request may carry (protocol §5.5); one longer line still goes alone.
const MAX_REQUEST_BYTES = 10 * 1024 * 1024
// A history line longer than this is refused by the back end, so it is dropped with a warning.
const MAX_LINE_BYTES = 10 * 1024 * 1024 - 100 * 1024
// How much of the log one read takes.
const READ_WINDOW_BYTES = 4 * 1024 * 1024
const HEARTBEAT_AFTER = Duration.seconds(30)
const CONFIG_DEBOUNCE = Duration.seconds(5)

/**
 * What a replay is doing, for progress lines and for `FinishTimeout` to say what is pending.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplayStatus {
  phase: "reading" | "uploading files" | "completing" | "done" | "failed"
  /** History lines the server has acknowledged (counting lines it had before). */
  historyAcknowledged: number
  /** History records read from the log so far. */
  historyRead: number
  /** Log bytes the server has everything of. */
  offsetAcknowledged: number
  stopped: boolean
  droppedLines: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ReplayOptions {
  readonly logPath: string
  readonly filesDir: string
  readonly client: ServerClient
  /** Follow a log that is still being written (a live run) rather than read a closed one (sync). */
  readonly follow: boolean
  /** For a live log: bytes written so far, so only whole flushed records are read. */
  readonly writtenThrough?: (() => number) | undefined
  /** The pace of file_stream requests while nothing urges one: at most one per interval. */
  readonly transmitInterval: Duration.DurationInput
  /** How often a live log is looked at for new records. */
  readonly pollInterval: Duration.DurationInput
  /** A live run was created by init: its upsert result and the log offset after its run record. */
  readonly started?: {
    readonly upserted: UpsertedRun
    readonly offset: number
    readonly config: RunConfig.ConfigValues
    /** Unix seconds; system metrics lines carry their time since then. */
    readonly startTime: number
  }
  /** Overrides applied to the run record (sync's `--project`, `--entity`). */
  readonly overrides?: { readonly entity?: string | undefined; readonly project?: string | undefined }
  readonly platform: string
  /**
   * Write `config.yaml` and `wandb-summary.json` into `files/` from what the log holds before uploading,
   * as the official sync does (a crashed run never wrote its own).
   */
  readonly writeFinalFiles?: boolean | undefined
  readonly status: ReplayStatus
  /** Records the live run wrote recently, kept in memory so the sender need not read them back. */
  readonly recent?: RecentRecords | undefined
  /** Offered to when there is something new to read (at finish): the sender stops waiting for its poll. */
  readonly wake?: Queue.Queue<void> | undefined
  /** Called once when the server says the run was stopped from the UI. */
  readonly onStopped?: (() => void) | undefined
  /** Called once for a history line too long for the server. */
  readonly onDroppedLine?: ((step: number, bytes: number) => void) | undefined
}

/**
 * What a finished replay did.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplayResult {
  readonly run: RunPath
  readonly exitCode: number
  /** False when the log ended without an exit record (a crashed writer): the run is completed as failed. */
  readonly sawExit: boolean
  readonly historyLines: number
  readonly uploadedFiles: ReadonlyArray<string>
  /** Damage that ended the log early; every record before it was sent. */
  readonly damage: Option.Option<LogDamage>
  readonly displayName: string | undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const initialStatus = (): ReplayStatus => ({
  phase: "reading",
  historyAcknowledged: 0,
  historyRead: 0,
  offsetAcknowledged: 0,
  stopped: false,
  droppedLines: 0
})

/**
 * The upsert a run record asks for.
 *
 * @since 0.1.0
 * @category encoding
 */
export const upsertInput = (
  run: RunRecord,
  config: RunConfig.ConfigValues,
  platform: string,
  overrides: ReplayOptions["overrides"] = {}
): UpsertBucketInput => {
  const nonEmpty = (value: string) => (value === "" ? undefined : value)
  return {
    name: run.runId,
    entity: overrides.entity ?? nonEmpty(run.entity),
    project: overrides.project ?? nonEmpty(run.project),
    groupName: nonEmpty(run.runGroup),
    displayName: nonEmpty(run.displayName),
    notes: nonEmpty(run.notes),
    tags: run.tags.length > 0 ? run.tags : undefined,
    host: nonEmpty(run.host),
    jobType: nonEmpty(run.jobType),
    commit: run.git === undefined ? undefined : nonEmpty(run.git.commit),
    repo: run.git === undefined ? undefined : nonEmpty(run.git.remoteUrl),
    config: WireFormat.configJson(config, platform)
  }
}

const configFromItems = (
  target: RunConfig.ConfigValues,
  items: ReadonlyArray<WireFormat.WireItem>
): void => {
  for (const item of items) {
    const path = WireFormat.pathOf(item)
    let value: unknown
    try {
      value = ExtendedJson.parse(item.valueJson)
    } catch {
      value = item.valueJson
    }
    if (path.length === 1) {
      target[path[0]!] = value
      continue
    }
    // A nested config item sets a value inside the top-level key's object.
    let node = target
    for (let i = 0; i < path.length - 1; i++) {
      const next = node[path[i]!]
      if (typeof next !== "object" || next === null || Array.isArray(next)) node[path[i]!] = {}
      node = node[path[i]!] as RunConfig.ConfigValues
    }
    node[path[path.length - 1]!] = value
  }
}

/**
 * Replays a log to the server: creates the run from its run record (unless a live init did), streams
 * history and summary, keeps the config up to date, uploads the files in `files/` and completes the run
 * with the exit code. A log that ends without an exit record completes as failed (exit code 1), like the
 * official sync.
 *
 * @since 0.1.0
 * @category programs
 */
export const replay = (
  options: ReplayOptions
): Effect.Effect<
  ReplayResult,
  ServerError | NetworkError | StorageError | LogDamage,
  TransactionLog | FileSystem.FileSystem | Path.Path
> =>
  Effect.gen(function*() {
    const log = yield* TransactionLog
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { client, status } = options
    const transmitInterval = Duration.toMillis(Duration.decode(options.transmitInterval))
    const pollInterval = Duration.decode(options.pollInterval)

    let offset = options.started?.offset ?? 0
    let run: RunPath | undefined = options.started === undefined ? undefined : {
      entity: options.started.upserted.entity,
      project: options.started.upserted.project,
      runId: options.started.upserted.runId
    }
    let displayName = options.started?.upserted.displayName
    let storageId = options.started?.upserted.storageId
    // A live run sends every row it logs, after the lines the server already holds. A replay from the
    // start of a log skips the rows the server has: steps only go up, so every row at or below the
    // server's last step is there already (after a crash, a timed-out finish, or a sync run twice).
    // Not yet: a crashed run synced after a later run resumed its id appends behind the resumed rows.
    let skipThroughStep = -1
    let historyLine = options.started?.upserted.historyLineCount ?? 0
    status.historyAcknowledged = historyLine

    const config: RunConfig.ConfigValues = { ...(options.started?.config ?? {}) }
    let configDirty = false
    let configChangedAt = 0
    let runRecord: RunRecord | undefined
    const summary = new WireFormat.ValueTree()
    let summaryDirty = false

    let lines: Array<string> = []
    let lineBytes = 0
    let startTime = options.started?.startTime ?? 0
    let eventsLine = 0
    let events: Array<string> = []
    const consoleLog = new ConsoleLog()
    // Console lines waiting to be sent (a changed line replaces its earlier text), and every line's latest
    // text for `output.log`.
    const consolePending = new Map<number, string>()
    // Not yet: every console line stays in memory until finish writes output.log; it should stream to disk.
    const consoleText = new Map<number, string>()
    const takeConsole = (changed: ReadonlyArray<ConsoleLine>) => {
      for (const line of changed) {
        const wire = fileStreamLine(line)
        consolePending.set(line.lineNumber, wire)
        consoleText.set(line.lineNumber, line.text)
        lineBytes += wire.length
      }
    }
    let pendingOffset = offset
    let preempting = false
    let exitCode: number | undefined
    let damage: Option.Option<LogDamage> = Option.none()
    let lastSent = Number.NEGATIVE_INFINITY
    let lastRequest = yield* Clock.currentTimeMillis

    const upsertRun = (record: RunRecord) =>
      Effect.gen(function*() {
        const input = upsertInput(record, config, options.platform, options.overrides)
        const upserted = yield* client.upsertBucket(storageId === undefined ? input : { ...input, id: storageId })
        storageId = upserted.storageId
        displayName = upserted.displayName ?? displayName
        if (run === undefined) {
          run = { entity: upserted.entity, project: upserted.project, runId: upserted.runId }
          historyLine = upserted.historyLineCount
          status.historyAcknowledged = historyLine
          if (historyLine > 0) skipThroughStep = yield* lastStoredStep(client, run)
        }
        configDirty = false
      })

    // Handles one record, synchronously: this runs once per row, so it allocates no effect. It returns true
    // for the first run record of a log whose run is not created yet, which the caller must upsert before
    // it goes on (the rows after it are only sent to a run that exists).
    const historyRow = (step: number, line: string): void => {
      status.historyRead++
      if (step <= skipThroughStep) return
      const bytes = utf8Length(line)
      if (bytes > MAX_LINE_BYTES) {
        status.droppedLines++
        options.onDroppedLine?.(step, bytes)
        return
      }
      lines.push(line)
      lineBytes += line.length
    }

    const process = (record: LogRecord): boolean => {
      const kind = record.recordType
      switch (kind.case) {
        case "run": {
          if (runRecord !== undefined) return false
          runRecord = kind.value
          if (kind.value.startTime !== undefined) startTime = Number(kind.value.startTime.seconds)
          if (kind.value.config !== undefined) configFromItems(config, kind.value.config.update)
          return run === undefined
        }
        case "history":
          historyRow(Number(kind.value.step?.num ?? 0n), WireFormat.historyLine(kind.value.item))
          return false
        case "summary": {
          for (const item of kind.value.update) summary.set(item)
          for (const item of kind.value.remove) summary.removeItem(item)
          summaryDirty = true
          return false
        }
        case "config": {
          configFromItems(config, kind.value.update)
          for (const item of kind.value.remove) delete config[WireFormat.pathOf(item)[0]!]
          configDirty = true
          configChangedAt = Date.now()
          return false
        }
        case "preempting":
          preempting = true
          return false
        case "stats": {
          const seconds = kind.value.timestamp === undefined
            ? 0
            : Number(kind.value.timestamp.seconds) + kind.value.timestamp.nanos / 1e9
          const row: Array<string> = [`"_wandb":true`, `"_timestamp":${seconds}`, `"_runtime":${seconds - startTime}`]
          for (const item of kind.value.item) row.push(`${JSON.stringify(`system.${item.key}`)}:${item.valueJson}`)
          const line = `{${row.join(",")}}`
          events.push(line)
          lineBytes += line.length
          return false
        }
        case "outputRaw": {
          const seconds = kind.value.timestamp === undefined
            ? 0
            : Number(kind.value.timestamp.seconds) + kind.value.timestamp.nanos / 1e9
          const stream = kind.value.outputType === OutputRawRecord_OutputType.STDOUT ? "stdout" : "stderr"
          takeConsole(consoleLog.write(stream, kind.value.line, seconds))
          return false
        }
        case "exit":
          exitCode = kind.value.exitCode
          return false
        default:
          return false
      }
    }

    // Processes a window of records, creating the run when its record comes by.
    const processAll = (records: ReadonlyArray<{ readonly record: LogRecord }>) =>
      Effect.gen(function*() {
        for (const entry of records) {
          if (process(entry.record)) yield* upsertRun(runRecord!)
          if (exitCode !== undefined) return
        }
      })

    const processRecent = (records: ReadonlyArray<RecentRecord>) =>
      Effect.gen(function*() {
        for (const entry of records) {
          if (entry.record === undefined) {
            historyRow(entry.step, entry.line!)
            continue
          }
          if (process(entry.record)) yield* upsertRun(runRecord!)
          if (exitCode !== undefined) return
        }
      })

    const send = (final?: { readonly exitCode: number; readonly uploaded: ReadonlyArray<string> }) =>
      Effect.gen(function*() {
        const files: Record<string, { offset: number; content: ReadonlyArray<string> }> = {}
        if (lines.length > 0) files[HISTORY_FILE] = { offset: historyLine, content: lines }
        if (summaryDirty) {
          // A summary over the server's line limit is not sent until it changes again, as wandb-core does.
          const line = ExtendedJson.stringify(summary.nested())
          if (utf8Length(line) <= MAX_LINE_BYTES) files[SUMMARY_FILE] = { offset: 0, content: [line] }
        }
        if (events.length > 0) files[EVENTS_FILE] = { offset: eventsLine, content: events }
        // One request carries one contiguous run of console lines; the rest wait for the next request.
        const consoleRun: Array<number> = []
        if (consolePending.size > 0) {
          let next = Math.min(...consolePending.keys())
          while (consolePending.has(next)) consoleRun.push(next++)
          files[OUTPUT_FILE] = { offset: consoleRun[0]!, content: consoleRun.map((n) => consolePending.get(n)!) }
        }
        const request = {
          ...(Object.keys(files).length > 0 ? { files } : {}),
          ...(preempting ? { preempting: true as const } : {}),
          ...(final === undefined ? {} : {
            ...(final.uploaded.length > 0 ? { uploaded: final.uploaded } : {}),
            complete: true as const,
            exitcode: final.exitCode
          })
        }
        const response = yield* client.fileStream(run!, request)
        historyLine += lines.length
        eventsLine += events.length
        status.historyAcknowledged = historyLine
        status.offsetAcknowledged = pendingOffset
        lines = []
        events = []
        for (const n of consoleRun) consolePending.delete(n)
        lineBytes = [...consolePending.values()].reduce((total, line) => total + line.length, 0)
        summaryDirty = false
        preempting = false
        const now = yield* Clock.currentTimeMillis
        lastSent = now
        lastRequest = now
        if (response.stopped && !status.stopped) {
          status.stopped = true
          options.onStopped?.()
        }
      })

    // Reading and sending, until the exit record (or, for a closed log, its end) has been sent.
    for (;;) {
      let reachedEnd = true
      let readAny = false
      if (lineBytes < MAX_REQUEST_BYTES && exitCode === undefined && Option.isNone(damage)) {
        const until = options.follow && options.writtenThrough !== undefined ? options.writtenThrough() : undefined
        // Records the live run wrote moments ago come from memory when they follow on from here; the log on
        // disk is read only for what the bounded cache did not keep.
        const cached = options.recent?.take(offset, until ?? Number.MAX_SAFE_INTEGER, READ_WINDOW_BYTES) ?? []
        if (cached.length > 0) {
          yield* processRecent(cached)
          readAny = true
          offset = cached[cached.length - 1]!.end
          pendingOffset = offset
          reachedEnd = false
        } else {
          const contents = yield* log.readFrom(options.logPath, offset, { maxBytes: READ_WINDOW_BYTES, until })
          yield* processAll(contents.records)
          readAny = contents.records.length > 0
          offset = contents.end
          pendingOffset = offset
          reachedEnd = contents.reachedEnd
          // A live log's torn tail is only a record still being written; anything else ends the log.
          if (Option.isSome(contents.damage)) {
            const liveTail = options.follow && contents.damage.value._tag === "TransactionLogTruncated"
            if (!liveTail) damage = contents.damage
          }
        }
      }
      if (run === undefined) {
        if (Option.isSome(damage)) return yield* Effect.fail(damage.value)
        if (!options.follow && reachedEnd) {
          return yield* Effect.fail(
            new TransactionLogCorrupt({
              path: options.logPath,
              offset,
              reason: "the log has no run record, so there is no run to create",
              recordsBefore: 0
            })
          )
        }
      }

      const ending = exitCode !== undefined || Option.isSome(damage) || (!options.follow && reachedEnd)
      const now = yield* Clock.currentTimeMillis
      if (run !== undefined) {
        const configDue = ending || now - configChangedAt >= Duration.toMillis(CONFIG_DEBOUNCE)
        if (configDirty && runRecord !== undefined && configDue) {
          yield* upsertRun(runRecord)
        }
        if (ending && reachedEnd) takeConsole(consoleLog.flush())
        const hasData = lines.length > 0 || summaryDirty || preempting || events.length > 0 || consolePending.size > 0
        const urgent = lineBytes >= MAX_REQUEST_BYTES || preempting || ending
        if (hasData && (urgent || now - lastSent >= transmitInterval)) {
          yield* send()
          continue
        }
        if (options.follow && !ending && now - lastRequest >= Duration.toMillis(HEARTBEAT_AFTER)) {
          yield* client.fileStream(run, {})
          lastRequest = yield* Clock.currentTimeMillis
        }
        if (ending && !hasData && reachedEnd) break
        if (ending && !reachedEnd) continue
      }
      if (!readAny || reachedEnd) {
        yield* options.wake === undefined
          ? Effect.sleep(pollInterval)
          : Effect.raceFirst(Effect.sleep(pollInterval), Queue.take(options.wake))
      }
    }

    // Completion: the files, then the final request with the exit code.
    status.phase = "uploading files"
    const finalExit = exitCode ?? 1
    if (consoleText.size > 0) {
      const text = [...consoleText.entries()].sort((a, b) => a[0] - b[0]).map(([, line]) => line).join("\n") + "\n"
      yield* fs.makeDirectory(options.filesDir, { recursive: true }).pipe(
        Effect.zipRight(fs.writeFileString(path.join(options.filesDir, OUTPUT_FILE), text)),
        Effect.mapError(writeFailed(options.filesDir))
      )
    }
    if (options.writeFinalFiles === true) {
      const wandb = WireFormat.wandbConfigValue(options.platform, startTime > 0 ? { start_time: startTime } : {})
      const userConfig = Object.fromEntries(Object.entries(config).filter(([key]) => key !== "_wandb"))
      yield* Effect.all([
        fs.makeDirectory(options.filesDir, { recursive: true }),
        fs.writeFileString(path.join(options.filesDir, "config.yaml"), RunConfig.toYaml(userConfig, wandb)),
        fs.writeFileString(path.join(options.filesDir, SUMMARY_FILE), ExtendedJson.stringify(summary.nested()) + "\n")
      ], { discard: true }).pipe(
        Effect.mapError(writeFailed(options.filesDir))
      )
    }
    const uploaded = yield* uploadFiles(client, run!, options.filesDir, fs, path)
    status.phase = "completing"
    yield* send({ exitCode: finalExit, uploaded })
    status.phase = "done"
    return {
      run: run!,
      exitCode: finalExit,
      sawExit: exitCode !== undefined,
      historyLines: historyLine,
      uploadedFiles: uploaded,
      damage,
      displayName
    } satisfies ReplayResult
  }).pipe(
    Effect.tapError(() => Effect.sync(() => (options.status.phase = "failed"))),
    Effect.withSpan("Replay.replay", { attributes: { logPath: options.logPath, follow: options.follow } })
  )

/**
 * A bounded cache of records just written to a live log, each with where it lies in the file and, for a
 * history row, its wire line. The sender takes them from here instead of reading and decoding them again
 * while they follow on from where it is; whatever did not fit is read from the log as usual.
 *
 * @since 0.1.0
 * @category models
 */
export class RecentRecords {
  // A history row is kept as its step and wire line only: the decoded message would cost several times
  // the line's size. Other records are rare and kept whole.
  private entries: Array<RecentRecord> = []
  private first = 0
  private bytes = 0

  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  /** Keeps a record if it follows the last one kept and there is room; else leaves it to the log. */
  add(start: number, end: number, record: LogRecord): void {
    if (this.first >= this.entries.length) {
      this.entries = []
      this.first = 0
    }
    const last = this.entries[this.entries.length - 1]
    if (last !== undefined && last.end !== start) return
    const kind = record.recordType
    const entry: RecentRecord = kind.case === "history"
      ? {
        start,
        end,
        record: undefined,
        step: Number(kind.value.step?.num ?? 0n),
        line: WireFormat.historyLine(kind.value.item)
      }
      : { start, end, record, step: 0, line: undefined }
    const size = sizeOf(entry)
    if (this.bytes + size > this.maxBytes) return
    this.entries.push(entry)
    this.bytes += size
  }

  /** The kept records from `offset` on, ending at or before `until`, about `maxBytes` of them. */
  take(offset: number, until: number, maxBytes: number): Array<RecentRecord> {
    while (this.first < this.entries.length && this.entries[this.first]!.end <= offset) this.drop()
    const out: Array<RecentRecord> = []
    if (this.first >= this.entries.length || this.entries[this.first]!.start !== offset) return out
    let taken = 0
    while (this.first < this.entries.length && taken < maxBytes) {
      const entry = this.entries[this.first]!
      if (entry.end > until) break
      out.push(entry)
      taken += sizeOf(entry)
      this.drop()
    }
    return out
  }

  private drop(): void {
    this.bytes -= sizeOf(this.entries[this.first]!)
    this.first++
    if (this.first > 1024 && this.first * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.first)
      this.first = 0
    }
  }
}

/**
 * A record of `RecentRecords`: a history row as its step and line, anything else as the record.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecentRecord {
  readonly start: number
  readonly end: number
  readonly record: LogRecord | undefined
  readonly step: number
  readonly line: string | undefined
}

// Strings count twice their length (two bytes a character); a kept record is assumed at 1 KB.
const sizeOf = (entry: RecentRecord): number => (entry.line === undefined ? 1024 : entry.line.length * 2 + 96)

// The server's limits are in UTF-8 bytes; a string is measured only when its length alone could pass one.
const encoder = new TextEncoder()
const utf8Length = (text: string): number =>
  text.length * 3 <= MAX_LINE_BYTES ? text.length : encoder.encode(text).length

/**
 * This runtime as the telemetry's platform field names it.
 *
 * @since 0.1.0
 * @category constants
 */
export const currentPlatform = (): string => `node-${process.version}-${process.platform}-${process.arch}`

const writeFailed = (path: string) => (error: { readonly message: string }) =>
  new StorageError({ path, operation: "write", reason: error.message })

// The `_step` of the last history line the server holds, from RunResumeStatus; -1 when it has none.
const lastStoredStep = (client: ServerClient, run: RunPath) =>
  Effect.gen(function*() {
    const stored = yield* client.runResumeStatus({ entity: run.entity, project: run.project, runId: run.runId })
    if (stored?.historyTail === undefined) return -1
    try {
      const lines = ExtendedJson.parse(stored.historyTail)
      const lastLine = Array.isArray(lines) ? lines.at(-1) : undefined
      const last = typeof lastLine === "string" ? ExtendedJson.parse(lastLine) : undefined
      const step = (last as { _step?: unknown } | undefined)?._step
      return typeof step === "number" ? step : -1
    } catch {
      return -1
    }
  })

const listFiles = (fs: FileSystem.FileSystem, path: Path.Path, root: string) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const walk = (dir: string, prefix: string): Effect.Effect<void> =>
      Effect.gen(function*() {
        const names = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed(() => [] as Array<string>))
        for (const name of names.sort()) {
          const full = path.join(dir, name)
          const info = yield* fs.stat(full).pipe(Effect.option)
          if (Option.isNone(info)) continue
          if (info.value.type === "Directory") yield* walk(full, `${prefix}${name}/`)
          else if (info.value.type === "File") out.push(`${prefix}${name}`)
        }
      })
    yield* walk(root, "")
    return out
  })

// Every file in `files/` is uploaded to the URL the server hands out; a file the server does not want
// (no URL) is skipped, as the official client does.
const uploadFiles = (
  client: ServerClient,
  run: RunPath,
  filesDir: string,
  fs: FileSystem.FileSystem,
  path: Path.Path
) =>
  Effect.gen(function*() {
    const names = yield* listFiles(fs, path, filesDir)
    if (names.length === 0) return []
    const batch = yield* client.createRunFiles({ ...run, files: names })
    const uploaded: Array<string> = []
    for (const file of batch.files) {
      if (file.uploadUrl === undefined) continue
      const body = yield* fs.readFile(path.join(filesDir, file.name)).pipe(Effect.option)
      if (Option.isNone(body)) continue
      yield* client.uploadFile(file.uploadUrl, batch.uploadHeaders, body.value)
      uploaded.push(file.name)
    }
    return uploaded
  })
