import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as path from "node:path"
import { CredentialsRejected, FinishTimeout, InitTimeout, Wandb } from "wandb-effect"
import * as Sync from "../src/programs/Sync.js"
import { runProgram, startProgram, watch } from "./support/children.js"
import { tempDir } from "./support/runFiles.js"
import { Faults, sampleApiKey, startTestServer, TestServer } from "./support/WandbTestServer.js"

const key = sampleApiKey()

// Short waits between retries, so tests with injected faults take seconds, not minutes.
const fastRetries = { WANDB_X_RETRY_WAIT_MIN_SECONDS: "0.05", WANDB_X_RETRY_WAIT_MAX_SECONDS: "0.2" }

const onlineEnv = (url: string, extra: Record<string, string> = {}) => ({
  WANDB_BASE_URL: url,
  WANDB_API_KEY: key,
  WANDB_SILENT: "true",
  ...fastRetries,
  ...extra
})

const provide = (cwd: string, env: Record<string, string>) => Effect.provide(Wandb.layerTest({ cwd, env }))

const expectCompleteIrisRun = (server: Awaited<ReturnType<typeof startTestServer>>) => {
  const runs = server.runs()
  expect(runs).toHaveLength(1)
  const run = runs[0]!
  expect(run.project).toBe("iris-mlp")
  expect((run.config!["_wandb"] as { value: { t: unknown } }).value.t).toBeDefined()
  expect((run.config!["epochs"] as { value: number }).value).toBe(80)
  expect(run.history.map((row) => row["_step"])).toEqual(Array.from({ length: 80 }, (_, i) => i))
  expect(run.history.map((row) => row["epoch"])).toEqual(Array.from({ length: 80 }, (_, i) => i + 1))
  expect(run.historyDuplicates).toEqual([])
  expect(typeof run.summary["best_val_acc"]).toBe("number")
  expect(run.summary["_step"]).toBe(79)
  expect(Object.keys(run.uploads).sort()).toEqual([
    "config.yaml",
    "output.log",
    "wandb-metadata.json",
    "wandb-summary.json"
  ])
  // The program's progress lines, captured from stdout, in output.log and on the stream.
  const printed = new TextDecoder().decode(run.uploads["output.log"])
  expect(printed.split("\n").filter((line) => line.startsWith("epoch"))).toHaveLength(8)
  expect(run.output.filter((line) => line.includes("epoch  80"))).toHaveLength(1)
  expect(run.uploadRequests.every((upload) => !upload.hadAuthorization)).toBe(true)
  expect(run.complete).toBe(true)
  expect(run.exitcode).toBe(0)
  return run
}

describe("online runs against the loopback server", () => {
  it("the training program: config with _wandb.t, every row in order, summary, files, complete 0", async () => {
    const server = await startTestServer()
    try {
      const cwd = tempDir()
      const ended = await runProgram("examples/train-iris.ts", [], { cwd, env: onlineEnv(server.url) })
      expect(ended.code, ended.stderr).toBe(0)
      expectCompleteIrisRun(server)
      const synced = fs.readdirSync(path.join(cwd, "wandb", "latest-run")).filter((f) => f.endsWith(".synced"))
      expect(synced).toHaveLength(1)
    } finally {
      await server.close()
    }
  })

  it("with 429 (Retry-After: 1) on every fifth request and 500 on every third: the same end state", async () => {
    const server = await startTestServer({
      faults: {
        rule: Faults.firstOf(
          Faults.everyNth(5, Faults.status(429, { retryAfter: 1 })),
          Faults.everyNth(3, Faults.status(500))
        )
      }
    })
    try {
      const cwd = tempDir()
      const ended = await runProgram("examples/train-iris.ts", [], {
        cwd,
        env: onlineEnv(server.url, { WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL: "0.01" })
      })
      expect(ended.code, ended.stderr).toBe(0)
      expectCompleteIrisRun(server)
      const statuses = server.requests().map((request) => request.status)
      expect(statuses).toContain(429)
      expect(statuses).toContain(500)
    } finally {
      await server.close()
    }
  })

  it.scoped("a key the server rejects fails init with CredentialsRejected before anything else is sent", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.scoped({ apiKeys: ["a".repeat(40)] })
      const cwd = tempDir()
      const error = yield* Effect.flip(
        Effect.scoped(Wandb.init({ project: "p" })).pipe(provide(cwd, onlineEnv(server.url)))
      )
      expect(error).toBeInstanceOf(CredentialsRejected)
      expect((error as CredentialsRejected).status).toBe(401)
      expect(JSON.stringify(error)).not.toContain(key)
      expect(server.requests().map((request) => request.operation)).toEqual(["Viewer"])
      expect(fs.existsSync(path.join(cwd, "wandb"))).toBe(false)
    }))

  it.scopedLive("a server that never answers: init fails with InitTimeout naming the phase", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.scoped({ faults: { rule: Faults.always(Faults.hang) } })
      const cwd = tempDir()
      const error = yield* Effect.flip(
        Effect.scoped(Wandb.init({ project: "p", settings: { initTimeout: 1 } })).pipe(
          provide(cwd, onlineEnv(server.url))
        )
      )
      expect(error).toBeInstanceOf(InitTimeout)
      expect((error as InitTimeout).phase).toContain("Viewer")
      expect((error as InitTimeout).timeoutMillis).toBe(1000)
    }))

  it.scopedLive("a server that dies mid-run: finish fails with FinishTimeout; a later sync sends the rest once", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.scoped()
      const cwd = tempDir()
      const env = onlineEnv(server.url, { WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL: "0.05" })

      const { error, dir, runId } = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ project: "dies", config: { lr: 0.1 } })
        for (let i = 0; i < 50; i++) yield* run.log({ i, loss: 1 / (i + 1) })
        // Let some rows reach the server before it goes away.
        yield* Effect.promise(() => server.waitFor((s) => (s.findRun(run.id)?.history.length ?? 0) > 0 || undefined))
        yield* Effect.promise(() => server.stop())
        for (let i = 50; i < 120; i++) yield* run.log({ i, loss: 1 / (i + 1) })
        const error = yield* Effect.flip(run.finish({ timeout: "1 second" }))
        return { error, dir: run.dir!, runId: run.id }
      })).pipe(provide(cwd, env))

      expect(error).toBeInstanceOf(FinishTimeout)
      expect((error as FinishTimeout).pending).toMatch(/history rows/)
      expect(fs.readdirSync(dir).some((f) => f.endsWith(".synced"))).toBe(false)

      yield* Effect.promise(() => server.restart())
      const outcomes = yield* Sync.sync([dir]).pipe(provide(cwd, env))
      expect(outcomes.map((o) => o.status)).toEqual(["synced"])

      const stored = server.run(runId)
      expect(stored.history.map((row) => row["i"])).toEqual(Array.from({ length: 120 }, (_, i) => i))
      expect(stored.historyDuplicates).toEqual([])
      expect(stored.complete).toBe(true)
      expect(stored.exitcode).toBe(0)

      const again = yield* Sync.sync([dir]).pipe(provide(cwd, env))
      expect(again.map((o) => o.status)).toEqual(["skipped"])
    }))
})

describe("sync", () => {
  it("an offline run of the training program, synced, arrives like the same program run online", async () => {
    const onlineServer = await startTestServer()
    const syncServer = await startTestServer()
    try {
      const onlineCwd = tempDir()
      const online = await runProgram("examples/train-iris.ts", [], {
        cwd: onlineCwd,
        env: onlineEnv(onlineServer.url)
      })
      expect(online.code, online.stderr).toBe(0)

      const offlineCwd = tempDir()
      const offline = await runProgram("examples/train-iris.ts", [], {
        cwd: offlineCwd,
        env: { WANDB_MODE: "offline" }
      })
      expect(offline.code, offline.stderr).toBe(0)
      const sync = await runProgram("src/bin.ts", ["sync"], { cwd: offlineCwd, env: onlineEnv(syncServer.url) })
      expect(sync.code, sync.stderr).toBe(0)
      expect(sync.stdout).toMatch(/server has 80 history rows/)

      const a = onlineServer.runs()[0]!
      const b = syncServer.runs()[0]!
      const withoutTimes = (row: Record<string, unknown>) => {
        const { _runtime, _timestamp, ...rest } = row
        return rest
      }
      expect(b.history.map(withoutTimes)).toEqual(a.history.map(withoutTimes))
      expect(withoutTimes(b.summary)).toMatchObject({ ...withoutTimes(a.summary), _wandb: expect.anything() })
      const userConfig = (config: Record<string, unknown> | null) =>
        Object.fromEntries(Object.entries(config ?? {}).filter(([k]) => k !== "_wandb"))
      expect(userConfig(b.config)).toEqual(userConfig(a.config))
      expect(b.complete && b.exitcode === 0).toBe(true)

      const historyRequests = () =>
        syncServer.requests({ channel: "file_stream" }).filter((r) =>
          JSON.stringify(r.body ?? {}).includes("wandb-history.jsonl")
        ).length
      const before = historyRequests()
      const again = await runProgram("src/bin.ts", ["sync"], { cwd: offlineCwd, env: onlineEnv(syncServer.url) })
      expect(again.code).toBe(0)
      expect(again.stdout).toMatch(/already synced/)
      const forced = await runProgram("src/bin.ts", ["sync", "--include-synced"], {
        cwd: offlineCwd,
        env: onlineEnv(syncServer.url)
      })
      expect(forced.code, forced.stderr).toBe(0)
      expect(historyRequests()).toBe(before)
      expect(syncServer.runs()[0]!.historyDuplicates).toEqual([])
    } finally {
      await onlineServer.close()
      await syncServer.close()
    }
  })

  it("a process killed with SIGKILL, then synced: every row older than a flush interval is there", async () => {
    const server = await startTestServer()
    try {
      const cwd = tempDir()
      const child = startProgram("test/fixtures/scripts/log-forever.ts", [cwd], { cwd, env: { WANDB_SILENT: "true" } })
      const watched = watch(child)
      const [, runDir] = await watched.waitFor(/dir (.+)\n/)
      await watched.waitFor(/logged 100\n/)
      const reported = Math.max(...[...watched.output().matchAll(/logged (\d+)/g)].map((m) => Number(m[1])))
      await new Promise((resolve) => setTimeout(resolve, 300))
      child.kill("SIGKILL")
      await watched.ended

      const sync = await runProgram("src/bin.ts", ["sync", runDir!], { cwd, env: onlineEnv(server.url) })
      expect(sync.code, sync.stderr).toBe(0)
      const run = server.runs()[0]!
      expect(run.history.length).toBeGreaterThanOrEqual(reported)
      expect(run.history.map((row) => row["row"])).toEqual(run.history.map((_, i) => i))
      // No exit record: the run is completed as failed, as the official sync does.
      expect(run.exitcode).toBe(1)
    } finally {
      await server.close()
    }
  })
})

describe("interruption", () => {
  it.scopedLive("an interrupted Effect program still completes its online run, with exit code 255", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.scoped()
      const cwd = tempDir()
      let runId = ""
      const fiber = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ project: "interrupted" })
        runId = run.id
        for (let i = 0; i < 20; i++) yield* run.log({ i })
        return yield* Effect.never
      })).pipe(provide(cwd, onlineEnv(server.url)), Effect.fork)
      while (runId === "") yield* Effect.sleep("10 millis")
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(fiber)
      const stored = server.run(runId)
      expect(stored.complete).toBe(true)
      expect(stored.exitcode).toBe(255)
      expect(stored.history.map((row) => row["i"])).toEqual(Array.from({ length: 20 }, (_, i) => i))
    }))
})
