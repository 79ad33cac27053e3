import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as Tracer from "effect/Tracer"
import * as Backoff from "../src/domain/Backoff.js"
import { CredentialsRejected, NetworkError, ServerError } from "../src/domain/Errors.js"
import type { ConnectionConfig, ServerClient } from "../src/layers/ServerApi.js"
import * as ServerApi from "../src/layers/ServerApi.js"
import type { RequestRecord, TestServerOptions } from "./support/WandbTestServer.js"
import { Faults, sampleApiKey, TestServer } from "./support/WandbTestServer.js"

const KEY = sampleApiKey()

const FAST = { retryMax: 3, waitMin: "1 millis", waitMax: "5 millis", attemptTimeout: "5 seconds" } as const


/** A test server and a client for it with tiny retry waits. */
const setup = (options: TestServerOptions = {}, config: Partial<ConnectionConfig> = {}) =>
  Effect.gen(function*() {
    const server = yield* TestServer.scoped(options)
    const api = yield* ServerApi.ServerApi
    const client = api.connect({
      baseUrl: server.url,
      apiKey: Redacted.make(KEY),
      graphqlRetry: FAST,
      fileStreamRetry: FAST,
      uploadRetry: FAST,
      ...config
    })
    return { server, client }
  })

const createRun = (client: ServerClient, runId = "3k9x2m1p") =>
  client.upsertBucket({ name: runId, project: "demo", config: JSON.stringify({ _wandb: { value: { t: {} } } }) })

const statuses = (records: ReadonlyArray<RequestRecord>) => records.map((r) => r.status ?? r.outcome)

// The same behaviour over both HTTP clients an application is likely to provide.
const clients = [
  ["NodeHttpClient.layerUndici", NodeHttpClient.layerUndici],
  ["FetchHttpClient.layer", FetchHttpClient.layer]
] as const

for (const [label, httpClient] of clients) {
  const HttpLive = ServerApi.layer.pipe(Layer.provide(httpClient))

  describe(label, () => {
    describe("ServerApi operations", () => {
      it.scopedLive("Viewer: the envelope without variables, every header, and the parsed account", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({ viewer: { entity: "team-x", username: "bob", email: "b@x.org" } })
          const viewer = yield* client.viewer

          expect(viewer).toEqual({ entity: "team-x", username: "bob", email: "b@x.org" })
          const [request] = server.requests({ channel: "graphql" })
          assert(request !== undefined)
          expect(request.operation).toBe("Viewer")
          expect(request.body).toEqual({ query: expect.stringMatching(/^query Viewer\b/), operationName: "Viewer" })
          expect(request.apiKey).toBe(KEY)
          expect(request.userAgent).toBe("wandb-effect/0.1.0")
          expect(request.contentType).toBe("application/json")
          // present even when empty, as the official client sends them
          expect(request.wandbHeaders).toEqual({ "x-wandb-username": "", "x-wandb-user-email": "" })
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("user name, email, user agent and extra headers reach every channel they belong to", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({}, {
            username: "carol",
            email: "carol@example.com",
            userAgent: "trainer/2.0",
            extraHeaders: { "X-Team": "vision", "X-WANDB-EXTRA": "yes" }
          })
          const run = yield* createRun(client)
          yield* client.fileStream({ entity: run.entity, project: run.project, runId: run.runId }, {})
          const files = yield* client.createRunFiles({ ...pathOf(run), files: ["a.txt"] })
          yield* client.uploadFile(files.files[0]!.uploadUrl!, files.uploadHeaders, new Uint8Array([1]))

          const [graphql] = server.requests({ channel: "graphql" })
          expect(graphql?.userAgent).toBe("trainer/2.0")
          expect(graphql?.wandbHeaders).toEqual({
            "x-wandb-username": "carol",
            "x-wandb-user-email": "carol@example.com",
            "x-wandb-extra": "yes"
          })
          const [stream] = server.requests({ channel: "file_stream" })
          expect(stream?.wandbHeaders).toEqual({ "x-wandb-extra": "yes" })
          expect(stream?.userAgent).toBe("trainer/2.0")
          const upload = server.run("3k9x2m1p").uploadRequests[0]
          expect(upload?.headers["x-team"]).toBe("vision")
          expect(upload?.headers["user-agent"]).toBe("trainer/2.0")
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("ServerFeaturesQuery: the enabled names only", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({
            features: [
              { name: "EXPAND_DEFINED_METRIC_GLOBS", isEnabled: true },
              { name: "FILESTREAM_GZIP", isEnabled: false },
              { name: "STRUCTURED_CONSOLE_LOGS", isEnabled: true }
            ]
          })
          const features = yield* client.serverFeatures
          expect([...features].sort()).toEqual(["EXPAND_DEFINED_METRIC_GLOBS", "STRUCTURED_CONSOLE_LOGS"])
          const [request] = server.requests({ operation: "ServerFeaturesQuery" })
          expect(request?.body).toEqual({
            query: expect.stringContaining("features"),
            operationName: "ServerFeaturesQuery"
          })
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("ServerFeaturesQuery: an old server's validation error or a dead server mean no features", () =>
        Effect.gen(function*() {
          const old = yield* setup({ features: "unsupported" })
          expect((yield* old.client.serverFeatures).size).toBe(0)
          expect(statuses(old.server.requests())).toEqual([400])

          const failing = yield* setup({ faults: { rule: Faults.always(503) } })
          expect((yield* failing.client.serverFeatures).size).toBe(0)
          expect(statuses(failing.server.requests())).toEqual([503, 503, 503, 503])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("UpsertBucket: every declared variable, unset ones null, and the stored run parsed", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          const config = JSON.stringify({ lr: { value: 0.001 }, _wandb: { value: { t: { "5": "0.1.0" } } } })
          const run = yield* client.upsertBucket({
            name: "3k9x2m1p",
            project: "demo",
            groupName: "sweep-a",
            displayName: "first",
            notes: "first try",
            commit: "4f2c1e0",
            config,
            host: "gpu-box-1",
            program: "train.ts",
            repo: "https://example.com/alice/demo.git",
            jobType: "train",
            tags: ["baseline", "v2"],
            sweep: "sw33p"
          })

          const [request] = server.requests({ operation: "UpsertBucket" })
          expect((request?.body as { query: string }).query).toMatch(/^mutation UpsertBucket\(/)
          expect((request?.body as { variables: unknown }).variables).toEqual({
            id: null,
            name: "3k9x2m1p",
            project: "demo",
            entity: null,
            groupName: "sweep-a",
            description: null,
            displayName: "first",
            notes: "first try",
            commit: "4f2c1e0",
            config,
            host: "gpu-box-1",
            debug: null,
            program: "train.ts",
            repo: "https://example.com/alice/demo.git",
            jobType: "train",
            state: null,
            sweep: "sw33p",
            tags: ["baseline", "v2"],
            summaryMetrics: null
          })
          const stored = server.run("3k9x2m1p")
          expect(run).toEqual({
            storageId: stored.storageId,
            runId: "3k9x2m1p",
            displayName: "first",
            sweepName: "sw33p",
            project: "demo",
            entity: "alice",
            historyLineCount: 0,
            inserted: true
          })
          expect([stored.group, stored.program, stored.repo, stored.jobType]).toEqual([
            "sweep-a",
            "train.ts",
            "https://example.com/alice/demo.git",
            "train"
          ])
          expect(stored.configJson).toBe(config)

          // The second upsert by storage id updates the same run and reports its history.
          const lines = { "wandb-history.jsonl": { offset: 0, content: ["{}", "{}"] } }
          yield* client.fileStream(pathOf(run), { files: lines })
          const again = yield* client.upsertBucket({ id: run.storageId, name: "3k9x2m1p", project: "demo" })
          expect(again).toMatchObject({ storageId: run.storageId, inserted: false, historyLineCount: 2 })
          expect(server.run("3k9x2m1p").notes).toBe("first try")
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("UpsertBucket: 200 with errors fails with the server's messages and is not retried", () =>
        Effect.gen(function*() {
          const errors = [{ message: "invalid project name" }, { message: "and more" }]
          const body = { data: { upsertBucket: null }, errors }
          const { client, server } = yield* setup({ faults: { rule: Faults.always(Faults.status(200, { body })) } })
          const error = yield* Effect.flip(createRun(client))
          assert(error instanceof ServerError)
          expect(error.operation).toBe("UpsertBucket")
          expect(error.status).toBe(200)
          expect(error.body).toBe("invalid project name; and more")
          expect(server.requests()).toHaveLength(1)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("RunResumeStatus: undefined for a missing project or run, the bucket fields for a stored one", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          expect(yield* client.runResumeStatus({ project: "nowhere", runId: "abc" })).toBeUndefined()
          server.seedRun({ project: "demo", name: "other" })
          expect(yield* client.runResumeStatus({ project: "demo", runId: "abc" })).toBeUndefined()

          const seeded = server.seedRun({
            project: "demo",
            name: "abc",
            displayName: "lively-sun-7",
            config: { lr: { value: 0.001 }, _wandb: { value: { t: { "5": "0.1.0" } } } },
            tags: ["baseline"],
            notes: "from before",
            history: [{ loss: 0.5, _step: 0 }, { loss: 0.2, _step: 1 }],
            summary: { loss: 0.2, _step: 1 },
            events: [{ _wandb: true, _runtime: 12 }],
            output: ["a", "b", "c"]
          })
          const status = yield* client.runResumeStatus({ entity: "alice", project: "demo", runId: "abc" })
          assert(status !== undefined)
          expect(status).toMatchObject({
            project: "demo",
            entity: "alice",
            storageId: seeded.storageId,
            runId: "abc",
            displayName: "lively-sun-7",
            notes: "from before",
            tags: ["baseline"],
            historyLineCount: 2,
            eventsLineCount: 1,
            logLineCount: 3
          })
          expect(JSON.parse(status.wandbConfig!)).toEqual({ t: { "5": "0.1.0" } })
          expect(JSON.parse(status.summaryMetrics!)).toEqual({ loss: 0.2, _step: 1 })
          expect(JSON.parse(JSON.parse(status.historyTail!).at(-1))).toEqual({ loss: 0.2, _step: 1 })
          expect(JSON.parse(status.config!)).toHaveProperty("lr", { value: 0.001 })

          const requests = server.requests({ operation: "RunResumeStatus" })
          expect(requests.map((r) => (r.body as { variables: unknown }).variables)).toEqual([
            { project: "nowhere", entity: null, name: "abc" },
            { project: "demo", entity: null, name: "abc" },
            { project: "demo", entity: "alice", name: "abc" }
          ])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("CreateRunFiles: the variables, \"Name: value\" headers parsed, one URL per file", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({
            uploadHeaders: ["Content-Type: application/octet-stream", "X-Meta:  a: b ", "no colon here", ": no name"]
          })
          const run = yield* createRun(client)
          const files = yield* client.createRunFiles({ ...pathOf(run), files: ["wandb-metadata.json", "media/x.png"] })

          expect(files.uploadHeaders).toEqual({ "Content-Type": "application/octet-stream", "X-Meta": "a: b" })
          expect(files.files.map((f) => f.name)).toEqual(["wandb-metadata.json", "media/x.png"])
          expect(files.files[1]?.uploadUrl).toMatch(
            new RegExp(`^${server.origin}/storage/alice/demo/3k9x2m1p/media/x\\.png\\?sig=`)
          )
          const [request] = server.requests({ operation: "CreateRunFiles" })
          expect((request?.body as { variables: unknown }).variables).toEqual({
            entity: "alice",
            project: "demo",
            run: "3k9x2m1p",
            files: ["wandb-metadata.json", "media/x.png"]
          })
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("CreateRunFiles for an unknown run fails with the server's message", () =>
        Effect.gen(function*() {
          const { client } = yield* setup()
          const error = yield* Effect.flip(
            client.createRunFiles({ entity: "alice", project: "demo", runId: "ghost", files: ["a"] })
          )
          assert(error instanceof ServerError)
          expect(error.operation).toBe("CreateRunFiles")
          expect(error.body).toContain("not found")
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("uploads PUT the bytes with the batch's headers and no Authorization", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          const run = yield* createRun(client)
          const files = yield* client.createRunFiles({ ...pathOf(run), files: ["config.yaml", "empty.txt"] })
          const bytes = new TextEncoder().encode("lr:\n  value: 0.001\n")
          yield* client.uploadFile(files.files[0]!.uploadUrl!, files.uploadHeaders, bytes)
          yield* client.uploadFile(files.files[1]!.uploadUrl!, files.uploadHeaders, new Uint8Array())

          const stored = server.run("3k9x2m1p")
          expect(new TextDecoder().decode(stored.uploads["config.yaml"])).toBe("lr:\n  value: 0.001\n")
          expect(stored.uploads["empty.txt"]?.byteLength).toBe(0)
          expect(stored.uploadRequests.map((u) => u.hadAuthorization)).toEqual([false, false])
          expect(stored.uploadRequests[0]?.headers["content-type"]).toBe("application/octet-stream")
          expect(stored.uploadRequests[1]?.headers["content-length"]).toBe("0")
          expect(server.requests({ channel: "upload" }).map((r) => [r.method, r.hadAuthorization])).toEqual([
            ["PUT", false],
            ["PUT", false]
          ])
          // the channels that do need the key carried it
          expect(server.requests({ channel: "graphql" }).every((r) => r.apiKey === KEY)).toBe(true)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("under a base URL with a path, GraphQL and file_stream go below it and uploads stay keyless", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({ pathPrefix: "/wandb" })
          expect(server.url.endsWith("/wandb")).toBe(true)
          const run = yield* createRun(client)
          yield* client.fileStream(pathOf(run), {})
          const files = yield* client.createRunFiles({ ...pathOf(run), files: ["a.txt"] })
          yield* client.uploadFile(files.files[0]!.uploadUrl!, files.uploadHeaders, new Uint8Array([7]))

          expect(server.requests().map((r) => [r.channel, r.path, r.hadAuthorization])).toEqual([
            ["graphql", "/graphql", true],
            ["file_stream", "/files/alice/demo/3k9x2m1p/file_stream", true],
            ["graphql", "/graphql", true],
            ["upload", "/storage/alice/demo/3k9x2m1p/a.txt", false]
          ])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("upload retries: 500 and 429 are retried, 403 is final", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          const run = yield* createRun(client)
          const files = yield* client.createRunFiles({ ...pathOf(run), files: ["a.txt", "b.txt"] })

          const upload = (r: { readonly n: number }) =>
            r.n === 1 ? Faults.status(500) : r.n === 2 ? Faults.status(429) : undefined
          server.setFaults({ rule: Faults.onChannel("upload", upload) })
          yield* client.uploadFile(files.files[0]!.uploadUrl!, files.uploadHeaders, new Uint8Array([1]))
          expect(statuses(server.requests({ channel: "upload" }))).toEqual([500, 429, 200])

          server.setFaults({ rule: Faults.onChannel("upload", Faults.always(403)) })
          const error = yield* Effect.flip(client.uploadFile(files.files[1]!.uploadUrl!, {}, new Uint8Array([2])))
          assert(error instanceof ServerError)
          expect([error.operation, error.status]).toEqual(["upload", 403])
          expect(server.requests({ channel: "upload" })).toHaveLength(4)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("file_stream: the body as given, empty fields left out, and the stop flag", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          const run = yield* createRun(client)
          const path = pathOf(run)

          expect(yield* client.fileStream(path, {})).toEqual({ stopped: false })
          yield* client.fileStream(path, {
            files: {
              "wandb-history.jsonl": { offset: 0, content: ["{\"loss\":NaN,\"_step\":0}"] },
              "wandb-summary.json": { offset: 0, content: ["{\"loss\":NaN}"] }
            },
            uploaded: ["config.yaml"]
          })
          yield* client.fileStream(path, { files: {}, uploaded: [], preempting: true })
          server.stopRun("3k9x2m1p")
          const last = yield* client.fileStream(path, { complete: true, exitcode: 3 })

          expect(last).toEqual({ stopped: true })
          const requests = server.requests({ channel: "file_stream" })
          expect(requests.map((r) => r.body)).toEqual([
            {},
            {
              files: {
                "wandb-history.jsonl": { offset: 0, content: ["{\"loss\":NaN,\"_step\":0}"] },
                "wandb-summary.json": { offset: 0, content: ["{\"loss\":NaN}"] }
              },
              uploaded: ["config.yaml"]
            },
            { preempting: true },
            { complete: true, exitcode: 3 }
          ])
          expect(requests.every((r) => r.path === "/files/alice/demo/3k9x2m1p/file_stream")).toBe(true)
          expect(requests.every((r) => r.apiKey === KEY && r.contentType === "application/json")).toBe(true)
          const stored = server.run("3k9x2m1p")
          expect(stored.history).toHaveLength(1)
          expect(stored.uploaded).toEqual(["config.yaml"])
          expect([stored.state, stored.exitcode, stored.preempting]).toEqual(["failed", 3, true])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("file_stream: a final status fails at once with ServerError naming file_stream", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          const ghost = { entity: "alice", project: "demo", runId: "ghost" }
          const missing = yield* Effect.flip(client.fileStream(ghost, {}))
          assert(missing instanceof ServerError)
          expect([missing.operation, missing.status, missing.body]).toEqual(["file_stream", 404, "run not found"])

          const run = yield* createRun(client)
          for (const status of [400, 409, 410, 413, 422, 501]) {
            server.setFaults({ rule: Faults.onChannel("file_stream", Faults.always(status)) })
            const error = yield* Effect.flip(client.fileStream(pathOf(run), {}))
            assert(error instanceof ServerError)
            expect([error.operation, error.status]).toEqual(["file_stream", status])
          }
          expect(statuses(server.requests({ channel: "file_stream" }))).toEqual([404, 400, 409, 410, 413, 422, 501])
        }).pipe(Effect.provide(HttpLive)))
    })

    describe("ServerApi answers", () => {
      it.scopedLive("Viewer tolerates errors beside an account; no account at all is a rejected key", () =>
        Effect.gen(function*() {
          const partial = {
            data: { viewer: { id: "VXNlcjox", entity: "alice", username: "alice", email: null } },
            errors: [{ message: "Cannot query field \"teams\" on type \"User\"." }]
          }
          const first = Faults.firstN(1, Faults.status(200, { body: partial }))
          const { client, server } = yield* setup({ faults: { rule: first } })
          expect(yield* client.viewer).toEqual({ entity: "alice", username: "alice", email: undefined })

          server.setFaults({ rule: Faults.always(Faults.status(200, { body: { data: { viewer: null } } })) })
          const rejected = yield* Effect.flip(client.viewer)
          assert(rejected instanceof CredentialsRejected)
          expect(rejected.status).toBe(200)

          const failed = { data: { viewer: null }, errors: [{ message: "internal error" }] }
          server.setFaults({ rule: Faults.always(Faults.status(200, { body: failed })) })
          const error = yield* Effect.flip(client.viewer)
          assert(error instanceof ServerError)
          expect(error.body).toBe("internal error")
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("answers that do not fit the operation are ServerErrors saying so", () =>
        Effect.gen(function*() {
          const html = Faults.status(200, { body: new TextEncoder().encode("<html>") })
          const { client, server } = yield* setup({ faults: { rule: Faults.always(html) } })
          const notJson = yield* Effect.flip(createRun(client))
          assert(notJson instanceof ServerError)
          expect(notJson.body).toContain("not JSON")

          const misfit = Faults.status(200, { body: { data: { upsertBucket: { bucket: 7 } } } })
          server.setFaults({ rule: Faults.always(misfit) })
          const misshapen = yield* Effect.flip(createRun(client))
          assert(misshapen instanceof ServerError)
          expect(misshapen.body).toContain("unexpected answer")

          server.setFaults({ rule: Faults.always(Faults.status(200, { body: {} })) })
          const empty = yield* Effect.flip(createRun(client))
          expect(empty).toMatchObject({ _tag: "ServerError", body: "the answer has no data" })
          expect(server.requests()).toHaveLength(3)
        }).pipe(Effect.provide(HttpLive)))

      it.live("a URL that cannot be requested fails at once, without retries", () =>
        Effect.gen(function*() {
          const api = yield* ServerApi.ServerApi
          const client = api.connect({
            baseUrl: "http://127.0.0.1:99999",
            apiKey: Redacted.make(KEY),
            graphqlRetry: { retryMax: 5, waitMin: "1 hour" }
          })
          // a retry would sleep for an hour, far past the timeout
          const error = yield* Effect.flip(client.viewer).pipe(Effect.timeout("5 seconds"))
          assert(error instanceof NetworkError)
          expect(error.reason).toContain("invalid URL")
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("every operation runs in a span named ServerApi.<operation>", () =>
        Effect.gen(function*() {
          const names: Array<string> = []
          const inner = yield* Effect.tracer
          const recording = Tracer.make({
            span: (name, ...rest) => {
              names.push(name)
              return inner.span(name, ...rest)
            },
            context: (f, fiber) => inner.context(f, fiber)
          })
          const { client } = yield* setup()
          yield* Effect.gen(function*() {
            yield* client.viewer
            yield* client.serverFeatures
            const run = yield* createRun(client)
            yield* client.runResumeStatus({ project: "demo", runId: run.runId })
            const files = yield* client.createRunFiles({ ...pathOf(run), files: ["a"] })
            yield* client.uploadFile(files.files[0]!.uploadUrl!, {}, new Uint8Array([1]))
            yield* client.fileStream(pathOf(run), {})
          }).pipe(Effect.withTracer(recording))

          expect(names.filter((name) => name.startsWith("ServerApi."))).toEqual([
            "ServerApi.viewer",
            "ServerApi.serverFeatures",
            "ServerApi.upsertBucket",
            "ServerApi.runResumeStatus",
            "ServerApi.createRunFiles",
            "ServerApi.uploadFile",
            "ServerApi.fileStream"
          ])
          // the upload's own HTTP span would record the signed URL, so there is none
          expect(names.filter((name) => name.startsWith("http.client"))).toHaveLength(6)
        }).pipe(Effect.provide(HttpLive)))
    })

    describe("ServerApi credentials", () => {
      it.scopedLive("401 at Viewer is CredentialsRejected with the server's reason, sent once, without the key", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({ apiKeys: [sampleApiKey()] })
          const error = yield* Effect.flip(client.viewer)

          assert(error instanceof CredentialsRejected)
          expect(error.status).toBe(401)
          expect(error.reason).toBe("user is not logged in")
          expect(error.baseUrl).toBe(server.url)
          expect(error.message).not.toContain(KEY)
          expect(JSON.stringify(error)).not.toContain(KEY)
          expect(server.requests()).toHaveLength(1)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("403 is CredentialsRejected too; a server echoing the key gets it scrubbed", () =>
        Effect.gen(function*() {
          const basic = Buffer.from(`api:${KEY}`).toString("base64")
          const body = { errors: [{ message: `key ${KEY} (${basic}) has no access` }] }
          const { client } = yield* setup({ faults: { rule: Faults.always(Faults.status(403, { body })) } })
          const error = yield* Effect.flip(client.viewer)

          assert(error instanceof CredentialsRejected)
          expect(error.status).toBe(403)
          expect(error.reason).toContain("has no access")
          for (const text of [error.message, JSON.stringify(error), String(error)]) {
            expect(text).not.toContain(KEY)
            expect(text).not.toContain(basic)
          }
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("other operations report a rejected key as ServerError", () =>
        Effect.gen(function*() {
          const { client } = yield* setup({ apiKeys: [] })
          const error = yield* Effect.flip(createRun(client))
          assert(error instanceof ServerError)
          expect([error.operation, error.status]).toEqual(["UpsertBucket", 401])
          expect(error.message).not.toContain(KEY)
        }).pipe(Effect.provide(HttpLive)))
    })

    describe("ServerApi retries", () => {
      it.scopedLive("429 with Retry-After: 1 waits a second before the next attempt", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({
            faults: { rule: Faults.onOperation("Viewer", Faults.firstN(1, Faults.status(429, { retryAfter: 1 }))) }
          })
          yield* client.viewer
          const [first, second] = server.requests()
          expect(statuses(server.requests())).toEqual([429, 200])
          // the computed backoff would have been a few milliseconds
          expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(950)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("500 is retried until the server recovers", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({ faults: { rule: Faults.firstN(2, 500) } })
          expect((yield* client.viewer).entity).toBe("alice")
          expect(statuses(server.requests())).toEqual([500, 500, 200])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("409 is retried for UpsertBucket only", () =>
        Effect.gen(function*() {
          const rule = Faults.onOperation("UpsertBucket", Faults.firstN(1, 409))
          const { client, server } = yield* setup({ faults: { rule } })
          const run = yield* createRun(client)
          expect(run.inserted).toBe(true)
          expect(statuses(server.requests({ operation: "UpsertBucket" }))).toEqual([409, 200])

          server.setFaults({ rule: Faults.always(409) })
          const files = yield* Effect.flip(client.createRunFiles({ ...pathOf(run), files: ["a"] }))
          assert(files instanceof ServerError)
          expect(files.status).toBe(409)
          const viewer = yield* Effect.flip(client.viewer)
          expect(viewer).toMatchObject({ _tag: "ServerError", status: 409 })
          expect(statuses(server.requests()).slice(2)).toEqual([409, 409])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("a deleted run's 409 is retried for UpsertBucket until retries run out", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup()
          yield* createRun(client)
          server.deleteRun("3k9x2m1p")
          const error = yield* Effect.flip(createRun(client))
          assert(error instanceof ServerError)
          expect(error.status).toBe(409)
          expect(error.body).toContain("was previously created and deleted")
          expect(error.body).toContain("gave up after 4 attempts")
          expect(server.requests({ operation: "UpsertBucket" })).toHaveLength(5)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("410 at UpsertBucket is final: ServerError naming UpsertBucket", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({ faults: { rule: Faults.always(410) } })
          const error = yield* Effect.flip(createRun(client))
          assert(error instanceof ServerError)
          expect([error.operation, error.status]).toEqual(["UpsertBucket", 410])
          expect(error.message).toMatch(/^UpsertBucket failed with HTTP 410/)
          expect(server.requests()).toHaveLength(1)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("dropped connections are retried on every channel", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({ faults: { rule: Faults.everyNth(2, Faults.drop()) } })
          const run = yield* createRun(client)
          yield* client.fileStream(pathOf(run), { files: { "wandb-history.jsonl": { offset: 0, content: ["{}"] } } })
          const files = yield* client.createRunFiles({ ...pathOf(run), files: ["a.txt"] })
          yield* client.uploadFile(files.files[0]!.uploadUrl!, files.uploadHeaders, new Uint8Array([1]))

          expect(server.requests().map((r) => `${r.channel} ${r.outcome}`)).toEqual([
            "graphql answered",
            "file_stream dropped",
            "file_stream answered",
            "graphql dropped",
            "graphql answered",
            "upload dropped",
            "upload answered"
          ])
          expect(server.run("3k9x2m1p").uploads["a.txt"]).toEqual(new Uint8Array([1]))
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("a dropped file_stream request the server applied is sent again and lands on the same lines", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({
            faults: { rule: Faults.onChannel("file_stream", Faults.firstN(1, Faults.drop({ applied: true }))) }
          })
          const run = yield* createRun(client)
          const lines = { "wandb-history.jsonl": { offset: 0, content: ["{\"a\":1}"] } }
          yield* client.fileStream(pathOf(run), { files: lines })
          expect(server.run("3k9x2m1p").history).toEqual([{ a: 1 }])
          expect(statuses(server.requests({ channel: "file_stream" }))).toEqual(["dropped", 200])
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("an attempt the server never answers times out and is retried", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup(
            { faults: { rule: Faults.onChannel("file_stream", Faults.firstN(1, Faults.hang)) } },
            { fileStreamRetry: { ...FAST, attemptTimeout: "200 millis" } }
          )
          const run = yield* createRun(client)
          expect(yield* client.fileStream(pathOf(run), {})).toEqual({ stopped: false })
          const [held, answered] = server.requests({ channel: "file_stream" })
          expect(held?.outcome).toBe("held")
          expect(answered?.status).toBe(200)
          expect(answered!.receivedAt - held!.receivedAt).toBeGreaterThanOrEqual(150)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("exhausted retries: ServerError with the last status, NetworkError without an answer", () =>
        Effect.gen(function*() {
          const down = Faults.status(503, { body: { error: "down" } })
          const failing = yield* setup({ faults: { rule: Faults.always(down) } })
          const serverError = yield* Effect.flip(failing.client.viewer)
          assert(serverError instanceof ServerError)
          expect([serverError.operation, serverError.status]).toEqual(["Viewer", 503])
          expect(serverError.body).toBe("down (gave up after 4 attempts)")
          expect(failing.server.requests()).toHaveLength(4)

          const dropping = yield* setup({ faults: { rule: Faults.always(Faults.drop()) } })
          const run = { entity: "alice", project: "demo", runId: "x" }
          const dropped = yield* Effect.flip(dropping.client.fileStream(run, {}))
          assert(dropped instanceof NetworkError)
          expect(dropped.operation).toBe("file_stream")
          expect(dropped.reason).toContain("gave up after 4 attempts")
          expect(dropping.server.requests()).toHaveLength(4)

          const hanging = yield* setup(
            { faults: { rule: Faults.always(Faults.hang) } },
            { graphqlRetry: { retryMax: 1, waitMin: "1 millis", attemptTimeout: "100 millis" } }
          )
          const timedOut = yield* Effect.flip(createRun(hanging.client))
          assert(timedOut instanceof NetworkError)
          expect(timedOut.reason).toMatch(/no answer within 100ms \(gave up after 2 attempts\)/)
        }).pipe(Effect.provide(HttpLive)))

      it.scopedLive("a server that is gone gives NetworkError naming the refused connection", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup({}, { graphqlRetry: { retryMax: 1, waitMin: "1 millis" } })
          yield* Effect.promise(() => server.stop())
          const error = yield* Effect.flip(client.viewer)
          assert(error instanceof NetworkError)
          expect(error.operation).toBe("Viewer")
          expect(error.reason).toContain("ECONNREFUSED")
        }).pipe(Effect.provide(HttpLive)))

      it.scoped("waits go through the Clock: a Retry-After of 30 s passes only when the clock moves", () =>
        Effect.gen(function*() {
          const { client, server } = yield* setup(
            { faults: { rule: Faults.firstN(1, Faults.status(429, { retryAfter: 30 })) } },
            { graphqlRetry: { retryMax: 3, waitMin: "1 millis", attemptTimeout: "1 hour" } }
          )
          const fiber = yield* Effect.fork(client.viewer)
          const realPause = TestServices.provideLive(Effect.sleep("20 millis"))

          // The attempt's timeout is one pending sleep; the retry wait, once started, is a second one.
          let pending = 0
          for (let i = 0; i < 500 && pending < 2; i++) {
            yield* realPause
            pending = Chunk.size(yield* TestClock.sleeps())
          }
          expect(pending).toBe(2)
          yield* TestClock.adjust("29 seconds")
          yield* realPause
          expect(server.requests()).toHaveLength(1)

          yield* TestClock.adjust("1 second")
          const viewer = yield* Fiber.join(fiber)
          expect(viewer.entity).toBe("alice")
          expect(statuses(server.requests())).toEqual([429, 200])
        }).pipe(Effect.provide(HttpLive)))
    })
  })
}

describe("Backoff rules", () => {
  const policy = { retryMax: 20, waitMinMillis: 2000, waitMaxMillis: 60000 }

  it("doubles from waitMin with up to 25% jitter and stops at waitMax", () => {
    expect([0, 1, 2, 3].map((n) => Backoff.backoffMillis(policy, n, 0))).toEqual([2000, 4000, 8000, 16000])
    expect(Backoff.backoffMillis(policy, 1, 0.999)).toBeCloseTo(4000 * 1.24975)
    expect(Backoff.backoffMillis(policy, 5, 0)).toBe(60000)
    expect(Backoff.backoffMillis(policy, 10000, 0.5)).toBe(60000)
  })

  it("Retry-After in seconds, fractional seconds or an HTTP date replaces the backoff", () => {
    const now = Date.parse("2026-08-21T10:00:00Z")
    expect(Backoff.waitMillis(policy, 0, 0, "3", now)).toBe(3000)
    expect(Backoff.waitMillis(policy, 0, 0, "0.25", now)).toBe(250)
    expect(Backoff.waitMillis(policy, 0, 0, "Fri, 21 Aug 2026 10:00:05 GMT", now)).toBe(5000)
    expect(Backoff.waitMillis(policy, 0, 0, "Fri, 21 Aug 2026 09:59:00 GMT", now)).toBe(0)
    // unusable values fall back to the computed wait
    for (const value of [undefined, "", "soon", "-1", "1, 2"]) {
      expect(Backoff.waitMillis(policy, 2, 0, value, now)).toBe(8000)
    }
  })

  it("which statuses each channel retries", () => {
    const retried = (rule: Backoff.RetryRule) =>
      [200, 204, 301, 400, 401, 403, 404, 408, 409, 410, 413, 422, 425, 429, 500, 501, 502, 503, 600]
        .filter((status) => Backoff.verdict(rule, status) === "retry")
    expect(retried("most-failures")).toEqual([408, 425, 429, 500, 502, 503, 600])
    expect(retried("upsert-bucket")).toEqual([408, 409, 425, 429, 500, 502, 503, 600])
    expect(retried("upload")).toEqual([429, 500, 502, 503, 600])
  })
})

describe("ServerApi helpers", () => {
  it("credentials go only to the base URL's scheme, host, port and path", () => {
    const may = ServerApi.mayCarryCredentials
    expect(may("http://127.0.0.1:8080", "http://127.0.0.1:8080/graphql")).toBe(true)
    expect(may("http://127.0.0.1:8080/", "http://127.0.0.1:8080/storage/x")).toBe(true)
    expect(may("http://127.0.0.1:8080/wandb", "http://127.0.0.1:8080/wandb/graphql")).toBe(true)
    expect(may("http://127.0.0.1:8080/wandb", "http://127.0.0.1:8080/wandb")).toBe(true)
    expect(may("http://127.0.0.1:8080/wandb", "http://127.0.0.1:8080/wandbx/graphql")).toBe(false)
    expect(may("http://127.0.0.1:8080/wandb", "http://127.0.0.1:8080/storage/x")).toBe(false)
    expect(may("http://127.0.0.1:8080", "http://127.0.0.1:8081/graphql")).toBe(false)
    expect(may("http://127.0.0.1:8080", "https://127.0.0.1:8080/graphql")).toBe(false)
    expect(may("http://127.0.0.1:8080", "http://localhost:8080/graphql")).toBe(false)
    expect(may("http://127.0.0.1:8080", "not a url")).toBe(false)
  })

  it("error messages from the body forms of protocol §3.4", () => {
    const of = ServerApi.errorMessageOf
    expect(of("{\"error\":\"run not found\"}")).toBe("run not found")
    expect(of("{\"error\":{\"message\":\"bad\"}}")).toBe("bad")
    expect(of("{\"errors\":[\"one\",{\"message\":\"two\"},3]}")).toBe("one; two")
    expect(of("  gateway timeout \n")).toBe("gateway timeout")
    expect(of("")).toBeUndefined()
  })
})

const pathOf = (run: { readonly entity: string; readonly project: string; readonly runId: string }) => ({
  entity: run.entity,
  project: run.project,
  runId: run.runId
})
