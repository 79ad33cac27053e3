import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import wandb, { ConfigValueChanged, InvalidArgument, InvalidSettings, RunFinished } from "wandb-effect/promise"
import { recordsOf, tempDir, typeOf } from "./support/runFiles.js"

// The facade reads the real environment; these tests only pass options that override what matters.
const offline = (dir: string) => ({ mode: "offline" as const, dir, settings: { silent: true } })

describe("the Promise facade", () => {
  it("init rejects with the SDK's own error class, not a wrapper", async () => {
    const error = await wandb.init({ ...offline(tempDir()), project: "no/slashes" }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(InvalidSettings)
    expect((error as InvalidSettings)._tag).toBe("InvalidSettings")
    expect((error as InvalidSettings).violations[0]!.setting).toBe("project")
  })

  it("config.update rejects with ConfigValueChanged; log after finish throws RunFinished", async () => {
    const run = await wandb.init({ ...offline(tempDir()), config: { lr: 1 }, reinit: "create_new" })
    expect(() => run.config.update({ lr: 2 })).toThrow(ConfigValueChanged)
    expect(run.config.get()).toEqual({ lr: 1 })
    const dir = run.dir!
    const fromFile = path.join(dir, "more.yaml")
    fs.writeFileSync(fromFile, "lr: 3\n")
    const rejected = await run.config.update(fromFile).catch((e: unknown) => e)
    expect(rejected).toBeInstanceOf(ConfigValueChanged)
    await run.config.update(fromFile, { allowValChange: true })
    expect(run.config.get()).toEqual({ lr: 3 })
    expect(() => run.log(null as never)).toThrow(InvalidArgument)
    run.log({ a: 1 })
    const result = await run.finish()
    expect(result.historyRows).toBe(1)
    expect(await run.finish()).toBe(result)
    expect(() => run.log({ a: 2 })).toThrow(RunFinished)
    try {
      run.summary.update({ x: 1 })
    } catch (error) {
      expect(error).toBeInstanceOf(RunFinished)
      expect((error as RunFinished)._tag).toBe("RunFinished")
    }
  })

  it("log returns at once and rows reach the log in order; module-level members act on the current run", async () => {
    const dir = tempDir()
    const run = await wandb.init(offline(dir))
    expect(wandb.currentRun()).toBe(run)
    const again = await wandb.init(offline(dir))
    expect(again).toBe(run)
    for (let i = 0; i < 1000; i++) wandb.log({ i })
    wandb.summary.update({ best: 1 })
    expect(run.step).toBe(1000)
    await wandb.finish()
    expect(wandb.currentRun()).toBeUndefined()
    const records = await recordsOf(run.dir!)
    expect(records.filter((r) => typeOf(r) === "history")).toHaveLength(1000)
    expect(JSON.parse(fs.readFileSync(path.join(run.dir!, "files", "wandb-summary.json"), "utf8")).best).toBe(1)
    expect(() => wandb.log({ i: 0 })).toThrow(/wandb.init/)
  })

  it("reinit finish_previous finishes the live run first; create_new runs beside it", async () => {
    const dir = tempDir()
    const first = await wandb.init(offline(dir))
    const second = await wandb.init({ ...offline(dir), reinit: "create_new" })
    expect(second).not.toBe(first)
    expect(wandb.currentRun()).toBe(first)
    const third = await wandb.init({ ...offline(dir), reinit: "finish_previous" })
    expect(first.finished && second.finished).toBe(true)
    expect(wandb.currentRun()).toBe(third)
    await third.finish()
  })
})
