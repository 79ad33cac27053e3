/**
 * How what the transaction log holds is said on the wire: history lines for file_stream, the summary
 * line, and the config as `UpsertBucket` takes it. Values stay in the W&B JSON dialect throughout:
 * a history value is copied from the record's `value_json` as it is, never parsed and printed again.
 *
 * @since 0.1.0
 */
import * as ExtendedJson from "./ExtendedJson.js"
import { type FlatRow, PATH_SEPARATOR, unflatten } from "./History.js"
import { SDK_VERSION } from "./Records.js"

/**
 * An item of a history, summary or config record: a key or a key path, and JSON text.
 *
 * @since 0.1.0
 * @category models
 */
export interface WireItem {
  readonly key: string
  readonly nestedKey: ReadonlyArray<string>
  readonly valueJson: string
}

/**
 * The path an item addresses: `nested_key` when it is set, else the single `key` (dots and all).
 *
 * @since 0.1.0
 * @category models
 */
export const pathOf = (item: WireItem): ReadonlyArray<string> =>
  item.nestedKey.length > 0 ? item.nestedKey : [item.key]

interface RawTree {
  [key: string]: RawTree | string
}

// Built with join, not `+=`: a line can be kept a while (the sender's cache), and a string grown by
// concatenation keeps every piece it was made of alive.
const writeRaw = (tree: RawTree, out: Array<string> = []): Array<string> => {
  out.push("{")
  let first = true
  for (const key in tree) {
    const value = tree[key]!
    if (!first) out.push(",")
    first = false
    out.push(JSON.stringify(key), ":")
    if (typeof value === "string") out.push(value)
    else writeRaw(value, out)
  }
  out.push("}")
  return out
}

/**
 * One `wandb-history.jsonl` line from a history record's items: nested paths become nested objects.
 *
 * @since 0.1.0
 * @category encoding
 */
export const historyLine = (items: ReadonlyArray<WireItem>): string => {
  const tree: RawTree = {}
  for (const item of items) {
    const path = pathOf(item)
    let node = tree
    for (let i = 0; i < path.length - 1; i++) {
      const next = node[path[i]!]
      if (next === undefined || typeof next === "string") node[path[i]!] = {}
      node = node[path[i]!] as RawTree
    }
    node[path[path.length - 1]!] = item.valueJson === "" ? "null" : item.valueJson
  }
  return writeRaw(tree).join("")
}

/**
 * A flat tree of values keyed by `PATH_SEPARATOR`-joined paths, updated by summary or config items.
 *
 * @since 0.1.0
 * @category state
 */
export class ValueTree {
  private readonly values: FlatRow = {}

  set(item: WireItem): void {
    const path = pathOf(item).join(PATH_SEPARATOR)
    this.remove(path)
    this.values[path] = parseValue(item.valueJson)
  }

  /** Removes a path and everything under it. */
  remove(path: string): void {
    for (const key of Object.keys(this.values)) {
      if (key === path || key.startsWith(path + PATH_SEPARATOR)) delete this.values[key]
    }
  }

  removeItem(item: Pick<WireItem, "key" | "nestedKey">): void {
    this.remove((item.nestedKey.length > 0 ? item.nestedKey : [item.key]).join(PATH_SEPARATOR))
  }

  nested(): Record<string, unknown> {
    return unflatten(this.values)
  }
}

// A value the server would refuse to parse is kept as its text rather than lost.
const parseValue = (text: string): unknown => {
  try {
    return ExtendedJson.parse(text)
  } catch {
    return text
  }
}

/**
 * `_wandb.t`: telemetry keyed by `TelemetryRecord` field numbers (5 = client version, 13 = platform). The
 * server counts a run as started by a client only when its config has it.
 *
 * @since 0.1.0
 * @category encoding
 */
export const telemetry = (platform: string): Record<string, unknown> => ({ "5": SDK_VERSION, "13": platform })

/**
 * The `_wandb` config value this client writes.
 *
 * @since 0.1.0
 * @category encoding
 */
export const wandbConfigValue = (platform: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  ...extra,
  cli_version: SDK_VERSION,
  t: telemetry(platform),
  m: []
})

/**
 * The config as `UpsertBucket` takes it: JSON text of `{"key": {"value": v}}`, with `_wandb` holding at
 * least `t` and `m`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const configJson = (config: Record<string, unknown>, platform: string): string => {
  const wrapped: Record<string, unknown> = {}
  for (const key of Object.keys(config)) {
    if (key === "_wandb") continue
    wrapped[key] = { value: config[key] }
  }
  const existing = config["_wandb"]
  const extra = typeof existing === "object" && existing !== null && !Array.isArray(existing)
    ? existing as Record<string, unknown>
    : {}
  wrapped["_wandb"] = { value: wandbConfigValue(platform, extra) }
  return ExtendedJson.stringify(wrapped)
}

/**
 * The run page: `{app}/{entity}/{project}/runs/{id}`, where the app URL is the API URL without `api.`
 * (`https://api.wandb.ai` → `https://wandb.ai`), `app.` for other `api.` hosts, and the API URL itself for
 * servers that serve both.
 *
 * @since 0.1.0
 * @category encoding
 */
export const runUrl = (baseUrl: string, entity: string, project: string, runId: string): string => {
  const app = baseUrl.includes("://api.wandb.")
    ? baseUrl.replace("://api.", "://")
    : baseUrl.replace("://api.", "://app.")
  return `${app}/${encodeURIComponent(entity)}/${encodeURIComponent(project)}/runs/${encodeURIComponent(runId)}`
}
