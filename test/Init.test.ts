import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as path from "node:path"
import { CredentialsMissing, DirectoryNotWritable, InvalidArgument, RunFinished, Wandb } from "wandb-effect"
import { historyRow, recordsOf, tempDir, typeOf } from "./support/runFiles.js"

const silent = { WANDB_SILENT: "true" }
const provide = (cwd: string, env: Record<string, string> = silent) => Effect.provide(Wandb.layerTest({ cwd, env }))

const exitRecordOf = async (runDir: string) => {
  const records = await recordsOf(runDir)
  const exit = records.find((r) => typeOf(r) === "exit")
  return exit?.recordType.case === "exit" ? exit.recordType.value : undefined
}

describe("the scoped run", () => {
  it.effect("writes header, run, one history record per step in order, config, summary and exit 0", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const dir = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline", project: "p", name: "n", tags: ["t"], config: { lr: 0.1 } })
        for (let i = 0; i < 5; i++) yield* run.log({ loss: 1 / (i + 1), nested: { acc: i } })
        yield* run.config.update({ extra: 1 })
        yield* run.summary.update({ best: 7 })
        return run.dir!
      })).pipe(provide(cwd))

      expect(path.basename(dir)).toMatch(/^offline-run-\d{8}_\d{6}-[a-z0-9]{8}$/)
      expect(fs.realpathSync(path.join(cwd, "wandb", "latest-run"))).toBe(fs.realpathSync(dir))
      const records = yield* Effect.promise(() => recordsOf(dir))
      const types = records.map(typeOf)
      expect(types.slice(0, 2)).toEqual(["header", "run"])
      expect(types.slice(-3)).toEqual(["exit", "final", "footer"])
      expect(records.map((r) => Number(r.num))).toEqual(records.map((_, i) => i + 1))

      const run = records[1]!.recordType.value as { project: string; displayName: string; tags: Array<string> }
      expect(run).toMatchObject({ project: "p", displayName: "n", tags: ["t"] })
      const rows = records.filter((r) => typeOf(r) === "history").map(historyRow)
      expect(rows.map((r) => r._step)).toEqual([0, 1, 2, 3, 4])
      expect(rows[2]).toMatchObject({ loss: 1 / 3, "nested.acc": 2 })
      expect(typeof rows[0]!._runtime).toBe("number")
      expect(typeof rows[0]!._timestamp).toBe("number")
      expect(types).toContain("config")
      expect(types).toContain("summary")
      expect(yield* Effect.promise(() => exitRecordOf(dir))).toMatchObject({ exitCode: 0 })

      const summary = JSON.parse(fs.readFileSync(path.join(dir, "files", "wandb-summary.json"), "utf8"))
      expect(summary).toMatchObject({ loss: 0.2, nested: { acc: 4 }, best: 7, _step: 4 })
      expect(fs.existsSync(path.join(dir, "files", "wandb-metadata.json"))).toBe(true)
      expect(fs.existsSync(path.join(dir, "logs", "debug.log"))).toBe(true)
    }))

  it.live("the finalizer finishes with 1 when the scope fails and 255 when it is interrupted", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      let failedDir = ""
      const failed = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        failedDir = run.dir!
        yield* run.log({ x: 1 })
        return yield* Effect.fail("training diverged")
      })).pipe(provide(cwd), Effect.exit)
      expect(Exit.isFailure(failed)).toBe(true)
      expect(yield* Effect.promise(() => exitRecordOf(failedDir))).toMatchObject({ exitCode: 1 })

      let interruptedDir = ""
      const fiber = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        interruptedDir = run.dir!
        yield* run.log({ x: 1 })
        return yield* Effect.never
      })).pipe(provide(cwd), Effect.fork)
      while (interruptedDir === "") yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(fiber)
      expect(yield* Effect.promise(() => exitRecordOf(interruptedDir))).toMatchObject({ exitCode: 255 })
    }))

  it.effect("finish is idempotent; every call after it fails with RunFinished", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        yield* run.log({ a: 1 })
        const first = yield* run.finish({ exitCode: 3 })
        const second = yield* run.finish()
        expect(second).toEqual(first)
        expect(first).toMatchObject({ exitCode: 3, historyRows: 1, droppedRows: 0 })
        for (const attempt of [run.log({ a: 2 }), run.summary.update({ a: 1 }), run.config.update({ b: 1 })]) {
          const error = yield* Effect.flip(attempt)
          expect(error).toBeInstanceOf(RunFinished)
        }
        expect(yield* Effect.promise(() => exitRecordOf(run.dir!))).toMatchObject({ exitCode: 3 })
      })).pipe(provide(cwd))
    }))

  it.effect("a row below the current step is dropped, counted and warned about once", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const lines: Array<string> = []
      const result = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        yield* run.log({ a: 1 }, { step: 5 })
        yield* run.log({ a: 2 }, { step: 6 })
        yield* run.log({ a: 3 }, { step: 1 })
        yield* run.log({ a: 4 }, { step: 2 })
        return yield* run.finish()
      })).pipe(
        provide(cwd, {}),
        Effect.withConsole({
          ...console,
          error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.join(" ")))
        } as never)
      )
      expect(result.droppedRows).toBe(2)
      expect(result.historyRows).toBe(2)
      expect(lines.filter((l) => l.includes("less than the current step"))).toHaveLength(1)
      expect(lines.some((l) => l.includes("2 logged row(s) were dropped"))).toBe(true)
    }))

  it.effect("NaN and ±Infinity are written as distinct tokens and read back", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const dir = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        yield* run.log({ nan: NaN, inf: Infinity, ninf: -Infinity, nested: { ninf: -Infinity } })
        return run.dir!
      })).pipe(provide(cwd))
      const records = yield* Effect.promise(() => recordsOf(dir))
      const history = records.find((r) => typeOf(r) === "history")!
      const items = (history.recordType.value as { item: Array<{ nestedKey: string[]; valueJson: string }> }).item
      expect(items.slice(0, 4).map((i) => [i.nestedKey.join("."), i.valueJson])).toEqual([
        ["nan", "NaN"],
        ["inf", "Infinity"],
        ["ninf", "-Infinity"],
        ["nested.ninf", "-Infinity"]
      ])
      const row = historyRow(history)
      expect(row.nan).toBeNaN()
      expect(row.inf).toBe(Infinity)
      expect(row.ninf).toBe(-Infinity)
      const summaryText = fs.readFileSync(path.join(dir, "files", "wandb-summary.json"), "utf8")
      expect(summaryText).toContain(`"nan":NaN`)
      expect(summaryText).toContain(`"ninf":-Infinity`)
    }))

  it.effect("log refuses a value that is not an object with InvalidArgument", () =>
    Effect.gen(function*() {
      const error = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        return yield* Effect.flip(run.log([1, 2] as never))
      })).pipe(provide(tempDir()))
      expect(error).toBeInstanceOf(InvalidArgument)
    }))
})

describe("directories", () => {
  it.effect("two runs with one id in the same second get -1 suffixes; dir and WANDB_DIR choose the root", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const root = path.join(cwd, "custom", "root")
      const dirs: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const started = Wandb.init({ mode: "offline", id: "same-id", dir: root })
        dirs.push(yield* Effect.scoped(Effect.map(started, (r) => r.dir!)).pipe(provide(cwd)))
      }
      const seconds = new Set(dirs.map((d) => path.basename(d).slice(12, 27)))
      if (seconds.size === 1) {
        expect(dirs[1]).toBe(`${dirs[0]}-1`)
        expect(dirs[2]).toBe(`${dirs[0]}-2`)
      }
      expect(new Set(dirs).size).toBe(3)
      expect(dirs.every((d) => d.startsWith(path.join(root, "wandb")))).toBe(true)

      const envRoot = path.join(cwd, "from-env")
      const envDir = yield* Effect.scoped(Effect.map(Wandb.init({ mode: "offline" }), (r) => r.dir!))
        .pipe(provide(cwd, { ...silent, WANDB_DIR: envRoot }))
      expect(envDir.startsWith(path.join(envRoot, "wandb", "offline-run-"))).toBe(true)
    }))

  it.effect("an unwritable dir fails with DirectoryNotWritable naming the path", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const blocker = path.join(cwd, "a-file")
      fs.writeFileSync(blocker, "not a directory")
      const error = yield* Effect.flip(
        Effect.scoped(Wandb.init({ mode: "offline", dir: path.join(blocker, "sub") })).pipe(provide(cwd))
      )
      expect(error).toBeInstanceOf(DirectoryNotWritable)
      expect((error as DirectoryNotWritable).path).toBe(path.join(blocker, "sub"))
    }))
})

describe("modes", () => {
  it.effect("disabled mode writes nothing and every member still works", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const seen = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "disabled", config: { a: 1 } })
        yield* run.log({ x: { y: 2 } })
        yield* run.summary.update({ s: 1 })
        yield* run.config.update({ b: 2 })
        yield* run.markPreempting
        const summary = yield* run.summary.get
        const config = yield* run.config.get
        const result = yield* run.finish()
        return { run, summary, config, result, step: yield* run.step }
      })).pipe(provide(cwd))
      expect(seen.run.dir).toBeUndefined()
      expect(seen.run.url).toBeUndefined()
      expect(seen.run.project).toBe("dummy")
      expect(seen.summary).toMatchObject({ x: { y: 2 }, s: 1 })
      expect(seen.config).toEqual({ a: 1, b: 2 })
      expect(seen.result.runDir).toBeUndefined()
      expect(fs.readdirSync(cwd)).toEqual([])
    }))

  it.effect("online without credentials falls back to offline with one line; force fails instead", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const lines: Array<string> = []
      const recording = {
        ...console,
        error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.join(" ")))
      } as never
      const mode = yield* Effect.scoped(Effect.map(Wandb.init({ project: "p" }), (r) => r.mode)).pipe(
        provide(cwd, { WANDB_QUIET: "true" }),
        Effect.withConsole(recording)
      )
      expect(mode).toBe("offline")
      expect(lines.filter((l) => l.includes("No API key"))).toHaveLength(1)

      const error = yield* Effect.flip(Effect.scoped(Wandb.init({ force: true })).pipe(provide(cwd)))
      expect(error).toBeInstanceOf(CredentialsMissing)
    }))
})

describe("run ids", () => {
  it.effect("a second live run with the same id fails with RunIdInUse; the id is free after finish", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline", id: "dup-id" })
        const error = yield* Effect.flip(Effect.scoped(Wandb.init({ mode: "offline", id: "dup-id" })))
        expect(error).toMatchObject({ _tag: "RunIdInUse", runId: "dup-id" })
        yield* run.finish()
        const again = yield* Effect.scoped(Effect.map(Wandb.init({ mode: "offline", id: "dup-id" }), (r) => r.id))
        expect(again).toBe("dup-id")
      })).pipe(provide(cwd))
    }))
})

describe("values a program should not log, and still does", () => {
  it.effect("a circular object, a throwing toJSON and arrays changed after logging lose no row", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const dir = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* Wandb.init({ mode: "offline" })
        class Layer {
          parent: Layer | undefined
          children: Array<Layer> = []
        }
        const model = new Layer()
        model.children.push(Object.assign(new Layer(), { parent: model }))
        const plain: Record<string, unknown> = { v: 1 }
        plain.self = plain
        const hist: Array<number> = []
        for (let i = 0; i < 5; i++) {
          hist.push(i)
          yield* run.log({ i, hist })
        }
        yield* run.log({ i: 5, model })
        const Unserialisable = class {
          toJSON(): never {
            throw new Error("no")
          }
        }
        yield* run.log({ i: 6, bad: [new Unserialisable()] })
        yield* run.log({ i: 7, plain })
        hist.length = 0
        for (let i = 8; i < 10; i++) yield* run.log({ i })
        const error = yield* Effect.flip(run.log({ i: 99 }, { step: 2 ** 60 }))
        expect(error).toBeInstanceOf(InvalidArgument)
        return run.dir!
      })).pipe(provide(cwd))
      const records = yield* Effect.promise(() => recordsOf(dir))
      const rows = records.filter((r) => typeOf(r) === "history").map(historyRow)
      expect(rows.map((r) => r.i)).toEqual(Array.from({ length: 10 }, (_, i) => i))
      expect(rows.slice(0, 5).map((r) => r.hist)).toEqual([[0], [0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4]])
      expect(JSON.stringify(rows[5]!.model)).toContain("<circular>")
      expect(rows[6]!.bad).toBeDefined()
      expect(rows[7]!["plain.self"]).toBe("<circular>")
    }))
})
