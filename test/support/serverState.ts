/**
 * What the test server remembers (protocol §9.1): entities, projects and runs keyed by
 * `(entity, project, run name)`, each run with its UpsertBucket fields, its file_stream files as sparse
 * line maps, its uploads and its completion. Plain data and functions, no HTTP: the server module feeds
 * requests in, tests read snapshots (`RunView`) out.
 */
import { parseExtendedJson } from "./serverJson.js"

/** The four virtual files of protocol §5.2. */
export const HISTORY = "wandb-history.jsonl"
export const SUMMARY = "wandb-summary.json"
export const EVENTS = "wandb-events.jsonl"
export const OUTPUT = "output.log"

export interface RunKey {
  readonly entity: string
  readonly project: string
  readonly name: string
}

export const keyString = (key: RunKey): string => `${key.entity}/${key.project}/${key.name}`

const base64 = (text: string): string => Buffer.from(text, "utf8").toString("base64")

// ---------------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------------

interface StoredLine {
  text: string
  writes: number
  /** Whether some write of this line was answered with a success the client could read. */
  acknowledged: boolean
  /** Writes that arrived after an acknowledged write of the same line: for history, a duplicate send. */
  rewritesAfterAck: number
}

/** Identifies one line write, so the server can mark it acknowledged once the 200 left the socket. */
export interface LineWrite {
  readonly file: string
  readonly index: number
}

/** One virtual file: a sparse map from line index to text; a write at `offset + i` replaces that line. */
export class StoredFile {
  private readonly lines = new Map<number, StoredLine>()

  write(offset: number, content: ReadonlyArray<string>): Array<number> {
    const indices: Array<number> = []
    content.forEach((text, i) => {
      const index = offset + i
      const line = this.lines.get(index)
      if (line === undefined) {
        this.lines.set(index, { text, writes: 1, acknowledged: false, rewritesAfterAck: 0 })
      } else {
        if (line.acknowledged) line.rewritesAfterAck++
        line.text = text
        line.writes++
      }
      indices.push(index)
    })
    return indices
  }

  acknowledge(index: number): void {
    const line = this.lines.get(index)
    if (line !== undefined) line.acknowledged = true
  }

  /** Drops every line from `index` on (RewindRun). */
  truncate(index: number): void {
    for (const key of [...this.lines.keys()]) if (key >= index) this.lines.delete(key)
  }

  /** Max index + 1, so a client resuming at this count never overwrites a stored line. */
  get lineCount(): number {
    let max = -1
    for (const key of this.lines.keys()) if (key > max) max = key
    return max + 1
  }

  /** Stored lines as `[index, text]` in index order, holes skipped. */
  entries(): Array<[number, string]> {
    return [...this.lines.entries()].sort(([a], [b]) => a - b).map(([index, line]) => [index, line.text])
  }

  /** Stored lines in index order, holes skipped. */
  texts(): Array<string> {
    return this.entries().map(([, text]) => text)
  }

  last(): string | undefined {
    const count = this.lineCount
    return count === 0 ? undefined : this.lines.get(count - 1)?.text
  }

  view(): FileView {
    const count = this.lineCount
    const lines: Array<string | null> = []
    const writes: Array<number> = []
    const rewritesAfterAck: Array<number> = []
    const missing: Array<number> = []
    for (let index = 0; index < count; index++) {
      const line = this.lines.get(index)
      lines.push(line?.text ?? null)
      writes.push(line?.writes ?? 0)
      rewritesAfterAck.push(line?.rewritesAfterAck ?? 0)
      if (line === undefined) missing.push(index)
    }
    return { lines, writes, rewritesAfterAck, missing }
  }
}

/**
 * A snapshot of one virtual file. Arrays are indexed by line number and run up to the highest line written.
 */
export interface FileView {
  /** Line text, `null` where no line was ever written. */
  readonly lines: ReadonlyArray<string | null>
  /** How many file_stream requests wrote each line (retries included). */
  readonly writes: ReadonlyArray<number>
  /**
   * How many writes of each line arrived after an earlier write of it had been answered with 200. For
   * `wandb-history.jsonl` and `wandb-events.jsonl` anything but 0 means the client re-sent a row the server
   * had already acknowledged; for `output.log` and `wandb-summary.json` rewrites are the protocol.
   */
  readonly rewritesAfterAck: ReadonlyArray<number>
  /** Line numbers below the highest line that were never written. */
  readonly missing: ReadonlyArray<number>
}

// ---------------------------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------------------------

/** One signed-URL PUT as the server received it. */
export interface UploadRecord {
  readonly name: string
  readonly bytes: Uint8Array
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>
  readonly hadAuthorization: boolean
  readonly receivedAt: number
}

/** A `NotifyScriptableRunAlert` call. */
export interface AlertRecord {
  readonly title: string
  readonly text: string
  readonly severity: string | null
  readonly waitDuration: number | null
}

export interface RunRecord {
  readonly key: RunKey
  readonly storageId: string
  displayName: string
  description: string | null
  notes: string | null
  group: string | null
  jobType: string | null
  host: string | null
  program: string | null
  repo: string | null
  commit: string | null
  sweep: string | null
  upsertState: string | null
  tags: Array<string>
  config: string | null
  /** `summaryMetrics` sent through UpsertBucket; only used while `wandb-summary.json` is empty. */
  upsertSummary: string | null
  readonly files: Map<string, StoredFile>
  readonly upserts: Array<Readonly<Record<string, unknown>>>
  readonly uploaded: Array<string>
  readonly markedUploaded: Array<string>
  readonly uploads: Array<UploadRecord>
  readonly alerts: Array<AlertRecord>
  complete: boolean
  completeCount: number
  exitcode: number | null
  everPreempting: boolean
  legacyFailed: boolean
  dropped: number
  stopped: boolean
  fileStreamRequests: number
  heartbeats: number
  rewinds: number
  readonly contentEncodings: Set<string>
  readonly unknownFields: Set<string>
}

const ADJECTIVES = ["lively", "quiet", "bright", "gentle", "brisk", "amber", "misty", "bold", "calm", "eager"]
const NOUNS = ["sun", "river", "forest", "meadow", "comet", "harbor", "glade", "ridge", "breeze", "lake"]

/** Two words and a counter, like the names the real server gives runs created without a display name. */
const generatedName = (n: number): string =>
  `${ADJECTIVES[n % ADJECTIVES.length]}-${NOUNS[Math.floor(n / ADJECTIVES.length) % NOUNS.length]}-${n + 1}`

/** Entities, projects and runs of one server, kept across `stop()`/`restart()`. */
export class Store {
  readonly runs = new Map<string, RunRecord>()
  private readonly entities = new Map<string, string>()
  private readonly projects = new Map<string, string>()
  private readonly deleted = new Set<string>()
  private runCounter = 0

  constructor(readonly defaultEntity: string) {}

  entityId(entity: string): string {
    let id = this.entities.get(entity)
    if (id === undefined) {
      id = base64(`Entity:${this.entities.size + 1}`)
      this.entities.set(entity, id)
    }
    return id
  }

  /** The project's id, or `undefined` when it was never created. */
  projectId(entity: string, project: string): string | undefined {
    return this.projects.get(`${entity}/${project}`)
  }

  ensureProject(entity: string, project: string): string {
    this.entityId(entity)
    const key = `${entity}/${project}`
    let id = this.projects.get(key)
    if (id === undefined) {
      id = base64(`Project:${this.projects.size + 1}`)
      this.projects.set(key, id)
    }
    return id
  }

  find(key: RunKey): RunRecord | undefined {
    return this.runs.get(keyString(key))
  }

  findByStorageId(storageId: string): RunRecord | undefined {
    for (const run of this.runs.values()) if (run.storageId === storageId) return run
    return undefined
  }

  isDeleted(key: RunKey): boolean {
    return this.deleted.has(keyString(key))
  }

  /** Removes a run and remembers its name, so that a later UpsertBucket for it gets HTTP 409 (§9.2 E19). */
  delete(key: RunKey): void {
    this.runs.delete(keyString(key))
    this.deleted.add(keyString(key))
  }

  create(key: RunKey): RunRecord {
    this.ensureProject(key.entity, key.project)
    const n = this.runCounter++
    const run: RunRecord = {
      key,
      // the shape the official old mock server used: base64 of Run:v1:<run>:<project>:<entity> (§4.1)
      storageId: base64(`Run:v1:${key.name}:${key.project}:${key.entity}`),
      displayName: generatedName(n),
      description: null,
      notes: null,
      group: null,
      jobType: null,
      host: null,
      program: null,
      repo: null,
      commit: null,
      sweep: null,
      upsertState: null,
      tags: [],
      config: null,
      upsertSummary: null,
      files: new Map(),
      upserts: [],
      uploaded: [],
      markedUploaded: [],
      uploads: [],
      alerts: [],
      complete: false,
      completeCount: 0,
      exitcode: null,
      everPreempting: false,
      legacyFailed: false,
      dropped: 0,
      stopped: false,
      fileStreamRequests: 0,
      heartbeats: 0,
      rewinds: 0,
      contentEncodings: new Set(),
      unknownFields: new Set()
    }
    this.runs.set(keyString(key), run)
    return run
  }
}

export const file = (run: RunRecord, name: string): StoredFile => {
  let stored = run.files.get(name)
  if (stored === undefined) {
    stored = new StoredFile()
    run.files.set(name, stored)
  }
  return stored
}

export const lineCount = (run: RunRecord, name: string): number => run.files.get(name)?.lineCount ?? 0

/** The summary the server reports: the last line of `wandb-summary.json` (§5.3.2), else the upserted one. */
export const summaryText = (run: RunRecord): string => run.files.get(SUMMARY)?.last() ?? run.upsertSummary ?? "{}"

/** The last `count` stored lines of a file as a JSON array of line strings (`historyTail`, `eventsTail`). */
export const tail = (run: RunRecord, name: string, count: number): string =>
  JSON.stringify((run.files.get(name)?.texts() ?? []).slice(-count))

/** A stored line parsed as an object, or `undefined` when it is not one. */
export const tryParseObject = (text: string): Record<string, unknown> | undefined => {
  try {
    const value = parseExtendedJson(text)
    return isObject(value) ? value : undefined
  } catch {
    return undefined
  }
}

/** `config._wandb.value.t`, whose presence makes a run "exist" for resume (§4.5). */
export const telemetry = (run: RunRecord): unknown => {
  const wandb = run.config === null ? undefined : tryParseObject(run.config)?.["_wandb"]
  const value = isObject(wandb) ? wandb["value"] : undefined
  return isObject(value) && "t" in value ? value["t"] : undefined
}

export const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

// ---------------------------------------------------------------------------------------------------------------
// file_stream
// ---------------------------------------------------------------------------------------------------------------

/** A file_stream body after validation (§5.2, with the legacy fields of E18). */
export interface FileStreamRequest {
  readonly files: ReadonlyArray<{ readonly name: string; readonly offset: number; readonly content: Array<string> }>
  readonly uploaded: ReadonlyArray<string>
  readonly complete: boolean | undefined
  readonly exitcode: number | null | undefined
  readonly preempting: boolean
  readonly dropped: number
  readonly failed: boolean
  readonly unknownFields: ReadonlyArray<string>
}

const KNOWN_FIELDS = new Set(["files", "uploaded", "complete", "exitcode", "preempting", "dropped", "failed"])

/** Checks the body against §5.2; returns a message for the 400 answer when it does not fit. */
export const decodeFileStream = (body: unknown): FileStreamRequest | string => {
  if (!isObject(body)) return "request body must be a JSON object"
  const files: Array<{ name: string; offset: number; content: Array<string> }> = []
  if (body["files"] !== undefined) {
    if (!isObject(body["files"])) return "\"files\" must be an object"
    for (const [name, chunk] of Object.entries(body["files"])) {
      if (!isObject(chunk)) return `files["${name}"] must be an object`
      const offset = chunk["offset"]
      const content = chunk["content"]
      if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0) {
        return `files["${name}"].offset must be a non-negative integer`
      }
      if (!Array.isArray(content) || !content.every((line) => typeof line === "string")) {
        return `files["${name}"].content must be an array of strings`
      }
      files.push({ name, offset, content: content as Array<string> })
    }
  }
  const uploaded = body["uploaded"] ?? []
  if (!Array.isArray(uploaded) || !uploaded.every((name) => typeof name === "string")) {
    return "\"uploaded\" must be an array of strings"
  }
  const complete = body["complete"]
  if (complete !== undefined && typeof complete !== "boolean") return "\"complete\" must be a boolean"
  const exitcode = body["exitcode"]
  if (exitcode !== undefined && exitcode !== null && !Number.isInteger(exitcode)) {
    return "\"exitcode\" must be an integer"
  }
  const preempting = body["preempting"] ?? false
  if (typeof preempting !== "boolean") return "\"preempting\" must be a boolean"
  const dropped = body["dropped"] ?? 0
  if (typeof dropped !== "number" || !Number.isInteger(dropped)) return "\"dropped\" must be an integer"
  const failed = body["failed"] ?? false
  if (typeof failed !== "boolean") return "\"failed\" must be a boolean"
  return {
    files,
    uploaded: uploaded as Array<string>,
    complete,
    exitcode: exitcode as number | null | undefined,
    preempting,
    dropped,
    failed,
    unknownFields: Object.keys(body).filter((key) => !KNOWN_FIELDS.has(key))
  }
}

/** Applies one file_stream request to a run and returns the line writes it made. */
export const applyFileStream = (run: RunRecord, request: FileStreamRequest): Array<LineWrite> => {
  run.fileStreamRequests++
  const isHeartbeat = request.files.length === 0 && request.uploaded.length === 0 && request.complete === undefined &&
    !request.preempting && request.unknownFields.length === 0
  if (isHeartbeat) run.heartbeats++

  const writes: Array<LineWrite> = []
  for (const chunk of request.files) {
    for (const index of file(run, chunk.name).write(chunk.offset, chunk.content)) {
      writes.push({ file: chunk.name, index })
    }
  }
  run.uploaded.push(...request.uploaded)
  if (request.preempting) run.everPreempting = true
  if (request.failed) run.legacyFailed = true
  run.dropped += request.dropped
  for (const field of request.unknownFields) run.unknownFields.add(field)
  if (request.complete === true) {
    run.complete = true
    run.completeCount++
    run.exitcode = request.exitcode ?? null
  }
  return writes
}

export const acknowledge = (run: RunRecord, writes: ReadonlyArray<LineWrite>): void => {
  for (const write of writes) run.files.get(write.file)?.acknowledge(write.index)
}

// ---------------------------------------------------------------------------------------------------------------
// Snapshots for tests
// ---------------------------------------------------------------------------------------------------------------

/**
 * A snapshot of one run, taken when `TestServer.run()` was called. Parsed members (`config`, `history`,
 * `summary`, `events`) are parsed on access with the extended JSON parser and throw if a stored line is not
 * valid JSON of that dialect, which in a test means the client sent a broken line.
 */
export interface RunView {
  readonly entity: string
  readonly project: string
  /** The run ID (UpsertBucket `name`). */
  readonly name: string
  readonly storageId: string
  readonly displayName: string
  readonly description: string | null
  readonly notes: string | null
  readonly group: string | null
  readonly jobType: string | null
  readonly host: string | null
  readonly program: string | null
  readonly repo: string | null
  readonly commit: string | null
  readonly sweep: string | null
  readonly tags: ReadonlyArray<string>
  /** The config string exactly as last upserted. */
  readonly configJson: string | null
  /** The config parsed (`{"key": {"value": v}, "_wandb": {...}}`), `null` when none was sent. */
  readonly config: Record<string, unknown> | null
  /** Every history row in line order, parsed; lines never written are skipped (see `files[...].missing`). */
  readonly history: ReadonlyArray<Record<string, unknown>>
  /** The last line of `wandb-summary.json`, parsed; `{}` before any. */
  readonly summary: Record<string, unknown>
  /** System-metrics rows of `wandb-events.jsonl`, parsed. */
  readonly events: ReadonlyArray<Record<string, unknown>>
  /** `output.log` lines in line order, as sent (timestamps and `ERROR ` prefixes included). */
  readonly output: ReadonlyArray<string>
  /** Every file written through file_stream, by name. */
  readonly files: Readonly<Record<string, FileView>>
  readonly historyLineCount: number
  readonly eventsLineCount: number
  readonly logLineCount: number
  /** History line numbers written again after the server had acknowledged them: a duplicated row. */
  readonly historyDuplicates: ReadonlyArray<number>
  /** Uploaded run files, name → bytes of the last PUT. */
  readonly uploads: Readonly<Record<string, Uint8Array>>
  /** Every PUT in arrival order, with headers and whether it carried `Authorization`. */
  readonly uploadRequests: ReadonlyArray<UploadRecord>
  /** Names announced in file_stream `uploaded` lists, in order, repeats kept. */
  readonly uploaded: ReadonlyArray<string>
  /** Names sent through `MarkRunFilesUploaded`. */
  readonly markedUploaded: ReadonlyArray<string>
  /** The variables of every UpsertBucket applied to this run, in order. */
  readonly upserts: ReadonlyArray<Readonly<Record<string, unknown>>>
  readonly upsertCount: number
  /** Whether some file_stream request carried `complete: true`. */
  readonly complete: boolean
  /** How many file_stream requests carried `complete: true`. */
  readonly completeCount: number
  /** `exitcode` of the last completing request, `null` before completion. */
  readonly exitcode: number | null
  /** `running` until completion, then `finished` for exit code 0 and `failed` otherwise (§9.1). */
  readonly state: "running" | "finished" | "failed"
  /** Whether some request carried `preempting: true`. */
  readonly preempting: boolean
  /** Whether the run was asked to stop (StopRun or `TestServer.stopRun`); file_stream then answers stopped. */
  readonly stopped: boolean
  /** Sum of legacy `dropped` counters. */
  readonly dropped: number
  /** Whether a legacy `failed: true` arrived. */
  readonly legacyFailed: boolean
  readonly fileStreamRequests: number
  /** file_stream requests that carried nothing (`{}`). */
  readonly heartbeats: number
  readonly rewinds: number
  /** `Content-Encoding` values seen on this run's file_stream requests. */
  readonly contentEncodings: ReadonlyArray<string>
  /** Top-level file_stream fields the protocol does not define, which usually means a misspelt field. */
  readonly unknownFields: ReadonlyArray<string>
  readonly alerts: ReadonlyArray<AlertRecord>
}

const parseObjectLine = (name: string, index: number, text: string): Record<string, unknown> => {
  const value = parseExtendedJson(text)
  if (!isObject(value)) throw new Error(`${name} line ${index} is not a JSON object: ${text}`)
  return value
}

export const viewRun = (run: RunRecord): RunView => {
  const files: Record<string, FileView> = {}
  for (const [name, stored] of run.files) files[name] = stored.view()
  const history = run.files.get(HISTORY)?.view()
  const uploads: Record<string, Uint8Array> = {}
  for (const upload of run.uploads) uploads[upload.name] = upload.bytes
  // parsing reads copies taken now, so a view stays a snapshot even if parsed later
  const configJson = run.config
  const historyTexts = run.files.get(HISTORY)?.texts() ?? []
  const summary = summaryText(run)
  const eventTexts = run.files.get(EVENTS)?.texts() ?? []
  return {
    entity: run.key.entity,
    project: run.key.project,
    name: run.key.name,
    storageId: run.storageId,
    displayName: run.displayName,
    description: run.description,
    notes: run.notes,
    group: run.group,
    jobType: run.jobType,
    host: run.host,
    program: run.program,
    repo: run.repo,
    commit: run.commit,
    sweep: run.sweep,
    tags: [...run.tags],
    configJson,
    get config() {
      return configJson === null ? null : parseObjectLine("config", 0, configJson)
    },
    get history() {
      return historyTexts.map((text, i) => parseObjectLine(HISTORY, i, text))
    },
    get summary() {
      return parseObjectLine(SUMMARY, 0, summary)
    },
    get events() {
      return eventTexts.map((text, i) => parseObjectLine(EVENTS, i, text))
    },
    output: run.files.get(OUTPUT)?.texts() ?? [],
    files,
    historyLineCount: lineCount(run, HISTORY),
    eventsLineCount: lineCount(run, EVENTS),
    logLineCount: lineCount(run, OUTPUT),
    historyDuplicates: (history?.rewritesAfterAck ?? []).flatMap((count, index) => (count > 0 ? [index] : [])),
    uploads,
    uploadRequests: [...run.uploads],
    uploaded: [...run.uploaded],
    markedUploaded: [...run.markedUploaded],
    upserts: [...run.upserts],
    upsertCount: run.upserts.length,
    complete: run.complete,
    completeCount: run.completeCount,
    exitcode: run.exitcode,
    state: !run.complete ? "running" : run.exitcode === 0 ? "finished" : "failed",
    preempting: run.everPreempting,
    stopped: run.stopped,
    dropped: run.dropped,
    legacyFailed: run.legacyFailed,
    fileStreamRequests: run.fileStreamRequests,
    heartbeats: run.heartbeats,
    rewinds: run.rewinds,
    contentEncodings: [...run.contentEncodings],
    unknownFields: [...run.unknownFields],
    alerts: [...run.alerts]
  }
}
