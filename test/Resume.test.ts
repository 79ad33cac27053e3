import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ResumeError, Wandb } from "wandb-effect"
import * as ResumeDecision from "../src/domain/ResumeDecision.js"
import { tempDir } from "./support/runFiles.js"
import { sampleApiKey, TestServer } from "./support/WandbTestServer.js"

const env = (url: string) => ({ WANDB_BASE_URL: url, WANDB_API_KEY: sampleApiKey(), WANDB_SILENT: "true" })
const provide = (cwd: string, url: string) => Effect.provide(Wandb.layerTest({ cwd, env: env(url) }))

const stored = (overrides: Partial<ResumeDecision.StoredRun> = {}): ResumeDecision.StoredRun => ({
  storageId: "UnVuOnYxOmFiYw==",
  historyLineCount: 16,
  summaryMetrics: JSON.stringify({ _step: 15, acc: 10, _wandb: { runtime: 130 } }),
  config: JSON.stringify({ fruit: { value: "banana" }, _wandb: { value: { t: { "5": "x" } } } }),
  historyTail: JSON.stringify([JSON.stringify({ _step: 15, acc: 10, _runtime: 120 })]),
  eventsTail: "[]",
  wandbConfig: JSON.stringify({ t: { "5": "x" } }),
  tags: ["tag1", "tag2"],
  notes: "old notes",
  displayName: "old-name",
  ...overrides
})

describe("the resume decision", () => {
  it("follows the decision table", () => {
    expect(ResumeDecision.decide(undefined, stored())._tag).toBe("New")
    expect(ResumeDecision.decide("never", stored())).toEqual({ _tag: "Refuse", reason: "exists" })
    expect(ResumeDecision.decide("never", undefined)._tag).toBe("New")
    expect(ResumeDecision.decide("must", undefined)).toEqual({ _tag: "Refuse", reason: "not-found" })
    expect(ResumeDecision.decide("allow", undefined)._tag).toBe("New")
    for (const resume of ["allow", "must", "auto"] as const) {
      expect(ResumeDecision.decide(resume, stored())._tag).toBe("Resume")
    }
  })

  it("a bucket without _wandb.t was never started by a client", () => {
    expect(ResumeDecision.decide("must", stored({ wandbConfig: "{}" })))
      .toEqual({ _tag: "Refuse", reason: "not-found" })
  })

  it("continues after the last step, keeps the runtime, the config and the summary", () => {
    const decision = ResumeDecision.decide("allow", stored())
    if (decision._tag !== "Resume") throw new Error(decision._tag)
    expect(decision.from.startingStep).toBe(16)
    expect(decision.from.runtime).toBe(130)
    expect(decision.from.config).toEqual({ fruit: "banana" })
    expect(decision.from.summary).toMatchObject({ acc: 10 })
    expect(ResumeDecision.decide("allow", stored({ historyLineCount: 0, historyTail: "[]" })))
      .toMatchObject({ from: { startingStep: 15 } })
    expect(ResumeDecision.decide("must", stored({ summaryMetrics: "{oops" })))
      .toEqual({ _tag: "Refuse", reason: "unreadable" })
  })
})

describe("resuming online runs", () => {
  it.scopedLive("a resumed run continues at the next step with the old config, tags and notes", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.scoped()
      const cwd = tempDir()
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ project: "p", tags: ["tag1"], notes: "n1", config: { fruit: "banana" } })
        yield* run.log({ acc: 10 }, { step: 15 })
        return run.id
      })).pipe(provide(cwd, server.url))

      const resumed = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ project: "p", id: first, resume: "must", config: { lr: 1 } })
        yield* run.log({ acc: 15 })
        return { resumed: run.resumed, startingStep: run.startingStep, config: yield* run.config.get }
      })).pipe(provide(cwd, server.url))

      expect(resumed.resumed).toBe(true)
      expect(resumed.startingStep).toBe(16)
      expect(resumed.config).toEqual({ fruit: "banana", lr: 1 })
      const run = server.run(first)
      expect(run.history.map((row) => row["_step"])).toEqual([15, 16])
      expect(run.tags).toEqual(["tag1"])
      expect(run.notes).toBe("n1")
      expect(run.historyDuplicates).toEqual([])
    }))

  it.scopedLive("must without a run and never with one fail with ResumeError naming where it looked", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.scoped()
      const cwd = tempDir()
      const missing = yield* Effect.flip(
        Effect.scoped(Wandb.init({ project: "p", id: "nosuchrun", resume: "must" })).pipe(provide(cwd, server.url))
      )
      expect(missing).toBeInstanceOf(ResumeError)
      expect(missing).toMatchObject({ reason: "not-found", runId: "nosuchrun", project: "p", entity: "alice" })

      server.seedRun({ project: "p", name: "exists1", config: { _wandb: { value: { t: { "5": "x" } } } } })
      const existing = yield* Effect.flip(
        Effect.scoped(Wandb.init({ project: "p", id: "exists1", resume: "never" })).pipe(provide(cwd, server.url))
      )
      expect(existing).toMatchObject({ _tag: "ResumeError", reason: "exists" })
      expect(server.requests().some((r) => r.operation === "UpsertBucket")).toBe(false)
    }))
})

describe("the auto-resume file", () => {
  it.effect("resume auto remembers the id of a failed run and reuses it; a run that ends well forgets it", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const layer = Effect.provide(Wandb.layerTest({ cwd, env: { WANDB_SILENT: "true", WANDB_MODE: "offline" } }))
      const file = path.join(cwd, "wandb", "wandb-resume.json")

      const firstId = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ resume: "auto" })
        yield* run.finish({ exitCode: 1 })
        return run.id
      })).pipe(layer)
      expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual({ run_id: firstId })

      const secondId = yield* Effect.scoped(Effect.map(Wandb.init({ resume: "auto" }), (run) => run.id)).pipe(layer)
      expect(secondId).toBe(firstId)
      expect(fs.existsSync(file)).toBe(false)

      fs.writeFileSync(file, "not JSON")
      const fresh = yield* Effect.scoped(Effect.map(Wandb.init({ resume: "auto", id: "explicit" }), (r) => r.id))
        .pipe(layer)
      expect(fresh).toBe("explicit")
    }))
})
