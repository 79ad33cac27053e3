/**
 * The run config: how init and `config.update` inputs become config values, the rule against silent
 * value changes, and the `config.yaml` the run leaves in `files/`.
 *
 * @since 0.1.0
 */
import * as YAML from "yaml"
import { ConfigValueChanged } from "./Errors.js"
import * as ExtendedJson from "./ExtendedJson.js"

/**
 * @since 0.1.0
 * @category models
 */
export type ConfigValues = Record<string, unknown>

/**
 * The largest config W&B accepts, as JSON: the largest line the server takes.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_CONFIG_BYTES = 10 * 1024 * 1024

/**
 * Turns a value into plain JSON-friendly data, as the official client does for config: sets and
 * iterables become arrays, `Map`s objects, dates ISO strings, `NaN` becomes `null`, class instances
 * their own enumerable fields (or `toJSON()`), functions their name.
 *
 * @since 0.1.0
 * @category sanitising
 */
export const sanitize = (value: unknown, seen: Set<object> = new Set()): unknown => {
  switch (typeof value) {
    case "number":
      return Number.isNaN(value) ? null : value
    case "string":
    case "boolean":
      return value
    case "bigint":
      return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString()
    case "function":
      return value.name === "" ? "<function>" : value.name
    case "symbol":
      return value.toString()
    case "undefined":
      return null
  }
  if (value === null) return null
  const object = value as object
  if (seen.has(object)) return "<circular>"
  seen.add(object)
  try {
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString()
    if (Array.isArray(value)) return value.map((v) => sanitize(v, seen))
    if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
      return Array.from(value as unknown as ArrayLike<number>, (v) => sanitize(v, seen))
    }
    if (value instanceof Map) {
      return Object.fromEntries([...value].map(([k, v]) => [String(k), sanitize(v, seen)]))
    }
    if (value instanceof Set) return [...value].map((v) => sanitize(v, seen))
    const record = value as Record<string, unknown>
    if (typeof record.toJSON === "function") return sanitize((record.toJSON as () => unknown)(), seen)
    const out: ConfigValues = {}
    for (const key of Object.keys(record)) {
      if (record[key] !== undefined) out[key] = sanitize(record[key], seen)
    }
    return out
  } finally {
    seen.delete(object)
  }
}

/**
 * Keys are trimmed of leading and trailing dashes, so `--lr` from a flags object becomes `lr`.
 *
 * @since 0.1.0
 * @category sanitising
 */
export const normalizeKey = (key: string): string => key.replace(/^-+|-+$/g, "")

/**
 * Converts an object into config values. Keys that command-line parsers add for themselves
 * (`_` for positional arguments and `$0` for the script, as yargs and minimist do) are left out.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromObject = (input: Record<string, unknown>): ConfigValues => {
  const isFlags = Array.isArray(input["_"]) || typeof input["$0"] === "string"
  const out: ConfigValues = {}
  for (const key of Object.keys(input)) {
    if (isFlags && (key === "_" || key === "$0")) continue
    if (input[key] === undefined) continue
    out[normalizeKey(key)] = sanitize(input[key])
  }
  return out
}

const coerceFlag = (text: string): unknown => {
  if (text === "true") return true
  if (text === "false") return false
  if (text.trim() !== "" && !Number.isNaN(Number(text))) return Number(text)
  return text
}

/**
 * Parses `process.argv`-style flags: `--key value`, `--key=value`, a bare `--flag` (true) and
 * `--no-flag` (false). Numbers and booleans are coerced; positional arguments are ignored.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromArgv = (argv: ReadonlyArray<string>): ConfigValues => {
  const out: ConfigValues = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith("-") || arg === "-" || arg === "--") continue
    const eq = arg.indexOf("=")
    if (eq > 0) {
      out[normalizeKey(arg.slice(0, eq))] = coerceFlag(arg.slice(eq + 1))
      continue
    }
    const key = normalizeKey(arg)
    const next = argv[i + 1]
    if (next !== undefined && !next.startsWith("--")) {
      out[key] = coerceFlag(next)
      i++
    } else if (key.startsWith("no-")) {
      out[key.slice(3)] = false
    } else {
      out[key] = true
    }
  }
  return out
}

/**
 * Parses the text of a YAML config file. The official format (`key: {value: v}` per entry, with an
 * optional `wandb_version: 1`) is unwrapped; a plain mapping (`lr: 0.1`) is taken as it is. Returns the
 * reason as a string when the file cannot be a config.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromYaml = (text: string): { readonly ok: true; readonly values: ConfigValues } | {
  readonly ok: false
  readonly reason: string
} => {
  let document: unknown
  try {
    document = YAML.parse(text)
  } catch (error) {
    return { ok: false, reason: `not valid YAML: ${(error as Error).message.split("\n")[0]}` }
  }
  if (document === null || document === undefined) return { ok: true, values: {} }
  if (typeof document !== "object" || Array.isArray(document)) {
    return { ok: false, reason: "the YAML document must be a mapping of config keys" }
  }

  const entries = { ...(document as ConfigValues) }
  if ("wandb_version" in entries) {
    if (entries.wandb_version !== 1) {
      return { ok: false, reason: `unknown config version ${JSON.stringify(entries.wandb_version)} (expected 1)` }
    }
    delete entries.wandb_version
  }
  delete entries._wandb

  const keys = Object.keys(entries)
  const wrapped = keys.filter((key) => {
    const entry = entries[key]
    return typeof entry === "object" && entry !== null && !Array.isArray(entry) && "value" in entry
  })
  if (wrapped.length > 0 && wrapped.length < keys.length) {
    const plain = keys.filter((key) => !wrapped.includes(key))
    return {
      ok: false,
      reason: `mixes the W&B form (key: {value: ...}) with plain values (${plain.slice(0, 5).join(", ")}); ` +
        `use one form`
    }
  }
  const values: ConfigValues = {}
  for (const key of keys) {
    const entry = entries[key]
    values[key] = sanitize(wrapped.length > 0 ? (entry as ConfigValues).value : entry)
  }
  return { ok: true, values }
}

/**
 * Keeps only the included keys, or drops the excluded ones (top-level keys only).
 *
 * @since 0.1.0
 * @category combinators
 */
export const filterKeys = (
  values: ConfigValues,
  include: ReadonlyArray<string> | undefined,
  exclude: ReadonlyArray<string> | undefined
): ConfigValues => {
  if (include === undefined && exclude === undefined) return values
  const out: ConfigValues = {}
  for (const key of Object.keys(values)) {
    if (include !== undefined && !include.includes(key)) continue
    if (exclude !== undefined && exclude.includes(key)) continue
    out[key] = values[key]
  }
  return out
}

/**
 * The change an update makes: the keys whose canonical value differs (or that are new). Fails with the
 * first changed existing key unless changes are allowed; in that case nothing is applied.
 *
 * @since 0.1.0
 * @category combinators
 */
export const planUpdate = (
  current: ConfigValues,
  update: ConfigValues,
  allowValChange: boolean
):
  | { readonly ok: true; readonly changed: ConfigValues }
  | { readonly ok: false; readonly error: ConfigValueChanged } =>
{
  const changed: ConfigValues = {}
  for (const key of Object.keys(update)) {
    const next = update[key]
    if (!(key in current)) {
      changed[key] = next
      continue
    }
    if (ExtendedJson.canonical(current[key]) === ExtendedJson.canonical(next)) continue
    if (!allowValChange) {
      return { ok: false, error: new ConfigValueChanged({ key, oldValue: current[key], newValue: next }) }
    }
    changed[key] = next
  }
  return { ok: true, changed }
}

/**
 * `files/config.yaml` as wandb-core writes it: every key as `key: {value: v}`, keys sorted, no
 * `wandb_version` line. `_wandb` carries the telemetry and metadata the server reads.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toYaml = (values: ConfigValues, wandb: ConfigValues): string => {
  const document: ConfigValues = {}
  const all: ConfigValues = { ...values, _wandb: wandb }
  for (const key of Object.keys(all).sort()) document[key] = { value: all[key] }
  return YAML.stringify(document, { sortMapEntries: false, lineWidth: 0 })
}
