/**
 * The arguments of `init`: the official client's arguments in camelCase, as a schema. Decoding turns
 * them into settings values (with the source "init-argument") and the run's initial config inputs;
 * every problem found becomes one violation of a single `InvalidSettings`.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { SettingViolation } from "./Errors.js"
import { isSettingKey, type SettingKey, type SourceValues } from "./Settings.js"

const RunMomentInput = Schema.Union(
  Schema.String,
  Schema.Struct({ run: Schema.String, metric: Schema.optional(Schema.Literal("_step")), value: Schema.Number })
)

const ApiKeyInput = Schema.Union(Schema.String, Schema.RedactedFromSelf(Schema.String))

/**
 * What `config` may be: an object (a parsed command-line flags object is one), an argv-style array of
 * `--key value` strings, or the path of a YAML file.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ConfigInput = Schema.Union(
  Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  Schema.Array(Schema.String),
  Schema.String
)

/**
 * @since 0.1.0
 * @category models
 */
export type ConfigInput = typeof ConfigInput.Type

const settingFields = {
  project: Schema.optional(Schema.String),
  entity: Schema.optional(Schema.String),
  name: Schema.optional(Schema.String),
  id: Schema.optional(Schema.String),
  notes: Schema.optional(Schema.String),
  tags: Schema.optional(Schema.Array(Schema.String)),
  group: Schema.optional(Schema.String),
  jobType: Schema.optional(Schema.String),
  dir: Schema.optional(Schema.String),
  mode: Schema.optional(Schema.Literal("online", "offline", "disabled", "dryrun", "run")),
  resume: Schema.optional(Schema.Union(Schema.Literal("allow", "must", "never", "auto"), Schema.Boolean)),
  resumeFrom: Schema.optional(RunMomentInput),
  forkFrom: Schema.optional(RunMomentInput),
  reinit: Schema.optional(
    Schema.Union(Schema.Literal("default", "return_previous", "finish_previous", "create_new"), Schema.Boolean)
  ),
  force: Schema.optional(Schema.Boolean),
  anonymous: Schema.optional(Schema.Literal("allow", "must", "never")),
  syncTensorboard: Schema.optional(Schema.Boolean),
  monitorGym: Schema.optional(Schema.Boolean),
  saveCode: Schema.optional(Schema.Boolean),
  magic: Schema.optional(Schema.Boolean),
  allowValChange: Schema.optional(Schema.Boolean)
}

/**
 * Everything `init({ settings })` accepts: each setting by its camelCase name.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SettingsInput = Schema.Struct({
  ...settingFields,
  baseUrl: Schema.optional(Schema.String),
  apiKey: Schema.optional(ApiKeyInput),
  initTimeout: Schema.optional(Schema.Number),
  finishTimeout: Schema.optional(Schema.Number),
  flushInterval: Schema.optional(Schema.Number),
  fileStreamInterval: Schema.optional(Schema.Number),
  retryWaitMin: Schema.optional(Schema.Number),
  retryWaitMax: Schema.optional(Schema.Number),
  httpTimeout: Schema.optional(Schema.Number),
  console: Schema.optional(Schema.Literal("auto", "wrap", "off", "redirect", "wrap_raw", "wrap_emu")),
  statsInterval: Schema.optional(Schema.Number),
  disableStats: Schema.optional(Schema.Boolean),
  silent: Schema.optional(Schema.Boolean),
  quiet: Schema.optional(Schema.Boolean),
  symlink: Schema.optional(Schema.Boolean),
  useDotWandb: Schema.optional(Schema.Boolean),
  disableGit: Schema.optional(Schema.Boolean),
  program: Schema.optional(Schema.String),
  host: Schema.optional(Schema.String),
  username: Schema.optional(Schema.String),
  gitRemoteUrl: Schema.optional(Schema.String),
  gitCommit: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type SettingsInput = typeof SettingsInput.Type

/**
 * The arguments of `init`. Python names: `job_type` is `jobType`, `config_include_keys` is
 * `configIncludeKeys`, `sync_tensorboard` is `syncTensorboard` (alias `tensorboard`), and so on.
 *
 * @since 0.1.0
 * @category schemas
 */
export const InitOptions = Schema.Struct({
  ...settingFields,
  tensorboard: Schema.optional(Schema.Boolean),
  config: Schema.optional(ConfigInput),
  configIncludeKeys: Schema.optional(Schema.Array(Schema.String)),
  configExcludeKeys: Schema.optional(Schema.Array(Schema.String)),
  settings: Schema.optional(SettingsInput)
})

/**
 * @since 0.1.0
 * @category models
 */
export type InitOptions = typeof InitOptions.Encoded

/**
 * Init options split into what they mean: settings values by source, and the config inputs.
 *
 * @since 0.1.0
 * @category models
 */
export interface DecodedInitOptions {
  readonly initSettings: SourceValues
  readonly initArguments: SourceValues
  readonly config: ConfigInput | undefined
  readonly configIncludeKeys: ReadonlyArray<string> | undefined
  readonly configExcludeKeys: ReadonlyArray<string> | undefined
  readonly violations: ReadonlyArray<SettingViolation>
}

const parseOptions = { errors: "all", onExcessProperty: "error" } as const

/**
 * Decodes init options. Fields that fail the schema become violations and are left out; the others are
 * handed on, so settings resolution can report its own rules for them in the same error.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (input: unknown): DecodedInitOptions => {
  const violations: Array<SettingViolation> = []
  const options = input === undefined ? {} : input
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    return {
      initSettings: { source: "init-settings", values: [] },
      initArguments: { source: "init-argument", values: [] },
      config: undefined,
      configIncludeKeys: undefined,
      configExcludeKeys: undefined,
      violations: [
        new SettingViolation({ setting: "options", source: "init-argument", reason: "init takes an options object" })
      ]
    }
  }

  const record = options as Record<string, unknown>
  const badPaths = new Set<string>()
  const result = Schema.decodeUnknownEither(InitOptions)(record, parseOptions)
  if (Either.isLeft(result)) {
    // A value that matches no member of a union gets one issue per member; they become one violation.
    const byPath = new Map<string, Array<string>>()
    for (const issue of ParseResult.ArrayFormatter.formatErrorSync(result.left)) {
      const key = issue.path.map(String).join(".")
      byPath.set(key, [...(byPath.get(key) ?? []), issue.message])
    }
    for (const [key, messages] of byPath) {
      // `settings` itself is reported through the issues of its fields, when it has any.
      if ([...byPath.keys()].some((other) => other.startsWith(`${key}.`))) continue
      badPaths.add(key)
      const path = key === "" ? [] : key.split(".")
      const inSettings = path[0] === "settings" && path.length > 1
      const setting = (inSettings ? path.slice(1) : path).join(".") || "options"
      violations.push(
        new SettingViolation({
          setting,
          source: `${inSettings ? "init-settings" : "init-argument"} (${inSettings ? key : setting})`,
          reason: messages.every((m) => m.startsWith("is unexpected"))
            ? `is not ${inSettings ? "a setting" : "an init option"} (see the README's tables)`
            : setting === "apiKey"
            // The value given is never repeated: it may be a secret.
            ? "expected a string or a Redacted string"
            : combineReasons(messages)
        })
      )
    }
  }
  const isBad = (path: string) => badPaths.has(path) || [...badPaths].some((p) => p.startsWith(path + "."))

  const nested = typeof record.settings === "object" && record.settings !== null
    ? record.settings as Record<string, unknown>
    : {}
  const initSettings = collect(nested, "init-settings", (key) => isBad(`settings.${key}`))

  const args: Record<string, unknown> = { ...record }
  // `tensorboard` is the older name; when both are given, `syncTensorboard` wins as in the official client.
  if (args.syncTensorboard === undefined && args.tensorboard !== undefined) args.syncTensorboard = args.tensorboard
  const initArguments = collect(args, "init-argument", isBad)

  const include = isBad("configIncludeKeys") ? undefined : record.configIncludeKeys as ReadonlyArray<string>
  const exclude = isBad("configExcludeKeys") ? undefined : record.configExcludeKeys as ReadonlyArray<string>
  if (include !== undefined && exclude !== undefined) {
    violations.push(
      new SettingViolation({
        setting: "configIncludeKeys, configExcludeKeys",
        source: "init-argument",
        reason: "give at most one of configIncludeKeys and configExcludeKeys"
      })
    )
  }

  return {
    initSettings,
    initArguments,
    config: isBad("config") ? undefined : record.config as ConfigInput | undefined,
    configIncludeKeys: include,
    configExcludeKeys: exclude,
    violations
  }
}

const EXPECTED = /^Expected (.+), actual (.+)$/s

const combineReasons = (messages: ReadonlyArray<string>): string => {
  if (messages.length === 1 && !EXPECTED.test(messages[0]!)) return messages[0]!
  const expected: Array<string> = []
  let actual: string | undefined
  for (const message of messages) {
    const match = EXPECTED.exec(message)
    if (match === null) return [...new Set(messages)].join("; ")
    if (match[1] !== "undefined") expected.push(match[1]!)
    actual = match[2]
  }
  const unique = [...new Set(expected)]
  return `expected ${unique.length === 1 ? unique[0] : `one of ${unique.join(", ")}`}, got ${actual}`
}

const collect = (
  values: Record<string, unknown>,
  source: "init-settings" | "init-argument",
  isBad: (key: string) => boolean
): SourceValues => ({
  source,
  values: Object.keys(values)
    .filter((key): key is SettingKey => isSettingKey(key) && !isBad(key) && values[key] !== undefined)
    .map((key) => ({ key, raw: values[key], origin: source === "init-settings" ? `settings.${key}` : key }))
})

