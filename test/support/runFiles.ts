/**
 * Test helpers for reading what a run left on disk.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ExtendedJson from "../../src/domain/ExtendedJson.js"
import type { Record as LogRecord } from "../../src/internal/proto/wandb_internal_pb.js"
import * as TransactionLog from "../../src/layers/TransactionLog.js"

// Every temp dir a test makes is removed after its test file (see test/support/setup.ts), so test runs
// leave nothing behind.
const made: Array<string> = []

export const removeTempDirs = (): void => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

export const tempDir = (prefix = "wandb-effect-test-"): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  made.push(dir)
  return dir
}

export const readLog = (file: string) =>
  Effect.gen(function*() {
    const log = yield* TransactionLog.TransactionLog
    return yield* log.read(file)
  }).pipe(Effect.provide(TransactionLog.layer), Effect.provide(NodeContext.layer), Effect.runPromise)

export const logFileOf = (runDir: string): string => {
  const name = fs.readdirSync(runDir).find((f) => f.endsWith(".wandb"))
  if (name === undefined) throw new Error(`no .wandb file in ${runDir}`)
  return path.join(runDir, name)
}

export const runDirsUnder = (root: string): Array<string> => {
  const wandbDir = path.join(root, "wandb")
  if (!fs.existsSync(wandbDir)) return []
  return fs.readdirSync(wandbDir)
    .filter((name) => /^(offline-)?run-/.test(name))
    .map((name) => path.join(wandbDir, name))
}

/** The record's type, e.g. "history", "exit". */
export const typeOf = (record: LogRecord): string => record.recordType.case ?? "none"

/** A history record as a plain row keyed by dotted paths, values parsed from their JSON. */
export const historyRow = (record: LogRecord): Record<string, unknown> => {
  if (record.recordType.case !== "history") throw new Error(`not a history record: ${typeOf(record)}`)
  const row: Record<string, unknown> = {}
  for (const item of record.recordType.value.item) {
    const key = item.nestedKey.length > 0 ? item.nestedKey.join(".") : item.key
    row[key] = ExtendedJson.parse(item.valueJson)
  }
  return row
}

export const recordsOf = async (runDir: string): Promise<Array<LogRecord>> => {
  const contents = await readLog(logFileOf(runDir))
  return contents.records.map((entry) => entry.record)
}
