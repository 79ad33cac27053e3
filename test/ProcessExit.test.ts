import { describe, expect, it } from "vitest"
import * as path from "node:path"
import { startProgram, watch } from "./support/children.js"
import { historyRow, logFileOf, readLog, recordsOf, tempDir, typeOf } from "./support/runFiles.js"

const start = (script: string, dir: string) =>
  startProgram(path.join("test", "fixtures", "scripts", script), [dir], { cwd: dir, env: { WANDB_SILENT: "true" } })

const collect = watch

const exitCodeIn = async (runDir: string) => {
  const records = await recordsOf(runDir)
  const exit = records.find((r) => typeOf(r) === "exit")
  return exit?.recordType.case === "exit" ? exit.recordType.value.exitCode : undefined
}

describe("process exit without finish", () => {
  it("a script that never calls finish leaves a complete run with exit code 0", async () => {
    const dir = tempDir()
    const child = collect(start("forget-finish.ts", dir))
    const ended = await child.ended
    expect(ended.code, ended.stderr).toBe(0)
    const runDir = ended.stdout.trim()
    const records = await recordsOf(runDir)
    expect(records.filter((r) => typeOf(r) === "history").map((r) => historyRow(r).i)).toEqual([0, 1, 2])
    expect(records.map(typeOf).slice(-3)).toEqual(["exit", "final", "footer"])
    expect(await exitCodeIn(runDir)).toBe(0)
  })

  it("SIGTERM mid-run: the exit record says 255, the run is marked preempting, the process exits 143", async () => {
    const dir = tempDir()
    const process = start("log-forever.ts", dir)
    const child = collect(process)
    const [, runDir] = await child.waitFor(/dir (.+)\n/)
    await child.waitFor(/logged 50\n/)
    process.kill("SIGTERM")
    const ended = await child.ended
    expect(ended.code, ended.stderr).toBe(143)
    expect(await exitCodeIn(runDir!)).toBe(255)
    const types = (await recordsOf(runDir!)).map(typeOf)
    expect(types).toContain("preempting")
    expect(types.filter((t) => t === "history").length).toBeGreaterThanOrEqual(50)
  })

  it("an uncaught exception finishes the run with exit code 1 and the process exits 1", async () => {
    const dir = tempDir()
    const child = collect(start("throw-after-init.ts", dir))
    const ended = await child.ended
    expect(ended.code).toBe(1)
    expect(ended.stderr).toContain("the training loop crashed")
    expect(await exitCodeIn(ended.stdout.trim())).toBe(1)
  })

  it("SIGKILL: every record up to the last flush reads back cleanly", async () => {
    const dir = tempDir()
    const process = start("log-forever.ts", dir)
    const child = collect(process)
    const [, runDir] = await child.waitFor(/dir (.+)\n/)
    await child.waitFor(/logged 100\n/)
    // Rows reported by now were logged at least one flush interval (0.1 s) before the kill below.
    const reported = Math.max(...[...child.output().matchAll(/logged (\d+)/g)].map((m) => Number(m[1])))
    await new Promise((resolve) => setTimeout(resolve, 400))
    process.kill("SIGKILL")
    const ended = await child.ended
    expect(ended.signal).toBe("SIGKILL")

    const contents = await readLog(logFileOf(runDir!))
    expect(contents.damage._tag).toBe("None")
    const rows = contents.records.filter((e) => typeOf(e.record) === "history").map((e) => historyRow(e.record))
    expect(rows.length).toBeGreaterThanOrEqual(reported)
    expect(rows.map((r) => r.row)).toEqual(rows.map((_, i) => i))
    expect(rows.map((r) => r._step)).toEqual(rows.map((_, i) => i))
    expect(contents.records.some((e) => typeOf(e.record) === "exit")).toBe(false)
  })
})

describe("crashes while a finish is under way", () => {
  it("an unhandled rejection waits for the finish in progress, and the process exits 1", async () => {
    const dir = tempDir()
    const child = collect(start("unawaited-rejection.ts", dir))
    const ended = await child.ended
    expect(ended.code).toBe(1)
    expect(ended.stderr).toContain("nobody awaited this")
    const records = await recordsOf(ended.stdout.trim())
    expect(records.map(typeOf)).toContain("history")
    expect(records.map(typeOf).slice(-3)).toEqual(["exit", "final", "footer"])
  })
})

describe("exits the SDK cannot wait for", () => {
  it("process.exit() without finish: every row and an exit record with the exit code are on disk", async () => {
    const dir = tempDir()
    const ended = await collect(start("exit-without-finish.ts", dir)).ended
    expect(ended.code).toBe(3)
    const records = await recordsOf(ended.stdout.trim())
    expect(records.filter((r) => typeOf(r) === "history").map((r) => historyRow(r).i)).toEqual(
      Array.from({ length: 50 }, (_, i) => i)
    )
    expect(await exitCodeIn(ended.stdout.trim())).toBe(3)
  })

  it("a loop that never yields still gets its rows on disk within the flush interval", async () => {
    const dir = tempDir()
    const process = start("busy-loop.ts", dir)
    const child = collect(process)
    const [, runDir] = await child.waitFor(/dir (.+)\n/)
    await child.waitFor(/logged 12\n/)
    process.kill("SIGKILL")
    await child.ended
    const logged = Math.max(...[...child.output().matchAll(/logged (\d+)/g)].map((m) => Number(m[1])))
    const contents = await readLog(logFileOf(runDir!))
    const rows = contents.records.filter((e) => typeOf(e.record) === "history").length
    // Each epoch takes 50 ms and the flush interval is 100 ms: at most the last few rows can be missing.
    expect(rows).toBeGreaterThanOrEqual(logged - 3)
    expect(rows).toBeGreaterThan(0)
  })
})
