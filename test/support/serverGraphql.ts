/**
 * The GraphQL operations of protocol §4, answered from the `Store` with the response shapes of §9.2.
 * Operations are matched by `operationName`, falling back to the name in the query text (§4.1), and the
 * selections are not interpreted: each operation answers the fields the official clients select.
 */
import { randomBytes } from "node:crypto"
import { parseExtendedJson, stringifyExtendedJson } from "./serverJson.js"
import type { RunKey, RunRecord, Store } from "./serverState.js"
import {
  EVENTS,
  HISTORY,
  isObject,
  keyString,
  lineCount,
  OUTPUT,
  summaryText,
  tail,
  telemetry,
  tryParseObject
} from "./serverState.js"

/** The `viewer` the server reports for every accepted key (§4.3, E1). */
export interface ViewerInfo {
  readonly entity: string
  readonly username: string
  readonly email: string
  readonly teams: ReadonlyArray<string>
  /** The `flags` JSONString, as an object. */
  readonly flags: Readonly<Record<string, unknown>>
}

export interface ServerFeature {
  readonly name: string
  readonly isEnabled: boolean
}

/** A signed upload URL handed out by CreateRunFiles, keyed by its `sig` query parameter. */
export interface SignedUpload {
  readonly key: RunKey
  readonly name: string
}

export interface GraphqlContext {
  readonly store: Store
  readonly viewer: ViewerInfo
  /** `"unsupported"` answers ServerFeaturesQuery like a server older than `serverInfo.features` (E2). */
  readonly features: ReadonlyArray<ServerFeature> | "unsupported"
  readonly uploadHeaders: ReadonlyArray<string>
  /** `http://127.0.0.1:PORT`, the origin upload URLs point at. */
  readonly origin: string
  readonly signatures: Map<string, SignedUpload>
}

export interface GraphqlReply {
  readonly status: number
  readonly body: unknown
}

/** Project used when UpsertBucket names none, as wandb-js does (§8). */
const DEFAULT_PROJECT = "uncategorized"

/** How many lines `historyTail`/`eventsTail` hold; the real count is not determined (§10). */
const TAIL_LINES = 10

/** The operation a GraphQL body asks for: `operationName`, else the name after `query`/`mutation`. */
export const operationOf = (body: unknown): string | null => {
  if (!isObject(body)) return null
  const named = body["operationName"]
  if (typeof named === "string" && named !== "") return named
  const query = body["query"]
  if (typeof query !== "string") return null
  return /\b(?:query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)/.exec(query)?.[1] ?? null
}

/** A request the GraphQL layer rejects before execution, answered with HTTP 400 like a validation error. */
class InvalidRequest extends Error {}

const invalid = (message: string): GraphqlReply => ({ status: 400, body: { errors: [{ message }] } })

/** An execution error: HTTP 200, the field `null`, the message in `errors` (§9.2 E19, last bullet). */
const failed = (field: string, message: string): GraphqlReply => ({
  status: 200,
  body: { data: { [field]: null }, errors: [{ message, path: [field] }] }
})

const ok = (data: Record<string, unknown>): GraphqlReply => ({ status: 200, body: { data } })

const optionalString = (variables: Record<string, unknown>, name: string): string | null => {
  const value = variables[name]
  if (value === undefined || value === null) return null
  if (typeof value !== "string") throw new InvalidRequest(`variable "$${name}" must be a String, got ${typeof value}`)
  return value
}

const requiredString = (variables: Record<string, unknown>, name: string): string => {
  const value = optionalString(variables, name)
  if (value === null) throw new InvalidRequest(`variable "$${name}" of type "String!" was not provided`)
  return value
}

const optionalStrings = (variables: Record<string, unknown>, name: string): Array<string> | null => {
  const value = variables[name]
  if (value === undefined || value === null) return null
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new InvalidRequest(`variable "$${name}" must be a list of String`)
  }
  return [...value]
}

const requiredStrings = (variables: Record<string, unknown>, name: string): Array<string> => {
  const value = optionalStrings(variables, name)
  if (value === null) throw new InvalidRequest(`variable "$${name}" of type "[String!]!" was not provided`)
  return value
}

/** A JSONString variable must hold extended JSON; a real server rejects it while coercing variables. */
const optionalJsonString = (variables: Record<string, unknown>, name: string): string | null => {
  const value = optionalString(variables, name)
  if (value === null) return null
  try {
    parseExtendedJson(value)
  } catch (error) {
    throw new InvalidRequest(`variable "$${name}" is not a valid JSONString: ${(error as Error).message}`)
  }
  return value
}

const projectShape = (context: GraphqlContext, run: RunRecord) => ({
  id: context.store.ensureProject(run.key.entity, run.key.project),
  name: run.key.project,
  entity: { id: context.store.entityId(run.key.entity), name: run.key.entity }
})

/** The bucket selection shared by UpsertBucket and RewindRun (§4.6, §4.7). */
const bucketShape = (context: GraphqlContext, run: RunRecord) => ({
  id: run.storageId,
  name: run.key.name,
  displayName: run.displayName,
  description: run.description,
  config: run.config,
  sweepName: run.sweep,
  project: projectShape(context, run),
  historyLineCount: lineCount(run, HISTORY)
})

const viewer = (context: GraphqlContext): GraphqlReply =>
  ok({
    viewer: {
      id: Buffer.from("User:1").toString("base64"),
      entity: context.viewer.entity,
      username: context.viewer.username,
      email: context.viewer.email,
      flags: JSON.stringify(context.viewer.flags),
      teams: { edges: context.viewer.teams.map((name) => ({ node: { name } })) }
    }
  })

const serverFeatures = (context: GraphqlContext): GraphqlReply =>
  context.features === "unsupported"
    ? invalid("Cannot query field \"features\" on type \"ServerInfo\".")
    : ok({ serverInfo: { features: context.features.map(({ isEnabled, name }) => ({ name, isEnabled })) } })

const runResumeStatus = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const entity = optionalString(variables, "entity") ?? context.store.defaultEntity
  const project = optionalString(variables, "project") ?? DEFAULT_PROJECT
  const name = requiredString(variables, "name")
  const projectId = context.store.projectId(entity, project)
  if (projectId === undefined) return ok({ model: null })

  const run = context.store.find({ entity, project, name })
  const t = run === undefined ? undefined : telemetry(run)
  const bucket = run === undefined ? null : {
    id: run.storageId,
    name: run.key.name,
    displayName: run.displayName,
    summaryMetrics: summaryText(run),
    logLineCount: lineCount(run, OUTPUT),
    historyLineCount: lineCount(run, HISTORY),
    eventsLineCount: lineCount(run, EVENTS),
    historyTail: tail(run, HISTORY, TAIL_LINES),
    eventsTail: tail(run, EVENTS, TAIL_LINES),
    // non-null for every run that exists, because the Go client aborts a resume on a null here (§4.5)
    config: run.config ?? "{}",
    tags: [...run.tags],
    notes: run.notes,
    wandbConfig: t === undefined ? "{}" : stringifyExtendedJson({ t })
  }
  const entityShape = { id: context.store.entityId(entity), name: entity }
  return ok({ model: { id: projectId, name: project, entity: entityShape, bucket } })
}

/** Input variables that overwrite a run field when non-null (§4.6.1; null means "leave as is", E6). */
const UPSERT_FIELDS = [
  ["groupName", "group"],
  ["description", "description"],
  ["displayName", "displayName"],
  ["notes", "notes"],
  ["commit", "commit"],
  ["host", "host"],
  ["program", "program"],
  ["repo", "repo"],
  ["jobType", "jobType"],
  ["state", "upsertState"],
  ["sweep", "sweep"]
] as const

const upsertBucket = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const id = optionalString(variables, "id")
  const config = optionalJsonString(variables, "config")
  const summaryMetrics = optionalJsonString(variables, "summaryMetrics")
  const tags = optionalStrings(variables, "tags")
  const fields = UPSERT_FIELDS.map(([variable, field]) => [field, optionalString(variables, variable)] as const)

  const byId = id === null ? undefined : context.store.findByStorageId(id)
  const key: RunKey = byId?.key ?? {
    entity: optionalString(variables, "entity") ?? context.store.defaultEntity,
    project: optionalString(variables, "project") ?? DEFAULT_PROJECT,
    name: optionalString(variables, "name") ?? randomBytes(4).toString("hex")
  }
  if (context.store.isDeleted(key)) {
    const message = `run ${keyString(key)} was previously created and deleted; try a new run name`
    return { status: 409, body: { errors: [{ message }] } }
  }
  // a storage ID only ever comes from this server, so an unknown one is a client bug worth failing on
  if (id !== null && byId === undefined) return failed("upsertBucket", `run with id ${id} not found`)

  const existing = byId ?? context.store.find(key)
  const run = existing ?? context.store.create(key)
  for (const [field, value] of fields) if (value !== null) run[field] = value
  if (tags !== null) run.tags = tags
  if (config !== null) run.config = config
  if (summaryMetrics !== null) run.upsertSummary = summaryMetrics
  run.upserts.push({ ...variables })
  return ok({ upsertBucket: { bucket: bucketShape(context, run), inserted: existing === undefined } })
}

const runFor = (context: GraphqlContext, entity: string | null, project: string | null, name: string) =>
  context.store.find({
    entity: entity ?? context.store.defaultEntity,
    project: project ?? DEFAULT_PROJECT,
    name
  })

const notFound = (entity: string | null, project: string | null, name: string): string =>
  `run ${entity ?? "<default entity>"}/${project ?? DEFAULT_PROJECT}/${name} not found`

/** The input CreateRunFiles and MarkRunFilesUploaded share: the run's path and the file names (§4.8). */
const runFilesInput = (context: GraphqlContext, variables: Record<string, unknown>) => {
  const entity = requiredString(variables, "entity")
  const project = requiredString(variables, "project")
  const name = requiredString(variables, "run")
  const files = requiredStrings(variables, "files")
  const run = runFor(context, entity, project, name)
  return { run, files, missing: notFound(entity, project, name) }
}

const createRunFiles = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const { files, missing, run } = runFilesInput(context, variables)
  if (run === undefined) return failed("createRunFiles", missing)

  const path = [run.key.entity, run.key.project, run.key.name].map(encodeURIComponent).join("/")
  return ok({
    createRunFiles: {
      runID: run.storageId,
      uploadHeaders: [...context.uploadHeaders],
      files: files.map((file) => {
        const sig = randomBytes(12).toString("hex")
        context.signatures.set(sig, { key: run.key, name: file })
        const filePath = file.split("/").map(encodeURIComponent).join("/")
        return { name: file, uploadUrl: `${context.origin}/storage/${path}/${filePath}?sig=${sig}` }
      })
    }
  })
}

/** Keeps history up to the last line whose `_step` is ≤ the given value (E21: value 50 leaves 51 lines). */
const rewindRun = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const name = requiredString(variables, "runName")
  const entity = optionalString(variables, "entity")
  const project = optionalString(variables, "project")
  const metricName = requiredString(variables, "metricName")
  const metricValue = variables["metricValue"]
  if (typeof metricValue !== "number") {
    throw new InvalidRequest("variable \"$metricValue\" of type \"Float!\" was not provided")
  }
  const run = runFor(context, entity, project, name)
  if (run === undefined) return failed("rewindRun", notFound(entity, project, name))
  if (metricName !== "_step") return failed("rewindRun", `rewinding is only supported on _step, not ${metricName}`)

  const history = run.files.get(HISTORY)
  if (history !== undefined) {
    for (const [index, text] of history.entries()) {
      const row = tryParseObject(text)
      if (row !== undefined && typeof row["_step"] === "number" && row["_step"] > metricValue) {
        history.truncate(index)
        break
      }
    }
  }
  run.rewinds++
  return ok({ rewindRun: { rewoundRun: bucketShape(context, run) } })
}

const stopRun = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const id = requiredString(variables, "id")
  const run = context.store.findByStorageId(id)
  if (run === undefined) return failed("stopRun", `run with id ${id} not found`)
  run.stopped = true
  return ok({ stopRun: { success: true } })
}

const runStoppedStatus = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const entity = optionalString(variables, "entityName") ?? context.store.defaultEntity
  const project = optionalString(variables, "projectName") ?? DEFAULT_PROJECT
  const name = requiredString(variables, "runId")
  if (context.store.projectId(entity, project) === undefined) return ok({ project: null })
  const run = context.store.find({ entity, project, name })
  return ok({ project: { run: run === undefined ? null : { stopped: run.stopped } } })
}

const notifyScriptableRunAlert = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const entity = requiredString(variables, "entityName")
  const project = requiredString(variables, "projectName")
  const name = requiredString(variables, "runName")
  const title = requiredString(variables, "title")
  const text = requiredString(variables, "text")
  const severity = optionalString(variables, "severity")
  const waitDuration = variables["waitDuration"]
  const run = runFor(context, entity, project, name)
  if (run === undefined) return failed("notifyScriptableRunAlert", notFound(entity, project, name))
  run.alerts.push({ title, text, severity, waitDuration: typeof waitDuration === "number" ? waitDuration : null })
  return ok({ notifyScriptableRunAlert: { success: true } })
}

const markRunFilesUploaded = (context: GraphqlContext, variables: Record<string, unknown>): GraphqlReply => {
  const { files, missing, run } = runFilesInput(context, variables)
  if (run === undefined) return failed("markRunFilesUploaded", missing)
  run.markedUploaded.push(...files)
  return ok({ markRunFilesUploaded: { success: true } })
}

type Operation = (context: GraphqlContext, variables: Record<string, unknown>) => GraphqlReply

const OPERATIONS = new Map<string, Operation>([
  ["Viewer", viewer],
  ["ServerFeaturesQuery", serverFeatures],
  ["RunResumeStatus", runResumeStatus],
  ["UpsertBucket", upsertBucket],
  ["CreateRunFiles", createRunFiles],
  ["RewindRun", rewindRun],
  ["StopRun", stopRun],
  ["RunStoppedStatus", runStoppedStatus],
  ["NotifyScriptableRunAlert", notifyScriptableRunAlert],
  ["MarkRunFilesUploaded", markRunFilesUploaded]
])

/** The operation names this server answers. */
export const SUPPORTED_OPERATIONS: ReadonlyArray<string> = [...OPERATIONS.keys()]

/** Executes one GraphQL request body against the store. */
export const executeGraphql = (context: GraphqlContext, body: unknown): GraphqlReply => {
  if (!isObject(body) || typeof body["query"] !== "string") return invalid("request must be a JSON object with a query")
  const variables = body["variables"] ?? {}
  if (!isObject(variables)) return invalid("\"variables\" must be an object")
  const operation = operationOf(body)
  if (operation === null) return invalid("the request names no operation")
  const execute = OPERATIONS.get(operation)
  if (execute === undefined) return invalid(`Unknown operation "${operation}"`)
  try {
    return execute(context, variables)
  } catch (error) {
    if (error instanceof InvalidRequest) return invalid(error.message)
    throw error
  }
}
