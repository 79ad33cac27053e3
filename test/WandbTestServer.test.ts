import { it as effectIt } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { gzipSync } from "node:zlib"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import type { TestServerOptions } from "./support/WandbTestServer.js"
import {
  authorizationHeader,
  Faults,
  isWellFormedApiKey,
  parseExtendedJson,
  sampleApiKey,
  startTestServer,
  stringifyExtendedJson,
  TestServer
} from "./support/WandbTestServer.js"

const KEY = sampleApiKey()
const RUN = "3k9x2m1p"
const STREAM_PATH = `/files/alice/demo/${RUN}/file_stream`

// Responses are checked field by field against the spec's examples, so a loose type keeps the tests short.
type Json = any

const readJson = async (response: Response): Promise<Json> => JSON.parse(await response.text())

const post = (url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(url, {
    method: "POST",
    headers: { authorization: authorizationHeader(KEY), "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal === undefined ? {} : { signal })
  })

const gql = (server: TestServer, body: unknown, headers?: Record<string, string>) =>
  post(`${server.url}/graphql`, body, headers)

const stream = (server: TestServer, body: unknown, headers?: Record<string, string>, path = STREAM_PATH) =>
  post(`${server.url}${path}`, body, headers)

const upsert = (server: TestServer, variables: Record<string, unknown>) =>
  gql(server, { operationName: "UpsertBucket", query: "mutation UpsertBucket(...) {...}", variables })

/** E5's variables. */
const createVariables = {
  id: null,
  name: RUN,
  project: "demo",
  entity: null,
  groupName: "sweep-a",
  description: null,
  displayName: null,
  notes: "first try",
  commit: "4f2c1e0",
  config: JSON.stringify({
    lr: { value: 0.001 },
    epochs: { value: 10 },
    _wandb: { value: { cli_version: "0.28.3", m: [], t: { "5": "0.28.3", "12": "0.28.3", "13": "linux-x86_64" } } }
  }),
  host: "gpu-box-1",
  debug: null,
  program: "train.py",
  repo: "https://github.com/alice/demo.git",
  jobType: "train",
  state: null,
  sweep: null,
  tags: ["baseline"],
  summaryMetrics: null
}

const createRun = async (server: TestServer) => {
  const response = await upsert(server, createVariables)
  expect(response.status).toBe(200)
  return readJson(response)
}

const historyLine = (step: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ loss: 1 / (step + 1), ...extra, _step: step, _runtime: step * 1.5, _timestamp: 1.724e9 + step })

const history = (offset: number, content: Array<string>) => ({ files: { "wandb-history.jsonl": { offset, content } } })

const fetchFails = async (promise: Promise<Response>): Promise<unknown> => {
  try {
    const response = await promise
    throw new Error(`expected a network error, got HTTP ${response.status}`)
  } catch (error) {
    return error
  }
}

describe("WandbTestServer", () => {
  let server: TestServer

  beforeEach(async () => {
    server = await startTestServer()
  })

  afterEach(async () => {
    await server.close()
  })

  const restartWith = async (options: TestServerOptions) => {
    await server.close()
    server = await startTestServer(options)
  }

  describe("GraphQL (§9.2)", () => {
    it("E1: Viewer without a variables key answers the default entity", async () => {
      const response = await gql(server, {
        query: "query Viewer{ viewer { id entity username email flags teams { edges { node { name } } } } }",
        operationName: "Viewer"
      }, { "user-agent": "wandb-core", "x-wandb-username": "", "x-wandb-user-email": "alice@example.com" })

      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("application/json")
      expect(await readJson(response)).toEqual({
        data: {
          viewer: {
            id: "VXNlcjox",
            entity: "alice",
            username: "alice",
            email: "alice@example.com",
            flags: "{\"code_saving_enabled\":false}",
            teams: { edges: [{ node: { name: "ml-team" } }] }
          }
        }
      })
      const [entry] = server.requests()
      expect(entry).toMatchObject({
        n: 1,
        channel: "graphql",
        method: "POST",
        path: "/graphql",
        operation: "Viewer",
        status: 200,
        outcome: "answered",
        fault: null,
        hadAuthorization: true,
        apiKey: KEY,
        userAgent: "wandb-core",
        contentType: "application/json",
        wandbHeaders: { "x-wandb-username": "", "x-wandb-user-email": "alice@example.com" }
      })
      expect(entry?.body).not.toHaveProperty("variables")
    })

    it("E1: the viewer can be configured", async () => {
      await restartWith({ viewer: { entity: "team-x", email: "x@example.com", teams: [] } })
      const body = await readJson(await gql(server, { query: "query Viewer { viewer { id } }" }))
      expect(body.data.viewer).toMatchObject({ entity: "team-x", username: "team-x", email: "x@example.com" })
      expect(body.data.viewer.teams).toEqual({ edges: [] })
    })

    it("E2: ServerFeaturesQuery lists the three features, gzip off", async () => {
      const response = await gql(server, {
        query: "query ServerFeaturesQuery { serverInfo { features { name isEnabled } } }",
        operationName: "ServerFeaturesQuery"
      })
      expect(await readJson(response)).toEqual({
        data: {
          serverInfo: {
            features: [
              { name: "EXPAND_DEFINED_METRIC_GLOBS", isEnabled: true },
              { name: "STRUCTURED_CONSOLE_LOGS", isEnabled: false },
              { name: "FILESTREAM_GZIP", isEnabled: false }
            ]
          }
        }
      })
    })

    it("E2: an old server answers ServerFeaturesQuery with HTTP 400", async () => {
      await restartWith({ features: "unsupported" })
      const response = await gql(server, {
        query: "query ServerFeaturesQuery { x }",
        operationName: "ServerFeaturesQuery"
      })
      expect(response.status).toBe(400)
      expect(await readJson(response)).toEqual({
        errors: [{ message: "Cannot query field \"features\" on type \"ServerInfo\"." }]
      })
    })

    it("E3: RunResumeStatus for a missing run and a missing project", async () => {
      const query = "query RunResumeStatus(...) {...}"
      const missingProject = await gql(server, {
        operationName: "RunResumeStatus",
        query,
        variables: { project: "demo", entity: null, name: RUN }
      })
      expect(await readJson(missingProject)).toEqual({ data: { model: null } })

      await upsert(server, { name: "other", project: "demo" })
      const missingRun = await gql(server, {
        operationName: "RunResumeStatus",
        query,
        variables: { project: "demo", entity: null, name: RUN }
      })
      const model = { id: "UHJvamVjdDox", name: "demo", entity: { id: "RW50aXR5OjE=", name: "alice" }, bucket: null }
      expect(await readJson(missingRun)).toEqual({ data: { model } })
    })

    it("E4: RunResumeStatus reports counts, tails, config and wandbConfig of an existing run", async () => {
      const config = "{\"lr\":{\"value\":0.001},\"_wandb\":{\"value\":{\"t\":{\"5\":\"0.28.3\"}}}}"
      await upsert(server, { name: RUN, project: "demo", entity: "alice", tags: ["baseline"], config })
      const lines = Array.from({ length: 100 }, (_, step) => historyLine(step))
      const summary = "{\"loss\":0.2,\"_step\":99,\"_runtime\":130.5,\"_wandb\":{\"runtime\":130}}"
      const events = Array.from({ length: 9 }, (_, i) => `{"_wandb":true,"_runtime":${(i + 1) * 14.2}}`)
      const output = Array.from({ length: 57 }, (_, i) => `2026-08-21T10:00:00.${String(i).padStart(6, "0")} line ${i}`)
      await stream(server, {
        files: {
          "wandb-history.jsonl": { offset: 0, content: lines },
          "wandb-summary.json": { offset: 0, content: [summary] },
          "wandb-events.jsonl": { offset: 0, content: events },
          "output.log": { offset: 0, content: output }
        }
      })

      const response = await gql(server, {
        operationName: "RunResumeStatus",
        query: "query RunResumeStatus(...) {...}",
        variables: { project: "demo", entity: null, name: RUN }
      })
      const body = await readJson(response)
      expect(body.data.model).toMatchObject({ id: "UHJvamVjdDox", name: "demo", entity: { name: "alice" } })
      const bucket = body.data.model.bucket
      expect(bucket).toMatchObject({
        id: "UnVuOnYxOjNrOXgybTFwOmRlbW86YWxpY2U=",
        name: RUN,
        summaryMetrics: summary,
        logLineCount: 57,
        historyLineCount: 100,
        eventsLineCount: 9,
        config,
        tags: ["baseline"],
        notes: null
      })
      expect(JSON.parse(bucket.historyTail).at(-1)).toBe(lines[99])
      expect(JSON.parse(bucket.eventsTail).at(-1)).toBe(events[8])
      expect(JSON.parse(bucket.wandbConfig)).toEqual({ t: { "5": "0.28.3" } })
    })

    it("E4: a run whose config lacks _wandb.t has an empty wandbConfig and non-null fields", async () => {
      await upsert(server, { name: RUN, project: "demo" })
      const body = await readJson(
        await gql(server, { operationName: "RunResumeStatus", query: "q", variables: { project: "demo", name: RUN } })
      )
      expect(body.data.model.bucket).toMatchObject({
        wandbConfig: "{}",
        config: "{}",
        summaryMetrics: "{}",
        historyTail: "[]",
        eventsTail: "[]",
        historyLineCount: 0,
        eventsLineCount: 0,
        logLineCount: 0
      })
    })

    it("E5: UpsertBucket creates the run and answers the bucket shape", async () => {
      const body = await createRun(server)
      expect(body).toEqual({
        data: {
          upsertBucket: {
            bucket: {
              id: "UnVuOnYxOjNrOXgybTFwOmRlbW86YWxpY2U=",
              name: RUN,
              displayName: expect.stringMatching(/^[a-z]+-[a-z]+-\d+$/),
              description: null,
              config: createVariables.config,
              sweepName: null,
              project: { id: "UHJvamVjdDox", name: "demo", entity: { id: "RW50aXR5OjE=", name: "alice" } },
              historyLineCount: 0
            },
            inserted: true
          }
        }
      })

      const run = server.run(RUN)
      expect(run).toMatchObject({
        entity: "alice",
        project: "demo",
        displayName: body.data.upsertBucket.bucket.displayName,
        group: "sweep-a",
        jobType: "train",
        notes: "first try",
        tags: ["baseline"],
        host: "gpu-box-1",
        program: "train.py",
        commit: "4f2c1e0",
        repo: "https://github.com/alice/demo.git",
        upsertCount: 1,
        state: "running"
      })
      expect(run.config).toEqual(JSON.parse(createVariables.config))
    })

    it("E6: a config-only update leaves null fields alone and answers inserted: false", async () => {
      await createRun(server)
      const config = "{\"lr\":{\"value\":0.001},\"batch\":{\"value\":64},\"_wandb\":{\"value\":{\"t\":{}}}}"
      const response = await upsert(server, {
        ...Object.fromEntries(Object.keys(createVariables).map((key) => [key, null])),
        name: RUN,
        project: "demo",
        entity: "alice",
        config
      })
      const body = await readJson(response)
      expect(body.data.upsertBucket.inserted).toBe(false)
      expect(body.data.upsertBucket.bucket.config).toBe(config)

      const run = server.run(RUN)
      expect(run).toMatchObject({ group: "sweep-a", notes: "first try", tags: ["baseline"], host: "gpu-box-1" })
      expect(run.configJson).toBe(config)
      expect(run.upsertCount).toBe(2)
      expect(run.upserts[1]).toMatchObject({ config, groupName: null })
    })

    it("E6: a display name and tags sent later replace the stored ones; [] clears tags", async () => {
      await createRun(server)
      await upsert(server, { name: RUN, project: "demo", displayName: "my-run", tags: [] })
      expect(server.run(RUN)).toMatchObject({ displayName: "my-run", tags: [] })
    })

    it("E5: UpsertBucket with the storage id of an unknown run fails", async () => {
      const body = await readJson(await upsert(server, { id: "UnVuOnYxOng6eTp6", name: RUN, project: "demo" }))
      expect(body.data).toEqual({ upsertBucket: null })
      expect(body.errors[0].message).toContain("not found")
      expect(server.runs()).toEqual([])
    })

    it("E7/E8: CreateRunFiles hands out upload URLs here; a PUT without Authorization stores the bytes", async () => {
      await createRun(server)
      const response = await gql(server, {
        operationName: "CreateRunFiles",
        query: "mutation CreateRunFiles(...) {...}",
        variables: {
          entity: "alice",
          project: "demo",
          run: RUN,
          files: ["wandb-metadata.json", "media/images/x 1.png"]
        }
      })
      const body = await readJson(response)
      const created = body.data.createRunFiles
      expect(created.runID).toBe("UnVuOnYxOjNrOXgybTFwOmRlbW86YWxpY2U=")
      expect(created.uploadHeaders).toEqual(["Content-Type: application/octet-stream"])
      expect(created.files.map((f: Json) => f.name)).toEqual(["wandb-metadata.json", "media/images/x 1.png"])
      const [metadataUrl, imageUrl] = created.files.map((f: Json) => f.uploadUrl as string)
      expect(metadataUrl).toMatch(
        new RegExp(`^${server.origin}/storage/alice/demo/${RUN}/wandb-metadata\\.json\\?sig=[0-9a-f]+$`)
      )
      expect(imageUrl).toContain("/storage/alice/demo/3k9x2m1p/media/images/x%201.png?sig=")

      const metadata = new TextEncoder().encode("{\n  \"os\": \"Linux\"\n}")
      const put = await fetch(metadataUrl!, {
        method: "PUT",
        headers: { "content-type": "application/octet-stream" },
        body: metadata
      })
      expect(put.status).toBe(200)
      expect(await put.text()).toBe("")
      const image = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 255])
      const withAuth = await fetch(imageUrl!, {
        method: "PUT",
        headers: { authorization: authorizationHeader(KEY) },
        body: image
      })
      expect(withAuth.status).toBe(200)

      const run = server.run(RUN)
      expect(Buffer.from(run.uploads["wandb-metadata.json"]!)).toEqual(Buffer.from(metadata))
      expect(Buffer.from(run.uploads["media/images/x 1.png"]!)).toEqual(Buffer.from(image))
      expect(run.uploadRequests.map((u) => [u.name, u.hadAuthorization, u.headers["content-type"]])).toEqual([
        ["wandb-metadata.json", false, "application/octet-stream"],
        ["media/images/x 1.png", true, undefined]
      ])
      expect(server.requests({ channel: "upload" }).map((r) => [r.method, r.status, r.bodyBytes])).toEqual([
        ["PUT", 200, metadata.byteLength],
        ["PUT", 200, image.byteLength]
      ])
    })

    it("E8: an upload with a wrong signature or to another file is refused with 403", async () => {
      await createRun(server)
      const body = await readJson(
        await gql(server, {
          operationName: "CreateRunFiles",
          query: "q",
          variables: { entity: "alice", project: "demo", run: RUN, files: ["a.txt"] }
        })
      )
      const url = new URL(body.data.createRunFiles.files[0].uploadUrl)
      const forged = await fetch(`${url.origin}${url.pathname}?sig=00`, { method: "PUT", body: "x" })
      expect(forged.status).toBe(403)
      const otherFile = await fetch(`${url.origin}${url.pathname.replace("a.txt", "b.txt")}${url.search}`, {
        method: "PUT",
        body: "x"
      })
      expect(otherFile.status).toBe(403)
      expect(server.run(RUN).uploads).toEqual({})
    })

    it("E7: CreateRunFiles for a run that was never upserted is an execution error", async () => {
      const body = await readJson(
        await gql(server, {
          operationName: "CreateRunFiles",
          query: "q",
          variables: { entity: "alice", project: "demo", run: RUN, files: [] }
        })
      )
      expect(body.data).toEqual({ createRunFiles: null })
      expect(body.errors[0].message).toBe(`run alice/demo/${RUN} not found`)
    })

    it("E15/E20: StopRun flips RunStoppedStatus and the next file_stream answer", async () => {
      const created = await createRun(server)
      const stoppedStatus = async () =>
        readJson(
          await gql(server, {
            operationName: "RunStoppedStatus",
            query: "q",
            variables: { entityName: "alice", projectName: "demo", runId: RUN }
          })
        )
      expect(await stoppedStatus()).toEqual({ data: { project: { run: { stopped: false } } } })
      expect(await readJson(await stream(server, {}))).toEqual({ exitcode: null, limits: {}, stopped: false })

      const stop = await gql(server, {
        operationName: "StopRun",
        query: "mutation StopRun(...) {...}",
        variables: { id: created.data.upsertBucket.bucket.id }
      })
      expect(await readJson(stop)).toEqual({ data: { stopRun: { success: true } } })
      expect(await stoppedStatus()).toEqual({ data: { project: { run: { stopped: true } } } })
      expect(await readJson(await stream(server, {}))).toEqual({ exitcode: null, limits: {}, stopped: true })
    })

    it("E15: stopRun() from the test has the same effect", async () => {
      await createRun(server)
      server.stopRun(RUN)
      expect(await readJson(await stream(server, {}))).toMatchObject({ stopped: true })
      expect(server.run(RUN).stopped).toBe(true)
    })

    it("E21: RewindRun truncates history after the step and answers the bucket", async () => {
      server.seedRun({
        project: "demo",
        name: RUN,
        config: { _wandb: { value: { t: { "5": "0.28.3" } } } },
        history: Array.from({ length: 100 }, (_, step) => ({ _step: step, loss: 1 / (step + 1) }))
      })
      const response = await gql(server, {
        operationName: "RewindRun",
        query: "mutation RewindRun(...) {...}",
        variables: { runName: RUN, entity: "alice", project: "demo", metricName: "_step", metricValue: 50 }
      })
      const body = await readJson(response)
      expect(body.data.rewindRun.rewoundRun).toMatchObject({
        id: "UnVuOnYxOjNrOXgybTFwOmRlbW86YWxpY2U=",
        name: RUN,
        project: { name: "demo", entity: { name: "alice" } },
        historyLineCount: 51
      })
      await stream(server, history(51, [historyLine(51)]))
      const run = server.run(RUN)
      expect(run.history.map((row) => row["_step"])).toEqual(Array.from({ length: 52 }, (_, step) => step))
      expect(run.rewinds).toBe(1)
      expect(run.historyDuplicates).toEqual([])
    })

    it("E21: RewindRun on another metric is an execution error", async () => {
      server.seedRun({ project: "demo", name: RUN, history: [{ _step: 0 }] })
      const body = await readJson(
        await gql(server, {
          operationName: "RewindRun",
          query: "q",
          variables: { runName: RUN, entity: "alice", project: "demo", metricName: "epoch", metricValue: 1 }
        })
      )
      expect(body.data).toEqual({ rewindRun: null })
      expect(server.run(RUN).historyLineCount).toBe(1)
    })

    it("records alerts and MarkRunFilesUploaded", async () => {
      await createRun(server)
      const alert = await gql(server, {
        operationName: "NotifyScriptableRunAlert",
        query: "q",
        variables: {
          entityName: "alice",
          projectName: "demo",
          runName: RUN,
          title: "loss diverged",
          text: "loss is NaN",
          severity: "WARN",
          waitDuration: 60
        }
      })
      expect(await readJson(alert)).toEqual({ data: { notifyScriptableRunAlert: { success: true } } })
      const mark = await gql(server, {
        operationName: "MarkRunFilesUploaded",
        query: "q",
        variables: { entity: "alice", project: "demo", run: RUN, files: ["model.pt"] }
      })
      expect(await readJson(mark)).toEqual({ data: { markRunFilesUploaded: { success: true } } })
      const run = server.run(RUN)
      expect(run.alerts).toEqual([{ title: "loss diverged", text: "loss is NaN", severity: "WARN", waitDuration: 60 }])
      expect(run.markedUploaded).toEqual(["model.pt"])
    })

    it("matches the operation by the query text when operationName is missing", async () => {
      const response = await gql(server, {
        query: "mutation UpsertBucket($name: String) { x }",
        variables: { name: RUN }
      })
      expect(response.status).toBe(200)
      expect(server.requests()[0]?.operation).toBe("UpsertBucket")
      expect(server.run(RUN).project).toBe("uncategorized")
    })

    it("answers unknown operations and bad variables with HTTP 400 GraphQL errors", async () => {
      const unknown = await gql(server, { query: "query Nope { x }", operationName: "Nope" })
      expect(unknown.status).toBe(400)
      expect(await readJson(unknown)).toEqual({ errors: [{ message: "Unknown operation \"Nope\"" }] })

      const inherited = await gql(server, { query: "query toString { x }", operationName: "toString" })
      expect(inherited.status).toBe(400)

      const missing = await gql(server, {
        operationName: "RunResumeStatus",
        query: "q",
        variables: { project: "demo" }
      })
      expect(missing.status).toBe(400)
      expect((await readJson(missing)).errors[0].message).toContain("$name")

      const badConfig = await upsert(server, { name: RUN, project: "demo", config: "{not json" })
      expect(badConfig.status).toBe(400)
      expect(server.runs()).toEqual([])

      const notJson = await gql(server, "{\"query\":")
      expect(notJson.status).toBe(400)
      expect((await readJson(notJson)).errors[0].message).toContain("not JSON")
    })

    it("E19: a deleted run name gets HTTP 409 on UpsertBucket", async () => {
      await createRun(server)
      server.deleteRun(RUN)
      const response = await upsert(server, createVariables)
      expect(response.status).toBe(409)
      expect(await readJson(response)).toEqual({
        errors: [{ message: `run alice/demo/${RUN} was previously created and deleted; try a new run name` }]
      })
      expect(server.findRun(RUN)).toBeUndefined()
    })
  })

  describe("authentication (§2)", () => {
    it("E19: no Authorization, a short key, a Bearer token or another user name get HTTP 401", async () => {
      const viewer = { query: "query Viewer { viewer { id } }", operationName: "Viewer" }
      const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString("base64")}`
      const attempts = [
        undefined,
        authorizationHeader("too-short"),
        `Bearer ${KEY}`,
        basic(`user:${KEY}`),
        authorizationHeader(` ${KEY}`)
      ]
      for (const authorization of attempts) {
        const response = await fetch(`${server.url}/graphql`, {
          method: "POST",
          headers: { "content-type": "application/json", ...(authorization === undefined ? {} : { authorization }) },
          body: JSON.stringify(viewer)
        })
        expect(response.status).toBe(401)
        expect(await readJson(response)).toEqual({ errors: [{ message: "user is not logged in" }] })
      }
      expect(server.requests().map((r) => r.hadAuthorization)).toEqual([false, true, true, true, true])

      const fileStream = await fetch(`${server.url}${STREAM_PATH}`, { method: "POST", body: "{}" })
      expect(fileStream.status).toBe(401)
      expect(await readJson(fileStream)).toEqual({ error: "user is not logged in" })
    })

    it("accepts prefixed, long and JWT-shaped keys by default", async () => {
      const keys = [`local-${"a".repeat(40)}`, `wandb_v1_${"Z9_-".repeat(20)}`, "eyJh.eyJz.c2ln"]
      for (const key of keys) {
        expect(isWellFormedApiKey(key)).toBe(true)
        const response = await gql(server, { query: "query Viewer { v }" }, { authorization: authorizationHeader(key) })
        expect(response.status).toBe(200)
      }
      expect(isWellFormedApiKey("a".repeat(39))).toBe(false)
      expect(isWellFormedApiKey(`local-${"a".repeat(39)}`)).toBe(false)
    })

    it("accepts only the configured keys, changeable while running", async () => {
      await restartWith({ apiKeys: ["k".repeat(40)] })
      const asKey = (key: string) =>
        gql(server, { query: "query Viewer { v }" }, { authorization: authorizationHeader(key) })
      expect((await asKey("k".repeat(40))).status).toBe(200)
      expect((await asKey(KEY)).status).toBe(401)

      server.setApiKeys([])
      expect((await asKey("k".repeat(40))).status).toBe(401)
      server.setApiKeys()
      expect((await asKey(KEY)).status).toBe(200)
    })
  })

  describe("file_stream (§5)", () => {
    beforeEach(async () => {
      await createRun(server)
    })

    it("E9–E11: appends history, replaces the summary, overwrites console lines and records uploaded", async () => {
      const e9 = await stream(server, {
        files: {
          "wandb-history.jsonl": {
            offset: 0,
            content: ["{\"loss\":0.9,\"_step\":0,\"_runtime\":1.52,\"_timestamp\":1.7240000015e+09}"]
          },
          "wandb-summary.json": {
            offset: 0,
            content: [
              "{\"loss\":0.9,\"_step\":0,\"_runtime\":1.52,\"_timestamp\":1.7240000015e+09,\"_wandb\":{\"runtime\":1}}"
            ]
          }
        }
      })
      expect(e9.status).toBe(200)
      expect(await readJson(e9)).toEqual({ exitcode: null, limits: {}, stopped: false })

      await stream(server, {
        files: {
          "wandb-history.jsonl": { offset: 1, content: [historyLine(1, { loss: 0.7 }), historyLine(2, { loss: 0.5 })] },
          "wandb-summary.json": { offset: 0, content: ["{\"loss\":0.5,\"_step\":2}"] },
          "output.log": {
            offset: 0,
            content: [
              "2026-08-21T10:00:01.123456 epoch 1/10",
              "ERROR 2026-08-21T10:00:01.200000 UserWarning: lr is high",
              "2026-08-21T10:00:02.000000  30%|███       | 3/10"
            ]
          }
        },
        uploaded: ["wandb-metadata.json", "requirements.txt"]
      })
      await stream(server, {
        files: { "output.log": { offset: 2, content: ["2026-08-21T10:00:02.000000 100%|██████████| 10/10"] } }
      })

      const run = server.run(RUN)
      expect(run.history.map((row) => [row["_step"], row["loss"]])).toEqual([[0, 0.9], [1, 0.7], [2, 0.5]])
      expect(run.history[0]?.["_timestamp"]).toBe(1724000001.5)
      expect(run.summary).toEqual({ loss: 0.5, _step: 2 })
      expect(run.files["wandb-summary.json"]?.writes).toEqual([2])
      expect(run.output).toEqual([
        "2026-08-21T10:00:01.123456 epoch 1/10",
        "ERROR 2026-08-21T10:00:01.200000 UserWarning: lr is high",
        "2026-08-21T10:00:02.000000 100%|██████████| 10/10"
      ])
      expect(run.uploaded).toEqual(["wandb-metadata.json", "requirements.txt"])
      expect(run.historyDuplicates).toEqual([])
      expect(run.fileStreamRequests).toBe(3)
    })

    it("replaces lines at an overlapping offset and counts writes after acknowledgement", async () => {
      await stream(server, history(0, ["{\"a\":0}", "{\"a\":1}", "{\"a\":2}"]))
      await stream(server, history(1, ["{\"a\":10}", "{\"a\":20}", "{\"a\":3}"]))

      const run = server.run(RUN)
      expect(run.history).toEqual([{ a: 0 }, { a: 10 }, { a: 20 }, { a: 3 }])
      expect(run.files["wandb-history.jsonl"]).toMatchObject({ writes: [1, 2, 2, 1], rewritesAfterAck: [0, 1, 1, 0] })
      expect(run.historyDuplicates).toEqual([1, 2])
      expect(run.historyLineCount).toBe(4)
    })

    it("keeps holes visible when an offset skips lines", async () => {
      await stream(server, history(3, ["{\"a\":3}"]))
      const run = server.run(RUN)
      expect(run.historyLineCount).toBe(4)
      expect(run.history).toEqual([{ a: 3 }])
      expect(run.files["wandb-history.jsonl"]?.missing).toEqual([0, 1, 2])
      expect(run.files["wandb-history.jsonl"]?.lines).toEqual([null, null, null, "{\"a\":3}"])
    })

    it("parses NaN, Infinity and -Infinity in history and summary", async () => {
      await stream(server, {
        files: {
          "wandb-history.jsonl": { offset: 0, content: ["{\"x\":NaN,\"y\":Infinity,\"z\":-Infinity,\"_step\":0}"] },
          "wandb-summary.json": { offset: 0, content: ["{\"best\":{\"min\":-Infinity}}"] }
        }
      })
      const run = server.run(RUN)
      expect(run.history[0]).toEqual({
        x: Number.NaN,
        y: Number.POSITIVE_INFINITY,
        z: Number.NEGATIVE_INFINITY,
        _step: 0
      })
      expect(run.summary).toEqual({ best: { min: Number.NEGATIVE_INFINITY } })
    })

    it("E12–E14: events, heartbeats and preempting", async () => {
      const event = "{\"_wandb\":true,\"_timestamp\":1.724000015e+09,\"_runtime\":15,\"system.cpu\":12.5}"
      await stream(server, { files: { "wandb-events.jsonl": { offset: 0, content: [event] } } })
      expect(await readJson(await stream(server, {}))).toEqual({ exitcode: null, limits: {}, stopped: false })
      await stream(server, {})
      expect(server.run(RUN).preempting).toBe(false)
      await stream(server, { preempting: true })

      const run = server.run(RUN)
      expect(run.events).toEqual([{ _wandb: true, _timestamp: 1724000015, _runtime: 15, "system.cpu": 12.5 }])
      expect(run.eventsLineCount).toBe(1)
      expect(run.heartbeats).toBe(2)
      expect(run.preempting).toBe(true)
      expect(run.fileStreamRequests).toBe(4)
    })

    it("E16: complete with exit code 0 finishes the run, a non-zero code fails it", async () => {
      expect(server.run(RUN)).toMatchObject({ complete: false, exitcode: null, state: "running" })
      const final = await stream(server, {
        files: { "wandb-summary.json": { offset: 0, content: ["{\"loss\":0.1,\"_step\":9}"] } },
        uploaded: ["output.log", "wandb-summary.json", "config.yaml"],
        complete: true,
        exitcode: 0
      })
      expect(await readJson(final)).toEqual({ exitcode: null, limits: {}, stopped: false })
      expect(server.run(RUN)).toMatchObject({ complete: true, completeCount: 1, exitcode: 0, state: "finished" })

      await upsert(server, { name: "second", project: "demo" })
      await stream(server, { complete: true, exitcode: 255 }, {}, "/files/alice/demo/second/file_stream")
      expect(server.run("second")).toMatchObject({ complete: true, exitcode: 255, state: "failed" })
    })

    it("E17: a resumed run continues at the counts RunResumeStatus gave", async () => {
      await stream(server, {
        files: {
          "wandb-history.jsonl": { offset: 0, content: [historyLine(0), historyLine(1)] },
          "output.log": { offset: 0, content: ["a", "b", "c"] }
        },
        complete: true,
        exitcode: 0
      })
      const status = await readJson(
        await gql(server, { operationName: "RunResumeStatus", query: "q", variables: { project: "demo", name: RUN } })
      )
      const bucket = status.data.model.bucket
      await stream(server, {
        files: {
          "wandb-history.jsonl": { offset: bucket.historyLineCount, content: [historyLine(2)] },
          "output.log": { offset: bucket.logLineCount, content: ["resumed"] }
        }
      })
      const run = server.run(RUN)
      expect(run.history.map((row) => row["_step"])).toEqual([0, 1, 2])
      expect(run.output).toEqual(["a", "b", "c", "resumed"])
      expect(run.historyDuplicates).toEqual([])
    })

    it("E18: accepts legacy bodies with dropped, failed and newline-terminated console lines", async () => {
      const legacy = [
        { files: { "output.log": { offset: 0, content: ["epoch 1\n"] } }, dropped: 0 },
        { complete: false, failed: false, dropped: 0, uploaded: [] },
        { complete: true, exitcode: 1, dropped: 2, uploaded: ["output.log"] }
      ]
      for (const body of legacy) expect((await stream(server, body)).status).toBe(200)
      const run = server.run(RUN)
      expect(run).toMatchObject({ dropped: 2, exitcode: 1, state: "failed", uploaded: ["output.log"] })
      expect(run.output).toEqual(["epoch 1\n"])
      expect(run.unknownFields).toEqual([])
    })

    it("answers 400 to malformed bodies and 404 to unknown runs, changing nothing", async () => {
      const malformed = [
        { files: { "wandb-history.jsonl": { offset: -1, content: [] } } },
        { files: { "wandb-history.jsonl": { offset: 0, content: [{ a: 1 }] } } },
        { files: { "wandb-history.jsonl": { content: ["{}"] } } },
        { complete: "yes" },
        []
      ]
      for (const body of malformed) {
        const response = await stream(server, body)
        expect(response.status).toBe(400)
        expect(typeof (await readJson(response)).error).toBe("string")
      }
      const unknownRun = await stream(server, {}, {}, "/files/alice/demo/nobody/file_stream")
      expect(unknownRun.status).toBe(404)
      expect(await readJson(unknownRun)).toEqual({ error: "run not found" })
      expect(server.run(RUN).fileStreamRequests).toBe(0)
    })

    it("records fields the protocol does not define", async () => {
      await stream(server, { exitCode: 0, complete: true })
      const run = server.run(RUN)
      expect(run.unknownFields).toEqual(["exitCode"])
      expect(run.exitcode).toBeNull()
    })

    it("accepts gzip-compressed bodies", async () => {
      const body = gzipSync(Buffer.from(JSON.stringify(history(0, [historyLine(0)]))))
      const response = await fetch(`${server.url}${STREAM_PATH}`, {
        method: "POST",
        headers: {
          authorization: authorizationHeader(KEY),
          "content-type": "application/json",
          "content-encoding": "gzip"
        },
        body
      })
      expect(response.status).toBe(200)
      expect(server.run(RUN).history).toHaveLength(1)
      expect(server.run(RUN).contentEncodings).toEqual(["gzip"])
      expect(server.requests({ channel: "file_stream" })[0]?.bodyBytes).toBe(body.byteLength)
    })

    it("adds limits and rate-limit headers when asked", async () => {
      server.setFileStreamReply({ limits: { heartbeat_seconds: 5 }, rateLimit: { remaining: 3, reset: 10 } })
      const response = await stream(server, {})
      expect(await readJson(response)).toEqual({ exitcode: null, limits: { heartbeat_seconds: 5 }, stopped: false })
      expect(response.headers.get("ratelimit-remaining")).toBe("3")
      expect(response.headers.get("ratelimit-reset")).toBe("10")
    })
  })

  describe("faults", () => {
    it("answers a status with Retry-After and the channel's error body, leaving the state alone", async () => {
      server.setFaults({ rule: Faults.firstN(1, Faults.status(429, { retryAfter: 1 })) })
      const limited = await upsert(server, createVariables)
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("1")
      expect(await readJson(limited)).toEqual({ errors: [{ message: "too many requests" }] })
      expect(server.runs()).toEqual([])

      const retried = await upsert(server, createVariables)
      expect(retried.status).toBe(200)
      expect(server.run(RUN).upsertCount).toBe(1)
      expect(server.requests().map((r) => [r.status, r.fault])).toEqual([[429, "status"], [200, null]])
    })

    it("everyNth fails requests k, 2k, …", async () => {
      server.setFaults({ rule: Faults.everyNth(3, 500) })
      const statuses: Array<number> = []
      for (let i = 0; i < 6; i++) statuses.push((await gql(server, { query: "query Viewer { v }" })).status)
      expect(statuses).toEqual([200, 200, 500, 200, 200, 500])
    })

    it("onChannel counts within the channel; file_stream errors use the {error} body", async () => {
      await createRun(server)
      server.setFaults({ rule: Faults.onChannel("file_stream", Faults.firstN(2, 503)) })
      const first = await stream(server, history(0, [historyLine(0)]))
      expect(first.status).toBe(503)
      expect(await readJson(first)).toEqual({ error: "service unavailable" })
      expect((await gql(server, { query: "query Viewer { v }" })).status).toBe(200)
      expect((await stream(server, history(0, [historyLine(0)]))).status).toBe(503)
      expect((await stream(server, history(0, [historyLine(0)]))).status).toBe(200)
      expect(server.run(RUN).files["wandb-history.jsonl"]?.writes).toEqual([1])
    })

    it("onOperation selects one GraphQL operation; firstOf combines rules", async () => {
      server.setFaults({
        rule: Faults.firstOf(
          Faults.onOperation("UpsertBucket", Faults.firstN(1, 409)),
          Faults.onOperation(
            "Viewer",
            Faults.everyNth(2, Faults.status(410, { body: { errors: [{ message: "gone" }] } }))
          )
        )
      })
      expect((await upsert(server, createVariables)).status).toBe(409)
      expect((await gql(server, { query: "query Viewer { v }" })).status).toBe(200)
      expect((await upsert(server, createVariables)).status).toBe(200)
      const gone = await gql(server, { query: "query Viewer { v }" })
      expect(gone.status).toBe(410)
      expect(await readJson(gone)).toEqual({ errors: [{ message: "gone" }] })
    })

    it("a rule sees the request's channel, path, operation and counters", async () => {
      const seen: Array<unknown> = []
      server.setFaults({
        rule: (request) => {
          seen.push(request)
          return undefined
        }
      })
      await createRun(server)
      await stream(server, {})
      await gql(server, { query: "query Viewer { v }" })
      const graphql = { channel: "graphql", method: "POST", path: "/graphql" }
      const fileStream = { channel: "file_stream", method: "POST", path: STREAM_PATH }
      expect(seen).toEqual([
        { ...graphql, n: 1, channelN: 1, operationN: 1, operation: "UpsertBucket" },
        { ...fileStream, n: 2, channelN: 1, operationN: 1, operation: null },
        { ...graphql, n: 3, channelN: 2, operationN: 1, operation: "Viewer" }
      ])
    })

    it("drop destroys the connection: fetch sees a network error and nothing is applied", async () => {
      await createRun(server)
      server.setFaults({ rule: Faults.onChannel("file_stream", Faults.always(Faults.drop())) })
      const error = await fetchFails(stream(server, history(0, [historyLine(0)])))
      expect(error).toBeInstanceOf(TypeError)
      expect(server.run(RUN).historyLineCount).toBe(0)
      expect(server.requests({ channel: "file_stream" })[0]).toMatchObject({
        outcome: "dropped",
        fault: "drop",
        status: null
      })
    })

    it("drop after applying: the retry rewrites unacknowledged lines, which is not a duplicate", async () => {
      await createRun(server)
      server.setFaults({ rule: Faults.onChannel("file_stream", Faults.firstN(1, Faults.drop({ applied: true }))) })
      await fetchFails(stream(server, history(0, [historyLine(0), historyLine(1)])))
      expect(server.run(RUN).historyLineCount).toBe(2)

      expect((await stream(server, history(0, [historyLine(0), historyLine(1)]))).status).toBe(200)
      let run = server.run(RUN)
      expect(run.files["wandb-history.jsonl"]).toMatchObject({ writes: [2, 2], rewritesAfterAck: [0, 0] })
      expect(run.historyDuplicates).toEqual([])

      // sending the acknowledged rows once more is the duplicate a sender must never produce
      await stream(server, history(1, [historyLine(1), historyLine(2)]))
      run = server.run(RUN)
      expect(run.historyDuplicates).toEqual([1])
      expect(run.history.map((row) => row["_step"])).toEqual([0, 1, 2])
    })

    it("hang holds the request until the client's AbortSignal gives up", async () => {
      server.setFaults({ rule: Faults.always(Faults.hang) })
      const started = Date.now()
      const error = await fetchFails(
        post(`${server.url}/graphql`, { query: "query Viewer { v }" }, {}, AbortSignal.timeout(300))
      )
      expect((error as Error).name).toBe("TimeoutError")
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      expect(server.requests()[0]).toMatchObject({ outcome: "held", fault: "hang", status: null })
    })

    it("a held request does not keep close() waiting and fails on the client side", async () => {
      server.setFaults({ rule: Faults.always(Faults.hang) })
      const pending = fetchFails(gql(server, { query: "query Viewer { v }" }))
      await server.waitFor((s) => s.requests()[0]?.outcome === "held")
      const started = Date.now()
      await server.close()
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(await pending).toBeInstanceOf(TypeError)
    })

    it("adds fixed latency, or latency chosen per request", async () => {
      server.setFaults({ latency: 300 })
      let started = Date.now()
      expect((await gql(server, { query: "query Viewer { v }" })).status).toBe(200)
      expect(Date.now() - started).toBeGreaterThanOrEqual(290)

      await createRun(server)
      server.setFaults({ latency: (request) => (request.channel === "file_stream" ? 300 : 0) })
      started = Date.now()
      await gql(server, { query: "query Viewer { v }" })
      expect(Date.now() - started).toBeLessThan(250)
      started = Date.now()
      await stream(server, {})
      expect(Date.now() - started).toBeGreaterThanOrEqual(290)

      server.setFaults()
      started = Date.now()
      await stream(server, {})
      expect(Date.now() - started).toBeLessThan(250)
    })
  })

  describe("lifecycle", () => {
    it("stop() makes requests fail; restart() listens on the same port with the state kept", async () => {
      await createRun(server)
      await stream(server, history(0, [historyLine(0)]))
      const { port, url } = server

      await server.stop()
      expect(server.running).toBe(false)
      expect(await fetchFails(stream(server, history(1, [historyLine(1)])))).toBeInstanceOf(TypeError)

      await server.restart()
      expect(server.running).toBe(true)
      expect([server.port, server.url]).toEqual([port, url])
      expect((await stream(server, history(1, [historyLine(1)]))).status).toBe(200)
      const run = server.run(RUN)
      expect(run.history.map((row) => row["_step"])).toEqual([0, 1])
      expect(run.upsertCount).toBe(1)
      expect(server.requests().map((r) => r.channel)).toEqual(["graphql", "file_stream", "file_stream"])
    })

    it("a request delayed across a stop is never applied", async () => {
      await createRun(server)
      server.setFaults({ latency: 400 })
      const pending = fetchFails(stream(server, history(0, [historyLine(0)])))
      await server.waitFor((s) => s.requests({ channel: "file_stream" }).length === 1)
      await server.stop()
      expect(await pending).toBeInstanceOf(TypeError)
      await server.restart()
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(server.run(RUN).historyLineCount).toBe(0)
      expect(server.requests({ channel: "file_stream" })[0]?.outcome).toBe("dropped")
    })

    it("reset() forgets runs, requests and faults", async () => {
      await createRun(server)
      server.setFaults({ rule: Faults.always(500) })
      server.reset()
      expect(server.runs()).toEqual([])
      expect(server.requests()).toEqual([])
      expect((await createRun(server)).data.upsertBucket.inserted).toBe(true)
      expect(server.requests()[0]?.n).toBe(1)
    })

    it("serves under a path prefix, with upload URLs at the origin", async () => {
      await restartWith({ pathPrefix: "/wandb/" })
      expect(server.url).toBe(`${server.origin}/wandb`)
      expect((await fetch(`${server.origin}/graphql`, { method: "POST", body: "{}" })).status).toBe(404)
      await createRun(server)
      const files = await readJson(
        await gql(server, {
          operationName: "CreateRunFiles",
          query: "q",
          variables: { entity: "alice", project: "demo", run: RUN, files: ["f"] }
        })
      )
      expect(files.data.createRunFiles.files[0].uploadUrl).toMatch(new RegExp(`^${server.origin}/storage/`))
      expect((await stream(server, {})).status).toBe(200)
      expect(server.requests({ channel: "file_stream" })[0]?.path).toBe(STREAM_PATH)
    })

    it("waitFor resolves once a probe holds and rejects with the probe's last error on timeout", async () => {
      const waiting = server.waitFor((s) => s.run(RUN).upsertCount === 1 && s.run(RUN))
      await createRun(server)
      expect((await waiting).name).toBe(RUN)

      await expect(server.waitFor((s) => s.run("missing"), { timeoutMs: 100 })).rejects.toThrow(
        /gave up after 100 ms.*no run named "missing"/
      )
    })

    it("run() names the known runs when the name is unknown", () => {
      server.seedRun({ project: "demo", name: "a" })
      expect(() => server.run("b")).toThrow("known runs: alice/demo/a")
    })

    it("snapshot() summarises runs and requests", async () => {
      await createRun(server)
      await stream(server, history(0, ["{\"x\":NaN,\"_step\":0}"]))
      const snapshot = server.snapshot()
      expect(snapshot["requests"]).toEqual({ "graphql UpsertBucket 200": 1, "file_stream 200": 1 })
      expect(stringifyExtendedJson(snapshot)).toContain("\"history\":[{\"x\":NaN,\"_step\":0}]")
    })
  })
})

describe("TestServer.scoped", () => {
  effectIt.effect("starts a server for the scope and closes it in the finalizer", () =>
    Effect.gen(function*() {
      const server = yield* Effect.scoped(
        Effect.gen(function*() {
          const server = yield* TestServer.scoped({ viewer: { entity: "scoped" } })
          const response = yield* Effect.promise(() => gql(server, { query: "query Viewer { v }" }))
          const body = yield* Effect.promise(() => readJson(response))
          expect(body.data.viewer.entity).toBe("scoped")
          expect(server.running).toBe(true)
          return server
        })
      )
      expect(server.running).toBe(false)
      const error = yield* Effect.promise(() => fetchFails(gql(server, { query: "query Viewer { v }" })))
      expect(error).toBeInstanceOf(TypeError)
    }))
})

describe("extended JSON", () => {
  it("parses the three non-finite tokens and standard JSON alike", () => {
    expect(parseExtendedJson("[NaN, Infinity, -Infinity, -1.5e-3, \"NaN\", {\"a\": [true, false, null]}]")).toEqual([
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      -0.0015,
      "NaN",
      { a: [true, false, null] }
    ])
    const tricky = parseExtendedJson("{\"__proto__\": 1, \"s\": \"a\\\"b\\u00e9\"}") as Record<string, unknown>
    expect(Object.keys(tricky)).toEqual(["__proto__", "s"])
    expect(tricky["s"]).toBe("a\"bé")
  })

  it("rejects what is not JSON with a position", () => {
    for (const text of ["nan", "[1,]", "{\"a\" 1}", "01", "Infinityx", "\"open", ""]) {
      expect(() => parseExtendedJson(text)).toThrow(/at position \d+/)
    }
  })

  it("writes what it parses", () => {
    const value = { a: Number.NaN, b: [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY], c: "x" }
    expect(stringifyExtendedJson(value)).toBe("{\"a\":NaN,\"b\":[Infinity,-Infinity],\"c\":\"x\"}")
    expect(parseExtendedJson(stringifyExtendedJson(value, 2))).toEqual(value)
  })
})
