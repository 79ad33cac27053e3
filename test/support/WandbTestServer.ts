/**
 * A W&B-compatible server on 127.0.0.1 for tests: the GraphQL endpoint, the file_stream endpoint and signed
 * upload URLs of `../shared/spec/protocol.md`, with state a test can read and faults it can inject.
 *
 * - `POST {url}/graphql` answers Viewer, ServerFeaturesQuery, RunResumeStatus, UpsertBucket, CreateRunFiles,
 *   RewindRun, StopRun, RunStoppedStatus, NotifyScriptableRunAlert and MarkRunFilesUploaded with the shapes
 *   of §9.2; any other operation gets HTTP 400 `{"errors":[{"message":"Unknown operation \"X\""}]}`.
 * - `POST {url}/files/{entity}/{project}/{run}/file_stream` stores each `content[i]` at line `offset + i`
 *   (same line ⇒ replaced), records `uploaded`, `preempting`, `complete`/`exitcode` and answers
 *   `{"exitcode":null,"limits":{},"stopped":false}`. Bodies may be gzip-compressed. Unknown runs get 404.
 * - `PUT {origin}/storage/{entity}/{project}/{run}/{file}?sig=…` (URLs from CreateRunFiles) stores the bytes.
 *   Uploads need no `Authorization`; whether one was sent is recorded.
 * - GraphQL and file_stream need `Authorization: Basic base64("api:" + key)`. By default any well-formed key
 *   passes (§2.2: 40+ characters of `[A-Za-z0-9_-]` after an optional `prefix-`, or a JWT); with `apiKeys`
 *   only those do. Anything else gets HTTP 401 `{"errors":[{"message":"user is not logged in"}]}` on
 *   GraphQL and `{"error":"user is not logged in"}` on file_stream.
 *
 * State survives `stop()`/`restart()` (the same port) and is cleared by `reset()`.
 *
 * @example
 * import { Faults, startTestServer, authorizationHeader, sampleApiKey } from "./support/WandbTestServer.js"
 *
 * const server = await startTestServer()
 * server.setFaults({ rule: Faults.onChannel("file_stream", Faults.firstN(1, Faults.status(429, { retryAfter: 1 }))) })
 * // … point the client at server.url with key sampleApiKey(), run it …
 * const run = server.run("3k9x2m1p")
 * expect(run.history.map((row) => row["_step"])).toEqual([0, 1, 2])
 * expect(run.historyDuplicates).toEqual([])
 * expect(server.requests({ channel: "file_stream" })[0]?.status).toBe(429)
 * await server.close()
 */
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { gunzipSync } from "node:zlib"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Channel, FaultAction, FaultRequest, FaultSettings } from "./serverFaults.js"
import type { GraphqlContext, ServerFeature, SignedUpload, ViewerInfo } from "./serverGraphql.js"
import { executeGraphql, operationOf } from "./serverGraphql.js"
import { stringifyExtendedJson } from "./serverJson.js"
import type { LineWrite, RunKey, RunRecord, RunView } from "./serverState.js"
import {
  acknowledge,
  applyFileStream,
  decodeFileStream,
  EVENTS,
  file,
  HISTORY,
  keyString,
  OUTPUT,
  Store,
  SUMMARY,
  viewRun
} from "./serverState.js"

export { Faults } from "./serverFaults.js"
export type {
  ActionInput,
  Channel,
  FaultAction,
  FaultRequest,
  FaultRule,
  FaultSettings,
  Latency
} from "./serverFaults.js"
export type { ServerFeature, ViewerInfo } from "./serverGraphql.js"
export { ExtendedJsonError, parseExtendedJson, stringifyExtendedJson } from "./serverJson.js"
export type { AlertRecord, FileView, RunView, UploadRecord } from "./serverState.js"

// ---------------------------------------------------------------------------------------------------------------
// Options and records
// ---------------------------------------------------------------------------------------------------------------

/** How to start a test server. Every field is optional. */
export interface TestServerOptions {
  /** Port on 127.0.0.1; `0` (the default) lets the OS choose. */
  readonly port?: number | undefined
  /**
   * Path the GraphQL and file_stream endpoints live under, e.g. `"/wandb"` makes `url` end in `/wandb`
   * (protocol §1: a base URL may carry a path). Upload URLs stay at the origin's `/storage/`, outside it.
   */
  readonly pathPrefix?: string | undefined
  /** Accepted API keys; when absent any well-formed key is accepted. `[]` rejects every request. */
  readonly apiKeys?: ReadonlyArray<string> | undefined
  /** The account behind every accepted key; default entity and username `alice` as in §9.2. */
  readonly viewer?: Partial<ViewerInfo> | undefined
  /**
   * ServerFeaturesQuery answer; default the three features of E2 (`FILESTREAM_GZIP` off).
   * `"unsupported"` answers like an old server (HTTP 400, `Cannot query field "features"…`).
   */
  readonly features?: ReadonlyArray<ServerFeature> | "unsupported" | undefined
  /** `uploadHeaders` of CreateRunFiles; default `["Content-Type: application/octet-stream"]` as in E7. */
  readonly uploadHeaders?: ReadonlyArray<string> | undefined
  /** Faults active from the start; see `TestServer.setFaults`. */
  readonly faults?: FaultSettings | undefined
}

/** Extra content of every successful file_stream answer (§5.6, §3.3). */
export interface FileStreamReplyOptions {
  /** The `limits` object legacy clients read; default `{}`. */
  readonly limits?: Readonly<Record<string, unknown>> | undefined
  /** Adds `RateLimit-Remaining` and `RateLimit-Reset` headers, which make the Go client pace itself. */
  readonly rateLimit?: { readonly remaining: number; readonly reset: number } | undefined
}

/** Selects a run by name when the name alone is ambiguous. */
export interface RunWhere {
  readonly entity?: string | undefined
  readonly project?: string | undefined
}

/** A run to create directly in the store, e.g. to test resuming a run some earlier process wrote. */
export interface RunSeed {
  /** Default: the viewer's entity. */
  readonly entity?: string | undefined
  readonly project: string
  readonly name: string
  readonly displayName?: string | undefined
  /** Stored as sent with UpsertBucket; give `_wandb: {value: {t: …}}` to make the run count as existing. */
  readonly config?: Readonly<Record<string, unknown>> | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly notes?: string | undefined
  /** Lines of the four files; objects are serialised with the extended JSON writer, strings kept as is. */
  readonly history?: ReadonlyArray<Readonly<Record<string, unknown>> | string> | undefined
  readonly summary?: Readonly<Record<string, unknown>> | string | undefined
  readonly events?: ReadonlyArray<Readonly<Record<string, unknown>> | string> | undefined
  readonly output?: ReadonlyArray<string> | undefined
}

/** How a request ended: answered, dropped (socket destroyed), or held open by a `hang` fault. */
export type RequestOutcome = "pending" | "answered" | "dropped" | "held"

/** One request as the server saw it, in the order requests arrived. */
export interface RequestRecord {
  /** 1-based arrival number, the `n` fault rules see. */
  readonly n: number
  readonly channel: Channel
  readonly method: string
  /** Path without the query string and the path prefix. */
  readonly path: string
  /** Query string including `?`, or `""`. */
  readonly search: string
  readonly operation: string | null
  /** `Date.now()` when the request arrived, before any latency. */
  readonly receivedAt: number
  /** Status answered, `null` when dropped, held or still pending. */
  readonly status: number | null
  readonly outcome: RequestOutcome
  /** Kind of injected fault, `null` for requests the server handled normally (or is still delaying). */
  readonly fault: FaultAction["kind"] | null
  readonly hadAuthorization: boolean
  /** The key decoded from `Basic api:<key>`, `null` when absent or of another form. */
  readonly apiKey: string | null
  readonly userAgent: string | null
  readonly contentType: string | null
  readonly contentEncoding: string | null
  /** Every `X-WANDB-*` header, names lower-cased. */
  readonly wandbHeaders: Readonly<Record<string, string>>
  /** Parsed JSON body of GraphQL and file_stream requests (after gunzip); `undefined` elsewhere. */
  readonly body: unknown
  /** Body size as received on the wire. */
  readonly bodyBytes: number
}

/** What `requests()` may filter on. */
export interface RequestFilter {
  readonly channel?: Channel | undefined
  readonly operation?: string | undefined
}

/**
 * A running test server. Inspection methods return snapshots: read them again after more requests.
 */
export interface TestServer {
  /** Base URL for clients, `http://127.0.0.1:PORT` plus the path prefix. */
  readonly url: string
  /** `http://127.0.0.1:PORT`, where upload URLs point. */
  readonly origin: string
  readonly port: number
  /** False between `stop()` and `restart()` and after `close()`. */
  readonly running: boolean

  /** Stops for good: open connections (held requests included) are destroyed. Safe to call twice. */
  close(): Promise<void>
  /** The server "dies": stops listening and destroys open connections; state is kept. */
  stop(): Promise<void>
  /** Listens again on the same port with the state kept. Does nothing while running. */
  restart(): Promise<void>
  /** Forgets runs, uploads, the request log and counters; restores faults, keys and replies of the options. */
  reset(): void

  /** Replaces the fault settings; `setFaults()` clears them. Takes effect for the next request. */
  setFaults(faults?: FaultSettings): void
  /** Replaces the accepted keys; `undefined` accepts any well-formed key, `[]` rejects all. */
  setApiKeys(keys?: ReadonlyArray<string>): void
  /** Sets `limits` and rate-limit headers of later file_stream answers. */
  setFileStreamReply(reply: FileStreamReplyOptions): void
  /** Marks a run stopped, as the UI's stop button does: later file_stream answers say `stopped: true`. */
  stopRun(name: string, where?: RunWhere): void
  /** Deletes a run; UpsertBucket for the same name then gets HTTP 409 (§9.2 E19). */
  deleteRun(name: string, where?: RunWhere): void
  /** Creates a run directly, as if an earlier process had written it. Replaces a run of the same key. */
  seedRun(seed: RunSeed): RunView

  /** Every run, in creation order. */
  runs(): Array<RunView>
  /** The run with this ID; throws listing the known runs when there is none or the name is ambiguous. */
  run(name: string, where?: RunWhere): RunView
  /** Like `run`, but `undefined` when there is none. */
  findRun(name: string, where?: RunWhere): RunView | undefined
  /** The request log, oldest first. */
  requests(filter?: RequestFilter): Array<RequestRecord>
  /**
   * Resolves with the first value `probe` returns that is not `undefined`, `null` or `false`, checking now,
   * when a request arrives and when the server is done with it. A probe that throws counts as "not yet". Rejects after
   * `timeoutMs` (default 10 000) with the last error the probe threw.
   */
  waitFor<T>(
    probe: (server: TestServer) => T | undefined | null | false,
    options?: { readonly timeoutMs?: number }
  ): Promise<T>
  /** A JSON-serialisable summary of all runs and request counts, for dumps. */
  snapshot(): Record<string, unknown>
}

// ---------------------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------------------

const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** The client-side key rule of protocol §2.2, which this server uses as its notion of "well-formed". */
export const isWellFormedApiKey = (key: string): boolean => {
  if (JWT.test(key)) return true
  const dash = key.indexOf("-")
  const secret = dash === -1 ? key : key.slice(dash + 1)
  return secret.length >= 40 && /^[A-Za-z0-9_-]+$/.test(secret)
}

/** The `Authorization` value the protocol wants for a key (§2.3). */
export const authorizationHeader = (apiKey: string): string =>
  `Basic ${Buffer.from(`api:${apiKey}`, "utf8").toString("base64")}`

/** A fresh well-formed key: 40 characters of `[a-z0-9]`. */
export const sampleApiKey = (): string => {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  return [...randomBytes(40)].map((byte) => alphabet[byte % alphabet.length]).join("")
}

/** The key of a `Basic api:<key>` header, or `null`. */
const decodeBasic = (header: string | undefined): string | null => {
  const match = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (match === null) return null
  const decoded = Buffer.from(match[1] ?? "", "base64").toString("utf8")
  return decoded.startsWith("api:") ? decoded.slice("api:".length) : null
}

// ---------------------------------------------------------------------------------------------------------------
// Routing and replies
// ---------------------------------------------------------------------------------------------------------------

type Route =
  | { readonly channel: "graphql"; readonly path: string }
  | { readonly channel: "file_stream"; readonly path: string; readonly key: RunKey }
  | { readonly channel: "upload"; readonly path: string; readonly key: RunKey; readonly name: string }
  | { readonly channel: "other"; readonly path: string }

const FILE_STREAM = /^\/files\/([^/]+)\/([^/]+)\/([^/]+)\/file_stream$/
const STORAGE = /^\/storage\/([^/]+)\/([^/]+)\/([^/]+)\/(.+)$/

/** Decodes `/`-separated, percent-encoded segments; `undefined` when one is empty or badly encoded. */
const decodePath = (path: string | undefined): string | undefined => {
  try {
    const segments = (path ?? "").split("/").map(decodeURIComponent)
    return segments.every((segment) => segment !== "") ? segments.join("/") : undefined
  } catch {
    return undefined
  }
}

const route = (pathname: string, prefix: string): Route => {
  const storage = STORAGE.exec(pathname)
  if (storage !== null) {
    const [entity, project, name, filePath] = storage.slice(1).map(decodePath)
    if (entity && project && name && filePath) {
      return { channel: "upload", path: pathname, key: { entity, project, name }, name: filePath }
    }
  }
  if (prefix !== "" && pathname !== prefix && !pathname.startsWith(`${prefix}/`)) {
    return { channel: "other", path: pathname }
  }
  const path = pathname.slice(prefix.length)
  if (path === "/graphql") return { channel: "graphql", path }
  const [entity, project, name] = (FILE_STREAM.exec(path)?.slice(1) ?? []).map(decodePath)
  if (entity && project && name) return { channel: "file_stream", path, key: { entity, project, name } }
  return { channel: "other", path }
}

interface Reply {
  readonly status: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Runs once the whole answer was handed to the socket: the client can have read it. */
  readonly onSent?: (() => void) | undefined
}

/** Error body in the form each channel's clients parse (§3.4): GraphQL `errors`, elsewhere `error`. */
const errorReply = (channel: Channel, status: number, message: string): Reply => ({
  status,
  body: channel === "graphql" ? { errors: [{ message }] } : { error: message }
})

const statusMessage = (status: number): string =>
  status === 401
    ? "user is not logged in"
    : status === 403
    ? "permission denied"
    : (http.STATUS_CODES[status] ?? `status ${status}`).toLowerCase()

const faultReply = (channel: Channel, action: Extract<FaultAction, { kind: "status" }>): Reply => {
  const base = errorReply(channel, action.status, statusMessage(action.status))
  const retryAfter = action.retryAfter === undefined ? {} : { "retry-after": String(action.retryAfter) }
  return { status: action.status, body: action.body ?? base.body, headers: { ...retryAfter, ...action.headers } }
}

const readBody = (request: http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
    request.on("close", () => {
      if (!request.complete) reject(new Error("the client closed the request before sending all of it"))
    })
  })

const header = (request: http.IncomingMessage, name: string): string | null => {
  const value = request.headers[name]
  return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value
}

/** The request's headers whose (lower-cased) names pass `keep`, repeated values joined. */
const headerRecord = (request: http.IncomingMessage, keep: (name: string) => boolean): Record<string, string> => {
  const record: Record<string, string> = {}
  for (const name of Object.keys(request.headers)) {
    const value = header(request, name)
    if (keep(name) && value !== null) record[name] = value
  }
  return record
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const DEFAULT_FEATURES: ReadonlyArray<ServerFeature> = [
  { name: "EXPAND_DEFINED_METRIC_GLOBS", isEnabled: true },
  { name: "STRUCTURED_CONSOLE_LOGS", isEnabled: false },
  { name: "FILESTREAM_GZIP", isEnabled: false }
]

const DEFAULT_UPLOAD_HEADERS: ReadonlyArray<string> = ["Content-Type: application/octet-stream"]

// ---------------------------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------------------------

type MutableRecord = { -readonly [K in keyof RequestRecord]: RequestRecord[K] }

class WandbTestServer implements TestServer {
  port = 0
  origin = ""
  url = ""
  private server: http.Server | undefined
  private closed = false
  /** Bumped by every stop, so a request delayed across a stop knows its server died. */
  private generation = 0

  private store: Store
  private signatures = new Map<string, SignedUpload>()
  private log: Array<MutableRecord> = []
  private channelCounts = new Map<string, number>()
  private faults: FaultSettings
  private apiKeys: ReadonlyArray<string> | undefined
  private fileStreamReply: FileStreamReplyOptions = {}
  private readonly waiters = new Set<() => void>()
  private readonly viewer: ViewerInfo

  constructor(private readonly options: TestServerOptions, private readonly prefix: string) {
    this.viewer = {
      entity: options.viewer?.entity ?? "alice",
      username: options.viewer?.username ?? options.viewer?.entity ?? "alice",
      email: options.viewer?.email ?? "alice@example.com",
      teams: options.viewer?.teams ?? ["ml-team"],
      flags: options.viewer?.flags ?? { code_saving_enabled: false }
    }
    this.store = new Store(this.viewer.entity)
    this.faults = options.faults ?? {}
    this.apiKeys = options.apiKeys
  }

  get running(): boolean {
    return this.server !== undefined
  }

  /** Binds the first time; port 0 lets the OS choose, and later restarts reuse what it chose. */
  async start(port: number): Promise<void> {
    this.port = await this.bind(port)
    this.origin = `http://127.0.0.1:${this.port}`
    this.url = `${this.origin}${this.prefix}`
  }

  private async bind(port: number): Promise<number> {
    const server = http.createServer(this.handler)
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen({ port, host: "127.0.0.1" }, () => {
        server.off("error", reject)
        resolve()
      })
    })
    this.server = server
    return (server.address() as AddressInfo).port
  }

  readonly handler: http.RequestListener = (request, response) => {
    this.handle(request, response).catch((error: unknown) => {
      // a bug in the server itself: answer 500 with the reason so the failing test shows it
      if (!response.headersSent && !response.destroyed) {
        response.writeHead(500, { "content-type": "application/json" })
        response.end(JSON.stringify({ error: `test server failure: ${String(error)}` }))
      }
    })
  }

  async close(): Promise<void> {
    this.closed = true
    await this.stop()
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    this.generation++
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await closed
  }

  async restart(): Promise<void> {
    if (this.closed) throw new Error("the test server was closed; start a new one")
    if (this.server !== undefined) return
    await this.bind(this.port)
  }

  reset(): void {
    this.store = new Store(this.viewer.entity)
    this.signatures = new Map()
    this.log = []
    this.channelCounts = new Map()
    this.faults = this.options.faults ?? {}
    this.apiKeys = this.options.apiKeys
    this.fileStreamReply = {}
  }

  setFaults(faults?: FaultSettings): void {
    this.faults = faults ?? {}
  }

  setApiKeys(keys?: ReadonlyArray<string>): void {
    this.apiKeys = keys
  }

  setFileStreamReply(reply: FileStreamReplyOptions): void {
    this.fileStreamReply = reply
  }

  stopRun(name: string, where?: RunWhere): void {
    this.record(name, where).stopped = true
  }

  deleteRun(name: string, where?: RunWhere): void {
    this.store.delete(this.record(name, where).key)
  }

  seedRun(seed: RunSeed): RunView {
    const key = { entity: seed.entity ?? this.viewer.entity, project: seed.project, name: seed.name }
    this.store.runs.delete(keyString(key))
    const run = this.store.create(key)
    if (seed.displayName !== undefined) run.displayName = seed.displayName
    if (seed.config !== undefined) run.config = stringifyExtendedJson(seed.config)
    if (seed.tags !== undefined) run.tags = [...seed.tags]
    if (seed.notes !== undefined) run.notes = seed.notes
    const line = (value: Readonly<Record<string, unknown>> | string) =>
      typeof value === "string" ? value : stringifyExtendedJson(value)
    const seedFile = (name: string, lines: ReadonlyArray<Readonly<Record<string, unknown>> | string> | undefined) => {
      if (lines === undefined) return
      const stored = file(run, name)
      // seeded lines count as acknowledged: they belong to an earlier, finished conversation
      stored.write(0, lines.map(line)).forEach((index) => stored.acknowledge(index))
    }
    seedFile(HISTORY, seed.history)
    seedFile(SUMMARY, seed.summary === undefined ? undefined : [seed.summary])
    seedFile(EVENTS, seed.events)
    seedFile(OUTPUT, seed.output)
    return viewRun(run)
  }

  runs(): Array<RunView> {
    return [...this.store.runs.values()].map(viewRun)
  }

  run(name: string, where?: RunWhere): RunView {
    return viewRun(this.record(name, where))
  }

  findRun(name: string, where?: RunWhere): RunView | undefined {
    const matches = this.matching(name, where)
    return matches.length === 1 && matches[0] !== undefined ? viewRun(matches[0]) : undefined
  }

  requests(filter?: RequestFilter): Array<RequestRecord> {
    return this.log
      .filter((entry) => filter?.channel === undefined || entry.channel === filter.channel)
      .filter((entry) => filter?.operation === undefined || entry.operation === filter.operation)
      .map((entry) => ({ ...entry }))
  }

  waitFor<T>(
    probe: (server: TestServer) => T | undefined | null | false,
    options?: { readonly timeoutMs?: number }
  ): Promise<T> {
    const timeoutMs = options?.timeoutMs ?? 10_000
    return new Promise<T>((resolve, reject) => {
      let lastError: unknown = undefined
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      const check = () => {
        try {
          const value = probe(this)
          if (value !== undefined && value !== null && value !== false) {
            done()
            resolve(value)
          }
        } catch (error) {
          lastError = error
        }
      }
      const timer = setTimeout(() => {
        done()
        const reason = lastError === undefined ? "" : `; the probe last threw: ${String(lastError)}`
        reject(new Error(`waitFor gave up after ${timeoutMs} ms${reason}`))
      }, timeoutMs)
      this.waiters.add(check)
      check()
    })
  }

  snapshot(): Record<string, unknown> {
    const attempt = <A>(read: () => A, fallback: unknown): A | unknown => {
      try {
        return read()
      } catch (error) {
        return { unparsable: fallback, error: String(error) }
      }
    }
    const requests: Record<string, number> = {}
    for (const entry of this.log) {
      const label = `${entry.channel} ${entry.operation ?? ""} ${entry.status ?? entry.outcome}`.replace(/\s+/g, " ")
      requests[label] = (requests[label] ?? 0) + 1
    }
    return {
      url: this.url,
      requests,
      runs: this.runs().map((run) => ({
        path: `${run.entity}/${run.project}/${run.name}`,
        displayName: run.displayName,
        state: run.state,
        exitcode: run.exitcode,
        preempting: run.preempting,
        stopped: run.stopped,
        upsertCount: run.upsertCount,
        tags: run.tags,
        config: attempt(() => run.config, run.configJson),
        summary: attempt(() => run.summary, run.files[SUMMARY]?.lines.at(-1)),
        historyLineCount: run.historyLineCount,
        history: attempt(() => run.history, run.files[HISTORY]?.lines),
        historyDuplicates: run.historyDuplicates,
        eventsLineCount: run.eventsLineCount,
        output: run.output,
        uploads: Object.fromEntries(Object.entries(run.uploads).map(([name, bytes]) => [name, bytes.byteLength])),
        uploaded: run.uploaded,
        fileStreamRequests: run.fileStreamRequests,
        heartbeats: run.heartbeats
      }))
    }
  }

  // -------------------------------------------------------------------------------------------------------------

  private matching(name: string, where?: RunWhere): Array<RunRecord> {
    return [...this.store.runs.values()].filter((run) =>
      run.key.name === name &&
      (where?.entity === undefined || run.key.entity === where.entity) &&
      (where?.project === undefined || run.key.project === where.project)
    )
  }

  private record(name: string, where?: RunWhere): RunRecord {
    const matches = this.matching(name, where)
    if (matches.length === 1 && matches[0] !== undefined) return matches[0]
    const known = [...this.store.runs.keys()].join(", ") || "none"
    const problem = matches.length === 0 ? "no run" : `${matches.length} runs`
    throw new Error(`the test server has ${problem} named ${JSON.stringify(name)}; known runs: ${known}`)
  }

  private notify(): void {
    for (const check of [...this.waiters]) check()
  }

  private count(label: string): number {
    const next = (this.channelCounts.get(label) ?? 0) + 1
    this.channelCounts.set(label, next)
    return next
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const receivedAt = Date.now()
    const generation = this.generation
    const url = new URL(request.url ?? "/", this.origin)
    const target = route(url.pathname, this.prefix)

    let raw: Buffer
    try {
      raw = await readBody(request)
    } catch {
      return
    }

    // Decode before the fault rule runs, because rules may select on the GraphQL operation name.
    const contentEncoding = header(request, "content-encoding")
    let body: unknown = undefined
    let decodeError: string | undefined
    if (target.channel === "graphql" || target.channel === "file_stream") {
      try {
        const text = (contentEncoding?.toLowerCase() === "gzip" ? gunzipSync(raw) : raw).toString("utf8")
        body = JSON.parse(text)
      } catch (error) {
        const what = contentEncoding === null ? "JSON" : `${contentEncoding} JSON`
        decodeError = `request body is not ${what}: ${String(error)}`
      }
    }
    const operation = target.channel === "graphql" ? operationOf(body) : null

    const entry: MutableRecord = {
      n: this.log.length + 1,
      channel: target.channel,
      method: request.method ?? "GET",
      path: target.path,
      search: url.search,
      operation,
      receivedAt,
      status: null,
      outcome: "pending",
      fault: null,
      hadAuthorization: request.headers.authorization !== undefined,
      apiKey: decodeBasic(request.headers.authorization),
      userAgent: header(request, "user-agent"),
      contentType: header(request, "content-type"),
      contentEncoding,
      wandbHeaders: headerRecord(request, (name) => name.startsWith("x-wandb-")),
      body,
      bodyBytes: raw.byteLength
    }
    this.log.push(entry)
    this.notify()
    const channelN = this.count(target.channel)
    const faultRequest: FaultRequest = {
      n: entry.n,
      channelN,
      operationN: operation === null ? channelN : this.count(`graphql:${operation}`),
      channel: target.channel,
      method: entry.method,
      path: entry.path,
      operation
    }

    const { latency, rule } = this.faults
    const delay = typeof latency === "function" ? latency(faultRequest) : latency ?? 0
    if (delay > 0) await sleep(delay)
    // The server died while this request waited: nothing of it may reach the state.
    if (generation !== this.generation) {
      entry.outcome = "dropped"
      return
    }

    const action = rule?.(faultRequest) ?? { kind: "pass" }
    if (action.kind !== "pass") entry.fault = action.kind
    switch (action.kind) {
      case "status":
        return this.send(response, entry, faultReply(target.channel, action))
      case "hang":
        entry.outcome = "held"
        this.notify()
        return
      case "drop":
        if (action.applied === true) this.process(target, request, url, raw, body, decodeError)
        entry.outcome = "dropped"
        request.socket.destroy()
        this.notify()
        return
      case "pass":
        return this.send(response, entry, this.process(target, request, url, raw, body, decodeError))
    }
  }

  private send(response: http.ServerResponse, entry: MutableRecord, reply: Reply): void {
    const isBytes = reply.body instanceof Uint8Array
    const payload = isBytes ? reply.body : reply.body === undefined ? "" : JSON.stringify(reply.body)
    const contentType = isBytes || reply.body === undefined ? {} : { "content-type": "application/json" }
    if (reply.onSent !== undefined) response.once("finish", reply.onSent)
    response.writeHead(reply.status, { ...contentType, ...reply.headers })
    response.end(payload)
    entry.status = reply.status
    entry.outcome = "answered"
    this.notify()
  }

  private process(
    target: Route,
    request: http.IncomingMessage,
    url: URL,
    raw: Buffer,
    body: unknown,
    decodeError: string | undefined
  ): Reply {
    const expected = target.channel === "upload" ? "PUT" : "POST"
    if (target.channel === "other") return errorReply(target.channel, 404, `no such endpoint: ${target.path}`)
    if (request.method !== expected) return errorReply(target.channel, 405, `${target.path} accepts ${expected} only`)
    if (target.channel === "upload") return this.upload(target, request, url, raw)

    if (!this.authorized(request.headers.authorization)) {
      return errorReply(target.channel, 401, statusMessage(401))
    }
    if (decodeError !== undefined) return errorReply(target.channel, 400, decodeError)
    if (target.channel === "graphql") return executeGraphql(this.graphqlContext(), body)
    return this.fileStream(target.key, request, body)
  }

  private authorized(authorization: string | undefined): boolean {
    const key = decodeBasic(authorization)
    if (key === null) return false
    return this.apiKeys === undefined ? isWellFormedApiKey(key) : this.apiKeys.includes(key)
  }

  private graphqlContext(): GraphqlContext {
    return {
      store: this.store,
      viewer: this.viewer,
      features: this.options.features ?? DEFAULT_FEATURES,
      uploadHeaders: this.options.uploadHeaders ?? DEFAULT_UPLOAD_HEADERS,
      origin: this.origin,
      signatures: this.signatures
    }
  }

  private fileStream(key: RunKey, request: http.IncomingMessage, body: unknown): Reply {
    const run = this.store.find(key)
    if (run === undefined) return errorReply("file_stream", 404, "run not found")
    const decoded = decodeFileStream(body)
    if (typeof decoded === "string") return errorReply("file_stream", 400, decoded)

    const encoding = header(request, "content-encoding")
    if (encoding !== null) run.contentEncodings.add(encoding)
    const writes: Array<LineWrite> = applyFileStream(run, decoded)
    const rateLimit = this.fileStreamReply.rateLimit
    return {
      status: 200,
      body: { exitcode: null, limits: this.fileStreamReply.limits ?? {}, stopped: run.stopped },
      headers: rateLimit === undefined ? undefined : {
        "ratelimit-remaining": String(rateLimit.remaining),
        "ratelimit-reset": String(rateLimit.reset)
      },
      onSent: () => acknowledge(run, writes)
    }
  }

  private upload(
    target: Extract<Route, { channel: "upload" }>,
    request: http.IncomingMessage,
    url: URL,
    raw: Buffer
  ): Reply {
    const signed = this.signatures.get(url.searchParams.get("sig") ?? "")
    const matches = signed !== undefined && signed.name === target.name &&
      keyString(signed.key) === keyString(target.key)
    if (!matches) return errorReply("upload", 403, "signature does not match this upload URL")
    const run = this.store.find(target.key)
    if (run === undefined) return errorReply("upload", 404, "run not found")

    run.uploads.push({
      name: target.name,
      bytes: new Uint8Array(raw),
      headers: headerRecord(request, () => true),
      hadAuthorization: request.headers.authorization !== undefined,
      receivedAt: Date.now()
    })
    return { status: 200, body: undefined }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------------------------

/**
 * Starts a test server on 127.0.0.1. Close it with `close()`, or use `TestServer.scoped` in Effect tests.
 */
export const startTestServer = async (options: TestServerOptions = {}): Promise<TestServer> => {
  const prefix = (options.pathPrefix ?? "").replace(/\/+$/, "")
  if (prefix !== "" && !prefix.startsWith("/")) throw new Error(`pathPrefix must start with "/": ${prefix}`)
  const server = new WandbTestServer(options, prefix)
  await server.start(options.port ?? 0)
  return server
}

/**
 * The Effect entry: `TestServer.scoped(options)` starts a server and closes it when the scope closes.
 *
 * @example
 * it.scoped("streams history", () =>
 *   Effect.gen(function*() {
 *     const server = yield* TestServer.scoped()
 *     // … run the client against server.url …
 *     expect(server.run("3k9x2m1p").history).toHaveLength(3)
 *   }))
 */
export const TestServer = {
  scoped: (options?: TestServerOptions): Effect.Effect<TestServer, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.promise(() => startTestServer(options)),
      (server) => Effect.promise(() => server.close())
    )
}
