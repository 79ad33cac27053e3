/**
 * The shared transaction-log fixtures (`../shared/fixtures/transaction-log` beside the repository) and
 * their official decodings.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export const fixturesDir = path.resolve(repoRoot, "../shared/fixtures/transaction-log")

export const damagedDir = path.join(fixturesDir, "damaged")

export const goodFixtures = [
  "official-writer-small",
  "official-writer-multichunk",
  "wandb-0.10.20-offline-run"
] as const

export type GoodFixture = typeof goodFixtures[number]

export const fixturePath = (name: GoodFixture): string => path.join(fixturesDir, `${name}.wandb`)

/** One line of an `.expected.jsonl` file. */
export interface ExpectedRecord {
  readonly index: number
  readonly offset: number
  readonly bytes: number
  readonly chunks: number
  readonly num: number
  readonly type: string
  readonly record: { readonly [key: string]: unknown }
}

export const expectedRecords = (name: GoodFixture): Array<ExpectedRecord> =>
  fs.readFileSync(path.join(fixturesDir, `${name}.expected.jsonl`), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as ExpectedRecord)

/**
 * The expected decoding adds a parsed `value` beside every `value_json`; the protobuf JSON mapping has no
 * such field. This removes those, after checking that each one is what its `value_json` says.
 */
export const withoutDecodedValues = (json: unknown): unknown => {
  if (Array.isArray(json)) return json.map(withoutDecodedValues)
  if (json === null || typeof json !== "object") return json

  const object = json as { readonly [key: string]: unknown }
  const out: { [key: string]: unknown } = {}
  for (const [key, value] of Object.entries(object)) {
    if (key === "value" && typeof object["value_json"] === "string") {
      const parsed: unknown = JSON.parse(object["value_json"])
      if (JSON.stringify(parsed) !== JSON.stringify(value)) {
        throw new Error(`value ${JSON.stringify(value)} does not match value_json ${object["value_json"]}`)
      }
      continue
    }
    out[key] = withoutDecodedValues(value)
  }
  return out
}
