/**
 * The HTTP side of the W&B protocol: the GraphQL operations a run needs, the file_stream endpoint and
 * uploads to signed URLs, each with the retry policy of its channel (protocol §3). The service is a
 * factory: `connect` binds a base URL and an API key and returns a `ServerClient`.
 *
 * Credentials go only to the base URL (protocol §2.3): GraphQL and file_stream carry
 * `Authorization: Basic base64("api:" + key)`, signed uploads never do. The key never appears in an error.
 *
 * @since 0.1.0
 */
import type * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Backoff from "../domain/Backoff.js"
import { CredentialsRejected, NetworkError, ServerError } from "../domain/Errors.js"
import { SDK_VERSION } from "../domain/Records.js"

// -----------------------------------------------------------------------------
// configuration
// -----------------------------------------------------------------------------

/**
 * Retry knobs of one channel. Unset fields keep the channel's default (`defaultRetry`).
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  /** Retries after the first attempt. */
  readonly retryMax?: number | undefined
  /** Wait before the first retry; doubles with every retry, plus up to 25% jitter. */
  readonly waitMin?: Duration.DurationInput | undefined
  readonly waitMax?: Duration.DurationInput | undefined
  /** Time allowed for one attempt, answer body included; `Duration.infinity` for none. */
  readonly attemptTimeout?: Duration.DurationInput | undefined
}

/**
 * Retry settings with every field resolved.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryPolicy {
  readonly retryMax: number
  readonly waitMin: Duration.Duration
  readonly waitMax: Duration.Duration
  readonly attemptTimeout: Duration.Duration
}

/**
 * The defaults of protocol §3.2. file_stream keeps trying for about seven days, as the official client
 * does, because the run's data is safe on disk meanwhile; uploads have no time limit per attempt because
 * a large file may take long.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRetry: {
  readonly graphql: RetryPolicy
  readonly fileStream: RetryPolicy
  readonly upload: RetryPolicy
} = {
  graphql: {
    retryMax: 20,
    waitMin: Duration.seconds(2),
    waitMax: Duration.seconds(60),
    attemptTimeout: Duration.seconds(30)
  },
  fileStream: {
    retryMax: 10085,
    waitMin: Duration.seconds(2),
    waitMax: Duration.seconds(60),
    attemptTimeout: Duration.seconds(180)
  },
  upload: {
    retryMax: 20,
    waitMin: Duration.seconds(2),
    waitMax: Duration.seconds(60),
    attemptTimeout: Duration.infinity
  }
}

/**
 * Where and as whom to talk to a W&B server.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionConfig {
  /** The API's base URL, e.g. `https://api.wandb.ai`; it may end in a path the endpoints go under. */
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  /** Sent as `X-WANDB-USERNAME` on GraphQL requests; empty when unset. */
  readonly username?: string | undefined
  /** Sent as `X-WANDB-USER-EMAIL` on GraphQL requests; empty when unset. */
  readonly email?: string | undefined
  /** Default `wandb-effect/<version>`. */
  readonly userAgent?: string | undefined
  /** Added to every request, uploads included. They cannot replace `Authorization` or the `X-WANDB-*` headers. */
  readonly extraHeaders?: Readonly<Record<string, string>> | undefined
  readonly graphqlRetry?: RetryOptions | undefined
  readonly fileStreamRetry?: RetryOptions | undefined
  readonly uploadRetry?: RetryOptions | undefined
  /**
   * Told of every failed attempt that will be retried (`"HTTP 500"`, `"connection refused"`), so a caller
   * that gives up on its own deadline can say what went wrong.
   */
  readonly onRetry?: ((operation: string, reason: string) => void) | undefined
}

// -----------------------------------------------------------------------------
// operations
// -----------------------------------------------------------------------------

/**
 * The account behind the API key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Viewer {
  /** The account's default entity. */
  readonly entity: string | undefined
  readonly username: string | undefined
  readonly email: string | undefined
}

/**
 * The variables of `UpsertBucket` (protocol §4.6.1). Unset fields are sent as `null`, which the server
 * reads as "leave unchanged".
 *
 * @since 0.1.0
 * @category models
 */
export interface UpsertBucketInput {
  /** Storage ID of an existing run (from RunResumeStatus or an earlier upsert). */
  readonly id?: string | undefined
  /** The run ID. */
  readonly name?: string | undefined
  readonly project?: string | undefined
  readonly entity?: string | undefined
  readonly groupName?: string | undefined
  readonly description?: string | undefined
  /** The human-readable run name; the server makes one up when it is unset on creation. */
  readonly displayName?: string | undefined
  readonly notes?: string | undefined
  readonly commit?: string | undefined
  /** The config as JSON text of `{"key": {"value": v}}` (protocol §4.6.2). */
  readonly config?: string | undefined
  readonly host?: string | undefined
  readonly debug?: boolean | undefined
  readonly program?: string | undefined
  readonly repo?: string | undefined
  readonly jobType?: string | undefined
  readonly state?: string | undefined
  readonly sweep?: string | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  /** JSON text; the summary normally travels through file_stream instead. */
  readonly summaryMetrics?: string | undefined
}

/**
 * The run as the server stored it. `project` and `entity` are the server's canonical names, which the
 * file_stream URL must use.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpsertedRun {
  readonly storageId: string
  readonly runId: string
  readonly displayName: string | undefined
  readonly sweepName: string | undefined
  readonly project: string
  readonly entity: string
  /** History lines the server holds; history continues at this offset. */
  readonly historyLineCount: number
  /** Whether this upsert created the run. */
  readonly inserted: boolean
}

/**
 * Names one run.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunPath {
  readonly entity: string
  readonly project: string
  readonly runId: string
}

/**
 * What `RunResumeStatus` looks for; without an entity the server uses the viewer's default one.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunResumeStatusInput {
  readonly entity?: string | undefined
  readonly project: string
  readonly runId: string
}

/**
 * The stored state of a run (protocol §4.5). JSON fields are kept as the text the server sent (W&B's
 * JSON dialect, which allows `NaN` and `Infinity`): deciding whether they are usable belongs to the resume
 * decision, which must report an unreadable run rather than fail here.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResumeStatus {
  /** The project and entity names the server resolved. */
  readonly project: string
  readonly entity: string | undefined
  readonly storageId: string
  readonly runId: string
  readonly displayName: string | undefined
  readonly notes: string | undefined
  readonly tags: ReadonlyArray<string> | undefined
  readonly historyLineCount: number | undefined
  readonly eventsLineCount: number | undefined
  readonly logLineCount: number | undefined
  /** JSON object text. */
  readonly summaryMetrics: string | undefined
  /** JSON object text of `{"key": {"value": v}}`. */
  readonly config: string | undefined
  /** JSON text of an array of history lines, the last of which matters. */
  readonly historyTail: string | undefined
  /** JSON text of an array of system-metrics lines. */
  readonly eventsTail: string | undefined
  /** JSON object text holding the run's `_wandb.t`, if it has one: only then did a client start it. */
  readonly wandbConfig: string | undefined
}

/**
 * The files to ask upload URLs for, as run-relative paths with `/`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CreateRunFilesInput extends RunPath {
  readonly files: ReadonlyArray<string>
}

/**
 * Upload URLs for a batch of files, and the headers every upload of the batch must send.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunFiles {
  readonly uploadHeaders: Record<string, string>
  /** One per requested file, in order; no URL means the server does not want the file. */
  readonly files: Array<{ readonly name: string; readonly uploadUrl: string | undefined }>
}

/**
 * One file_stream request (protocol §5.2). Empty fields are left out of the JSON; an empty request is a
 * heartbeat.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileStreamRequest {
  /** Lines to write: `content[i]` becomes line `offset + i` of the file. */
  readonly files?: Record<string, { readonly offset: number; readonly content: ReadonlyArray<string> }>
  /** Run files whose upload completed since the last request. */
  readonly uploaded?: ReadonlyArray<string>
  readonly preempting?: true
  readonly complete?: true
  readonly exitcode?: number
}

/**
 * What the server said to a file_stream request.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileStreamResponse {
  /** Someone pressed Stop in the UI; the run should end. */
  readonly stopped: boolean
}

/**
 * A connection to one W&B server with one API key.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerClient {
  readonly baseUrl: string
  /** The account behind the key; 401 and 403 become `CredentialsRejected`. */
  readonly viewer: Effect.Effect<Viewer, CredentialsRejected | ServerError | NetworkError>
  /** Enabled feature names; empty when the server cannot say (old servers answer a validation error). */
  readonly serverFeatures: Effect.Effect<ReadonlySet<string>>
  readonly upsertBucket: (input: UpsertBucketInput) => Effect.Effect<UpsertedRun, ServerError | NetworkError>
  /** `undefined` when the project or the run does not exist. */
  readonly runResumeStatus: (
    input: RunResumeStatusInput
  ) => Effect.Effect<ResumeStatus | undefined, ServerError | NetworkError>
  readonly createRunFiles: (input: CreateRunFilesInput) => Effect.Effect<RunFiles, ServerError | NetworkError>
  /** `PUT`s the bytes to a signed URL, without W&B credentials. */
  readonly uploadFile: (
    url: string,
    headers: Readonly<Record<string, string>>,
    body: Uint8Array
  ) => Effect.Effect<void, ServerError | NetworkError>
  readonly fileStream: (
    run: RunPath,
    request: FileStreamRequest
  ) => Effect.Effect<FileStreamResponse, ServerError | NetworkError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ServerApi extends Context.Tag("wandb-effect/ServerApi")<ServerApi, {
  readonly connect: (config: ConnectionConfig) => ServerClient
}>() {}

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

/**
 * Whether a request to `target` may carry the credentials of `baseUrl`: same scheme, host and port, and a
 * path at or under the base URL's path (protocol §2.3).
 *
 * @since 0.1.0
 * @category helpers
 */
export const mayCarryCredentials = (baseUrl: string, target: string): boolean => {
  let base: URL
  let url: URL
  try {
    base = new URL(baseUrl)
    url = new URL(target)
  } catch {
    return false
  }
  if (base.protocol !== url.protocol || base.hostname !== url.hostname || base.port !== url.port) return false
  const prefix = base.pathname.replace(/\/+$/, "")
  return prefix === "" || url.pathname === prefix || url.pathname.startsWith(`${prefix}/`)
}

/**
 * Reads CreateRunFiles' `uploadHeaders`: `"Name: value"` split at the first colon, the value trimmed;
 * entries without a colon or a name are skipped.
 *
 * @since 0.1.0
 * @category helpers
 */
export const parseUploadHeaders = (lines: ReadonlyArray<string>): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon === -1) continue
    const name = line.slice(0, colon).trim()
    if (name === "") continue
    headers[name] = line.slice(colon + 1).trim()
  }
  return headers
}

/**
 * The JSON body of a file_stream request, with empty fields left out.
 *
 * @since 0.1.0
 * @category helpers
 */
export const fileStreamBody = (request: FileStreamRequest): Record<string, unknown> => {
  const body: Record<string, unknown> = {}
  const files = Object.entries(request.files ?? {})
  if (files.length > 0) {
    body.files = Object.fromEntries(
      files.map(([name, { content, offset }]) => [name, { offset, content: [...content] }])
    )
  }
  if (request.uploaded !== undefined && request.uploaded.length > 0) body.uploaded = [...request.uploaded]
  if (request.preempting === true) body.preempting = true
  if (request.complete === true) body.complete = true
  if (request.exitcode !== undefined) body.exitcode = request.exitcode
  return body
}

/**
 * The message a server put in an error body (protocol §3.4): `{"error": "…"}`, `{"error": {"message"}}`
 * or `{"errors": ["…", {"message"}]}`, several joined with `; `. Other bodies are returned trimmed.
 *
 * @since 0.1.0
 * @category helpers
 */
export const errorMessageOf = (body: string): string | undefined => {
  const trimmed = body.trim()
  if (trimmed === "") return undefined
  const json = parseJson(trimmed)
  if (Either.isLeft(json)) return trimmed.slice(0, 1000)
  const messageOf = (item: unknown): string | undefined =>
    typeof item === "string"
      ? item
      : Predicate.isRecord(item) && typeof item.message === "string"
      ? item.message
      : undefined
  if (Predicate.isRecord(json.right)) {
    const { error, errors } = json.right
    const single = messageOf(error)
    if (single !== undefined) return single
    if (Array.isArray(errors)) {
      const messages = errors.flatMap((item) => messageOf(item) ?? [])
      if (messages.length > 0) return messages.join("; ")
    }
  }
  return trimmed.slice(0, 1000)
}

const parseJson = (text: string): Either.Either<unknown, unknown> => Either.try(() => JSON.parse(text) as unknown)

const resolvePolicy = (defaults: RetryPolicy, options: RetryOptions | undefined): RetryPolicy => ({
  retryMax: options?.retryMax ?? defaults.retryMax,
  waitMin: options?.waitMin === undefined ? defaults.waitMin : Duration.decode(options.waitMin),
  waitMax: options?.waitMax === undefined ? defaults.waitMax : Duration.decode(options.waitMax),
  attemptTimeout: options?.attemptTimeout === undefined
    ? defaults.attemptTimeout
    : Duration.decode(options.attemptTimeout)
})

/** A URL fit for logs and error messages: signed upload URLs carry their signature in the query. */
const withoutQuery = (url: string): string => url.replace(/[?#].*$/, "")

// -----------------------------------------------------------------------------
// GraphQL documents (protocol §4)
// -----------------------------------------------------------------------------

const VIEWER = `query Viewer {
  viewer { id entity username email flags teams { edges { node { name } } } }
}`

const SERVER_FEATURES = `query ServerFeaturesQuery {
  serverInfo { features { name isEnabled } }
}`

const RUN_RESUME_STATUS = `query RunResumeStatus($project: String, $entity: String, $name: String!) {
  model(name: $project, entityName: $entity) {
    id
    name
    entity { id name }
    bucket(name: $name, missingOk: true) {
      id name summaryMetrics displayName logLineCount historyLineCount eventsLineCount
      historyTail eventsTail config tags notes wandbConfig(keys: ["t"])
    }
  }
}`

const UPSERT_BUCKET = `mutation UpsertBucket(
  $id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String,
  $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean,
  $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!],
  $summaryMetrics: JSONString
) {
  upsertBucket(input: {
    id: $id, name: $name, modelName: $project, entityName: $entity, groupName: $groupName,
    description: $description, displayName: $displayName, notes: $notes, commit: $commit, config: $config,
    host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state,
    sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics
  }) {
    bucket {
      id name displayName description config sweepName
      project { id name entity { id name } }
      historyLineCount
    }
    inserted
  }
}`

const CREATE_RUN_FILES = `mutation CreateRunFiles(
  $entity: String!, $project: String!, $run: String!, $files: [String!]!
) {
  createRunFiles(input: { entityName: $entity, projectName: $project, runName: $run, files: $files }) {
    runID
    uploadHeaders
    files { name uploadUrl }
  }
}`

// Answers are decoded leniently: old servers leave fields null, and unknown fields are ignored.
const nullable = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { nullable: true })

const ViewerData = Schema.Struct({
  viewer: Schema.NullOr(Schema.Struct({
    entity: nullable(Schema.String),
    username: nullable(Schema.String),
    email: nullable(Schema.String)
  }))
})

const ServerFeaturesData = Schema.Struct({
  serverInfo: Schema.NullOr(Schema.Struct({
    features: nullable(Schema.Array(Schema.NullOr(Schema.Struct({ name: Schema.String, isEnabled: Schema.Boolean }))))
  }))
})

const RunResumeStatusData = Schema.Struct({
  model: Schema.NullOr(Schema.Struct({
    name: Schema.String,
    entity: nullable(Schema.Struct({ name: Schema.String })),
    bucket: Schema.NullOr(Schema.Struct({
      id: Schema.String,
      name: Schema.String,
      displayName: nullable(Schema.String),
      notes: nullable(Schema.String),
      tags: nullable(Schema.Array(Schema.String)),
      historyLineCount: nullable(Schema.Number),
      eventsLineCount: nullable(Schema.Number),
      logLineCount: nullable(Schema.Number),
      summaryMetrics: nullable(Schema.String),
      config: nullable(Schema.String),
      historyTail: nullable(Schema.String),
      eventsTail: nullable(Schema.String),
      wandbConfig: nullable(Schema.String)
    }))
  }))
})

const UpsertBucketData = Schema.Struct({
  upsertBucket: Schema.NullOr(Schema.Struct({
    bucket: Schema.NullOr(Schema.Struct({
      id: Schema.String,
      name: Schema.String,
      displayName: nullable(Schema.String),
      sweepName: nullable(Schema.String),
      project: Schema.Struct({ name: Schema.String, entity: Schema.Struct({ name: Schema.String }) }),
      historyLineCount: nullable(Schema.Number)
    })),
    inserted: nullable(Schema.Boolean)
  }))
})

const CreateRunFilesData = Schema.Struct({
  createRunFiles: Schema.NullOr(Schema.Struct({
    uploadHeaders: nullable(Schema.Array(Schema.String)),
    files: Schema.Array(Schema.Struct({ name: Schema.String, uploadUrl: nullable(Schema.String) }))
  }))
})

// -----------------------------------------------------------------------------
// constructor
// -----------------------------------------------------------------------------

/** One attempt's outcome: an answer with its body read, or no answer at all. */
type Attempt =
  | {
    readonly _tag: "Answer"
    readonly status: number
    readonly headers: Headers.Headers
    readonly body: string
  }
  | { readonly _tag: "NoAnswer"; readonly reason: string; readonly retryable: boolean }

type Answer = Extract<Attempt, { readonly _tag: "Answer" }>

// Failures that would repeat identically on every attempt: a URL that cannot be requested, a body that
// cannot be encoded, a certificate the client does not trust.
const CERTIFICATE_ERRORS = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
])

/** Messages and codes down the cause chain: fetch says "fetch failed" and puts the reason one level deeper. */
const causesOf = (error: HttpClientError.HttpClientError) => {
  const messages: Array<string> = []
  const codes: Array<string> = []
  let cause: unknown = error.cause
  for (let depth = 0; depth < 4 && typeof cause === "object" && cause !== null; depth++) {
    const { code, message } = cause as { readonly message?: unknown; readonly code?: unknown }
    if (typeof message === "string" && message !== "" && !messages.includes(message)) messages.push(message)
    if (typeof code === "string") codes.push(code)
    cause = (cause as { readonly cause?: unknown }).cause
  }
  return { messages, codes }
}

const noAnswer = (error: HttpClientError.HttpClientError): Attempt => {
  const { codes, messages } = causesOf(error)
  const detail = messages.length > 0 ? messages.join(": ") : codes[0] ?? error.reason
  if (error._tag === "ResponseError") {
    return { _tag: "NoAnswer", reason: `the answer broke off (${detail})`, retryable: true }
  }
  const final = error.reason !== "Transport" || codes.some((code) => CERTIFICATE_ERRORS.has(code))
  const reason = error.reason === "InvalidUrl" ? `invalid URL (${detail})` : detail
  return { _tag: "NoAnswer", reason, retryable: !final }
}

const makeClient = (http: HttpClient.HttpClient, config: ConnectionConfig): ServerClient => {
  const baseUrl = config.baseUrl.replace(/\/+$/, "")
  const graphqlUrl = `${baseUrl}/graphql`
  const graphqlPolicy = resolvePolicy(defaultRetry.graphql, config.graphqlRetry)
  const fileStreamPolicy = resolvePolicy(defaultRetry.fileStream, config.fileStreamRetry)
  const uploadPolicy = resolvePolicy(defaultRetry.upload, config.uploadRetry)

  const key = Redacted.value(config.apiKey)
  const authorization = `Basic ${Buffer.from(`api:${key}`, "utf8").toString("base64")}`
  const userAgent = config.userAgent ?? `wandb-effect/${SDK_VERSION}`
  const extraHeaders = config.extraHeaders ?? {}

  // Whatever a server echoes back must not leak the key into an error or a log.
  const scrub = (text: string): string => {
    let out = text
    for (const secret of [key, authorization.slice("Basic ".length)]) {
      if (secret !== "") out = out.split(secret).join("<redacted>")
    }
    return out
  }

  const commonHeaders = (url: string) => {
    const headers: Record<string, string> = { "User-Agent": userAgent, ...extraHeaders }
    return mayCarryCredentials(baseUrl, url) ? { ...headers, Authorization: authorization } : headers
  }

  // Upload URLs carry their signature in the query string: no span of the platform's may record it, and
  // trace headers do not belong on a storage provider's request.
  const uploadHttp = http.pipe(
    HttpClient.withTracerDisabledWhen(() => true),
    HttpClient.withTracerPropagation(false)
  )

  const attempt = (
    client: HttpClient.HttpClient,
    request: HttpClientRequest.HttpClientRequest,
    policy: RetryPolicy
  ): Effect.Effect<Attempt> => {
    const exchange = client.execute(request).pipe(
      Effect.flatMap((response) =>
        Effect.map(response.text, (body): Attempt => ({
          _tag: "Answer",
          status: response.status,
          headers: response.headers,
          body
        }))
      ),
      Effect.catchAll((error) => Effect.succeed(noAnswer(error)))
    )
    if (!Duration.isFinite(policy.attemptTimeout)) return exchange
    return exchange.pipe(
      Effect.timeoutTo({
        duration: policy.attemptTimeout,
        onSuccess: (result) => result,
        onTimeout: (): Attempt => ({
          _tag: "NoAnswer",
          reason: `no answer within ${Duration.format(policy.attemptTimeout)}`,
          retryable: true
        })
      })
    )
  }

  /**
   * Sends until an answer is final under `rule`, waiting between attempts on the fiber's clock. Fails
   * once retries are exhausted: `ServerError` with the last status, or `NetworkError` when the last
   * attempt got no answer.
   */
  const send = (options: {
    readonly operation: string
    readonly request: HttpClientRequest.HttpClientRequest
    readonly rule: Backoff.RetryRule
    readonly policy: RetryPolicy
    readonly client?: HttpClient.HttpClient
  }): Effect.Effect<Answer, ServerError | NetworkError> => {
    const { operation, policy, request, rule } = options
    const client = options.client ?? http
    const backoff: Backoff.BackoffPolicy = {
      retryMax: policy.retryMax,
      waitMinMillis: Duration.toMillis(policy.waitMin),
      waitMaxMillis: Duration.toMillis(policy.waitMax)
    }
    const loop = (n: number): Effect.Effect<Answer, ServerError | NetworkError> =>
      Effect.flatMap(attempt(client, request, policy), (result) => {
        if (result._tag === "Answer" && Backoff.verdict(rule, result.status) === "final") {
          return Effect.succeed(result)
        }
        const attempts = n + 1
        if (result._tag === "NoAnswer" && !result.retryable) {
          return Effect.fail(new NetworkError({ operation, reason: scrub(result.reason) }))
        }
        if (n >= policy.retryMax) {
          return Effect.fail(
            result._tag === "Answer"
              ? new ServerError({ operation, status: result.status, body: giveUpMessage(result, attempts) })
              : new NetworkError({ operation, reason: scrub(`${result.reason} (gave up after ${attempts} attempts)`) })
          )
        }
        return Effect.gen(function*() {
          const random = yield* Random.next
          const now = yield* Clock.currentTimeMillis
          const retryAfter = result._tag === "Answer" ? result.headers["retry-after"] : undefined
          const wait = Backoff.waitMillis(backoff, n, random, retryAfter, now)
          const what = result._tag === "Answer" ? `HTTP ${result.status}` : scrub(result.reason)
          config.onRetry?.(operation, what)
          yield* Effect.logDebug(`${operation}: ${what}; retrying in ${Math.round(wait)} ms`).pipe(
            Effect.annotateLogs({ module: "ServerApi", url: withoutQuery(request.url), attempt: attempts })
          )
          yield* Effect.sleep(Duration.millis(wait))
          return yield* loop(n + 1)
        })
      })
    return loop(0)
  }

  const giveUpMessage = (answer: Answer, attempts: number): string => {
    const message = errorMessageOf(answer.body)
    return scrub(`${message === undefined ? "" : `${message} `}(gave up after ${attempts} attempts)`)
  }

  const serverError = (operation: string, status: number, body: string | undefined) =>
    new ServerError({ operation, status, ...(body === undefined ? {} : { body: scrub(body) }) })

  /** One GraphQL operation: the envelope of protocol §4.1, its data decoded with `schema`. */
  const graphql = <A, I>(
    operation: string,
    document: string,
    variables: Record<string, unknown> | undefined,
    schema: Schema.Schema<A, I>,
    acceptPartial?: (data: A) => boolean
  ): Effect.Effect<A, ServerError | NetworkError> =>
    Effect.gen(function*() {
      const payload = variables === undefined
        ? { query: document, operationName: operation }
        : { query: document, variables, operationName: operation }
      const request = HttpClientRequest.post(graphqlUrl).pipe(
        HttpClientRequest.bodyUnsafeJson(payload),
        HttpClientRequest.setHeaders({
          ...commonHeaders(graphqlUrl),
          "Content-Type": "application/json",
          "X-WANDB-USERNAME": config.username ?? "",
          "X-WANDB-USER-EMAIL": config.email ?? ""
        })
      )
      const rule = operation === "UpsertBucket" ? "upsert-bucket" : "most-failures"
      const answer = yield* send({ operation, request, rule, policy: graphqlPolicy })
      if (answer.status !== 200) return yield* serverError(operation, answer.status, errorMessageOf(answer.body))

      const parsed = parseJson(answer.body)
      if (Either.isLeft(parsed)) {
        return yield* serverError(operation, 200, `the answer is not JSON: ${answer.body.slice(0, 200)}`)
      }
      const json = Predicate.isRecord(parsed.right) ? parsed.right : {}
      const hasErrors = Array.isArray(json.errors) && json.errors.length > 0
      const data = json.data
      if (data === undefined || data === null) {
        return yield* serverError(operation, 200, hasErrors ? errorMessageOf(answer.body) : "the answer has no data")
      }
      const decoded = Schema.decodeUnknownEither(schema)(data)
      if (hasErrors) {
        const usable = acceptPartial !== undefined && Either.isRight(decoded) && acceptPartial(decoded.right)
        if (!usable) return yield* serverError(operation, 200, errorMessageOf(answer.body))
      }
      if (Either.isLeft(decoded)) {
        const problem = ParseResult.TreeFormatter.formatErrorSync(decoded.left)
        return yield* serverError(operation, 200, `unexpected answer: ${problem}`)
      }
      return decoded.right
    })

  // An account is all the check needs, so errors beside a viewer (a field old servers lack) do not count.
  const hasViewer = (data: typeof ViewerData.Type) => data.viewer !== null
  const viewer: ServerClient["viewer"] = graphql("Viewer", VIEWER, undefined, ViewerData, hasViewer).pipe(
    Effect.catchIf(
      (error): error is ServerError => error._tag === "ServerError" && (error.status === 401 || error.status === 403),
      (error) =>
        Effect.fail(
          new CredentialsRejected({
            baseUrl,
            status: error.status,
            ...(error.body === undefined ? {} : { reason: error.body })
          })
        )
    ),
    Effect.flatMap(({ viewer }) =>
      viewer === null
        ? Effect.fail(new CredentialsRejected({ baseUrl, status: 200, reason: "the server knows no user for the key" }))
        : Effect.succeed<Viewer>({ entity: viewer.entity, username: viewer.username, email: viewer.email })
    ),
    Effect.withSpan("ServerApi.viewer")
  )

  const serverFeatures: ServerClient["serverFeatures"] = graphql(
    "ServerFeaturesQuery",
    SERVER_FEATURES,
    undefined,
    ServerFeaturesData
  ).pipe(
    Effect.map(({ serverInfo }): ReadonlySet<string> =>
      new Set(
        (serverInfo?.features ?? []).flatMap((feature) => feature !== null && feature.isEnabled ? [feature.name] : [])
      )
    ),
    Effect.catchAll((error) =>
      Effect.as(
        Effect.logDebug(`server features unavailable, all treated as off: ${error.message}`),
        new Set<string>()
      )
    ),
    Effect.withSpan("ServerApi.serverFeatures")
  )

  const upsertBucket: ServerClient["upsertBucket"] = (input) => {
    const orNull = <A>(value: A | undefined): A | null => value === undefined ? null : value
    const variables = {
      id: orNull(input.id),
      name: orNull(input.name),
      project: orNull(input.project),
      entity: orNull(input.entity),
      groupName: orNull(input.groupName),
      description: orNull(input.description),
      displayName: orNull(input.displayName),
      notes: orNull(input.notes),
      commit: orNull(input.commit),
      config: orNull(input.config),
      host: orNull(input.host),
      debug: orNull(input.debug),
      program: orNull(input.program),
      repo: orNull(input.repo),
      jobType: orNull(input.jobType),
      state: orNull(input.state),
      sweep: orNull(input.sweep),
      tags: input.tags === undefined ? null : [...input.tags],
      summaryMetrics: orNull(input.summaryMetrics)
    }
    return graphql("UpsertBucket", UPSERT_BUCKET, variables, UpsertBucketData).pipe(
      Effect.flatMap(({ upsertBucket }) => {
        const bucket = upsertBucket?.bucket
        if (upsertBucket === null || bucket === null || bucket === undefined) {
          return Effect.fail(serverError("UpsertBucket", 200, "the server returned no run"))
        }
        return Effect.succeed<UpsertedRun>({
          storageId: bucket.id,
          runId: bucket.name,
          displayName: bucket.displayName,
          sweepName: bucket.sweepName,
          project: bucket.project.name,
          entity: bucket.project.entity.name,
          historyLineCount: bucket.historyLineCount ?? 0,
          inserted: upsertBucket.inserted ?? false
        })
      }),
      Effect.withSpan("ServerApi.upsertBucket", { attributes: { run_id: input.name, project: input.project } })
    )
  }

  const runResumeStatus: ServerClient["runResumeStatus"] = (input) =>
    graphql(
      "RunResumeStatus",
      RUN_RESUME_STATUS,
      { project: input.project, entity: input.entity ?? null, name: input.runId },
      RunResumeStatusData
    ).pipe(
      Effect.map(({ model }): ResumeStatus | undefined => {
        const bucket = model?.bucket
        if (model === null || bucket === null || bucket === undefined) return undefined
        return {
          project: model.name,
          entity: model.entity?.name,
          storageId: bucket.id,
          runId: bucket.name,
          displayName: bucket.displayName,
          notes: bucket.notes,
          tags: bucket.tags,
          historyLineCount: bucket.historyLineCount,
          eventsLineCount: bucket.eventsLineCount,
          logLineCount: bucket.logLineCount,
          summaryMetrics: bucket.summaryMetrics,
          config: bucket.config,
          historyTail: bucket.historyTail,
          eventsTail: bucket.eventsTail,
          wandbConfig: bucket.wandbConfig
        }
      }),
      Effect.withSpan("ServerApi.runResumeStatus", { attributes: { run_id: input.runId, project: input.project } })
    )

  const createRunFiles: ServerClient["createRunFiles"] = (input) =>
    graphql(
      "CreateRunFiles",
      CREATE_RUN_FILES,
      { entity: input.entity, project: input.project, run: input.runId, files: [...input.files] },
      CreateRunFilesData
    ).pipe(
      Effect.flatMap(({ createRunFiles }) => {
        if (createRunFiles === null) {
          return Effect.fail(serverError("CreateRunFiles", 200, "the server returned no upload URLs"))
        }
        // Files are matched to URLs by position, so a different count means the answer cannot be used.
        if (createRunFiles.files.length !== input.files.length) {
          const counts = `asked for ${input.files.length} files, got ${createRunFiles.files.length}`
          return Effect.fail(serverError("CreateRunFiles", 200, counts))
        }
        return Effect.succeed<RunFiles>({
          uploadHeaders: parseUploadHeaders(createRunFiles.uploadHeaders ?? []),
          files: createRunFiles.files.map((file) => ({ name: file.name, uploadUrl: file.uploadUrl }))
        })
      }),
      Effect.withSpan("ServerApi.createRunFiles", {
        attributes: { run_id: input.runId, project: input.project, files: input.files.length }
      })
    )

  const uploadFile: ServerClient["uploadFile"] = (url, headers, body) => {
    // No W&B credentials here, whatever the URL: the storage behind a signed URL has no use for the key.
    const request = HttpClientRequest.put(url).pipe(
      // An empty content type keeps the platform from adding one the signature may not cover.
      HttpClientRequest.bodyUint8Array(body, ""),
      HttpClientRequest.setHeaders({
        "User-Agent": userAgent,
        ...extraHeaders,
        ...headers,
        ...(body.byteLength === 0 ? { "Content-Length": "0" } : {})
      })
    )
    return send({ operation: "upload", request, rule: "upload", policy: uploadPolicy, client: uploadHttp }).pipe(
      Effect.flatMap((answer) =>
        answer.status >= 200 && answer.status < 300
          ? Effect.void
          : Effect.fail(serverError("upload", answer.status, errorMessageOf(answer.body)))
      ),
      Effect.withSpan("ServerApi.uploadFile", { attributes: { url: withoutQuery(url), bytes: body.byteLength } })
    )
  }

  const fileStream: ServerClient["fileStream"] = (run, streamRequest) => {
    const path = [run.entity, run.project, run.runId].map(encodeURIComponent).join("/")
    const url = `${baseUrl}/files/${path}/file_stream`
    const request = HttpClientRequest.post(url).pipe(
      HttpClientRequest.bodyUnsafeJson(fileStreamBody(streamRequest)),
      HttpClientRequest.setHeaders({ ...commonHeaders(url), "Content-Type": "application/json" })
    )
    return send({ operation: "file_stream", request, rule: "most-failures", policy: fileStreamPolicy }).pipe(
      Effect.flatMap((answer) => {
        // Success is 200 through 300 inclusive, as the official client checks it.
        if (answer.status < 200 || answer.status > 300) {
          return Effect.fail(serverError("file_stream", answer.status, errorMessageOf(answer.body)))
        }
        const json = parseJson(answer.body)
        // The answer only matters for the stop flag; an unreadable one is not worth failing the stream for.
        if (Either.isLeft(json)) {
          return Effect.as(Effect.logDebug("file_stream answer is not JSON; taken as not stopped"), { stopped: false })
        }
        const stopped = Predicate.isRecord(json.right) && json.right.stopped === true
        return Effect.succeed<FileStreamResponse>({ stopped })
      }),
      Effect.withSpan("ServerApi.fileStream", {
        attributes: { run_id: run.runId, project: run.project, entity: run.entity }
      })
    )
  }

  return { baseUrl, viewer, serverFeatures, upsertBucket, runResumeStatus, createRunFiles, uploadFile, fileStream }
}

/**
 * The service over an `HttpClient`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Context.Tag.Service<ServerApi>, never, HttpClient.HttpClient> = Effect.map(
  HttpClient.HttpClient,
  (http) => ServerApi.of({ connect: (config) => makeClient(http, config) })
)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<ServerApi, never, HttpClient.HttpClient> = Layer.effect(ServerApi, make)

/**
 * The retry knobs of every channel from settings: waits between `retryWaitMin` and `retryWaitMax`, and
 * `httpTimeout` for one GraphQL attempt (file_stream and uploads keep their longer defaults).
 *
 * @since 0.1.0
 * @category helpers
 */
export const retryOptions = (settings: {
  readonly retryWaitMin: number
  readonly retryWaitMax: number
  readonly httpTimeout: number
}): Pick<ConnectionConfig, "graphqlRetry" | "fileStreamRetry" | "uploadRetry"> => {
  const waits = { waitMin: Duration.seconds(settings.retryWaitMin), waitMax: Duration.seconds(settings.retryWaitMax) }
  return {
    graphqlRetry: { ...waits, attemptTimeout: Duration.seconds(settings.httpTimeout) },
    fileStreamRetry: waits,
    uploadRetry: waits
  }
}
