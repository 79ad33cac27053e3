import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import * as YAML from "yaml"
import { ConfigFileError, ConfigValueChanged, Wandb } from "wandb-effect"
import * as RunConfig from "../src/domain/RunConfig.js"
import { recordsOf, tempDir } from "./support/runFiles.js"

const withRun = <A, E>(options: Wandb.InitOptions, use: (run: Wandb.Run) => Effect.Effect<A, E>, cwd = tempDir()) =>
  Effect.scoped(Effect.flatMap(Wandb.init({ mode: "offline", ...options }), use)).pipe(
    Effect.provide(Wandb.layerTest({ cwd, env: { WANDB_SILENT: "true" } }))
  )

describe("config inputs", () => {
  it("takes a parsed flags object: node's parseArgs values and a yargs-style argv", () => {
    const { values } = parseArgs({
      args: ["--lr", "0.1", "--layers=3", "--verbose"],
      options: { lr: { type: "string" }, layers: { type: "string" }, verbose: { type: "boolean" } }
    })
    expect(RunConfig.fromObject(values)).toEqual({ lr: "0.1", layers: "3", verbose: true })
    expect(RunConfig.fromObject({ _: ["train"], $0: "train.js", epochs: 5, "--batch-size": 32 })).toEqual({
      epochs: 5,
      "batch-size": 32
    })
  })

  it("parses process.argv-style arrays", () => {
    expect(RunConfig.fromArgv(["pos", "--lr", "0.1", "--name=x", "--flag", "--no-shuffle", "--depth", "3"])).toEqual({
      lr: 0.1,
      name: "x",
      flag: true,
      shuffle: false,
      depth: 3
    })
  })

  it("reads YAML in the W&B form and in plain form, and refuses what cannot be a config", () => {
    expect(RunConfig.fromYaml("wandb_version: 1\nlr:\n  desc: null\n  value: 0.01\n_wandb:\n  value: {}\n"))
      .toEqual({ ok: true, values: { lr: 0.01 } })
    expect(RunConfig.fromYaml("lr: 0.01\nmodel:\n  layers: 2\n")).toEqual({
      ok: true,
      values: { lr: 0.01, model: { layers: 2 } }
    })
    expect(RunConfig.fromYaml("wandb_version: 2\nlr: {value: 1}").ok).toBe(false)
    expect(RunConfig.fromYaml("- a\n- b").ok).toBe(false)
    expect(RunConfig.fromYaml("lr: [1, 2").ok).toBe(false)
    expect(RunConfig.fromYaml("a: {value: 1}\nb: 2").ok).toBe(false)
  })

  it("sanitises values: sets, maps, dates, NaN and class instances", () => {
    class Point {
      constructor(readonly x: number, readonly y: number) {}
    }
    expect(RunConfig.sanitize({
      s: new Set([1, 2]),
      m: new Map([["k", 1]]),
      d: new Date(0),
      n: NaN,
      p: new Point(1, 2),
      big: 10n,
      f: function namedFn() {}
    })).toEqual({
      s: [1, 2],
      m: { k: 1 },
      d: "1970-01-01T00:00:00.000Z",
      n: null,
      p: { x: 1, y: 2 },
      big: 10,
      f: "namedFn"
    })
  })

  it.effect("init config from an object, with include and exclude keys", () =>
    Effect.gen(function*() {
      const config = { foo: 1, bar: 2, baz: 3 }
      const excluded = yield* withRun({ config, configExcludeKeys: ["bar"] }, (run) => run.config.get)
      expect(excluded).toEqual({ foo: 1, baz: 3 })
      const included = yield* withRun({ config, configIncludeKeys: ["bar"] }, (run) => run.config.get)
      expect(included).toEqual({ bar: 2 })
    }))

  it.effect("init config from a YAML file path, and config.yaml written in the wandb-core form", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      fs.writeFileSync(path.join(cwd, "params.yaml"), "lr:\n  value: 0.5\nepochs:\n  value: 3\n")
      const dir = yield* withRun({ config: "params.yaml" }, (run) =>
        Effect.gen(function*() {
          expect(yield* run.config.get).toEqual({ lr: 0.5, epochs: 3 })
          return run.dir!
        }), cwd)
      const written = YAML.parse(fs.readFileSync(path.join(dir, "files", "config.yaml"), "utf8"))
      expect(Object.keys(written)).toEqual(["_wandb", "epochs", "lr"])
      expect(written.lr).toEqual({ value: 0.5 })
      expect(written._wandb.value.t).toBeDefined()
    }))

  it.effect("config.update with a missing YAML file fails with ConfigFileError", () =>
    Effect.gen(function*() {
      const error = yield* withRun({}, (run) => Effect.flip(run.config.update("nope.yaml")))
      expect(error).toBeInstanceOf(ConfigFileError)
      expect((error as ConfigFileError).path).toBe("nope.yaml")
    }))
})

describe("config.update and allowValChange", () => {
  it.effect("a changed value fails with key, old and new; nothing of the update is applied", () =>
    Effect.gen(function*() {
      const outcome = yield* withRun({ config: { lr: 0.1, depth: 2 } }, (run) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(run.config.update({ extra: true, lr: 0.2 }))
          return { error, config: yield* run.config.get }
        }))
      expect(outcome.error).toBeInstanceOf(ConfigValueChanged)
      expect(outcome.error).toMatchObject({ _tag: "ConfigValueChanged", key: "lr", oldValue: 0.1, newValue: 0.2 })
      expect(outcome.config).toEqual({ lr: 0.1, depth: 2 })
    }))

  it.effect("equal values in canonical form are not changes; allowValChange permits a change", () =>
    Effect.gen(function*() {
      const dir = yield* withRun({ config: { model: { b: 1, a: [1, 2] }, lr: 3 } }, (run) =>
        Effect.gen(function*() {
          yield* run.config.update({ model: { a: [1, 2], b: 1.0 }, lr: 3.0 })
          yield* run.config.update({ lr: 4 }, { allowValChange: true })
          expect(yield* run.config.get).toEqual({ model: { b: 1, a: [1, 2] }, lr: 4 })
          return run.dir!
        }))
      const configRecords = (yield* Effect.promise(() => recordsOf(dir))).filter((r) => r.recordType.case === "config")
      expect(configRecords).toHaveLength(1)
      const item = configRecords[0]!.recordType.value as { update: Array<{ key: string; valueJson: string }> }
      expect(item.update.map((u) => [u.key, u.valueJson])).toEqual([["lr", "4"]])
    }))

  it.effect("init's allowValChange is the default for config.update", () =>
    Effect.gen(function*() {
      const config = yield* withRun({ config: { lr: 1 }, allowValChange: true }, (run) =>
        Effect.zipRight(run.config.update({ lr: 2 }), run.config.get))
      expect(config).toEqual({ lr: 2 })
    }))
})
