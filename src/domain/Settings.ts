/**
 * The settings model: every setting with its official name, its environment variables, how its text
 * form is parsed, and the rules its value must follow; and the resolution of sources by precedence,
 * keeping for each value the source it came from.
 *
 * Precedence, lowest to highest: defaults, the global settings file, the workspace settings file,
 * `WANDB_*` environment variables, `init({ settings })`, the init arguments.
 *
 * @since 0.1.0
 */
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { InvalidSettings, SettingViolation } from "./Errors.js"
import * as RunId from "./RunId.js"

// -----------------------------------------------------------------------------
// sources
// -----------------------------------------------------------------------------

/**
 * Where a resolved value came from, lowest precedence first.
 *
 * @since 0.1.0
 * @category models
 */
export const SettingSource = Schema.Literal(
  "default",
  "global-file",
  "workspace-file",
  "environment",
  "init-settings",
  "init-argument"
)

/**
 * @since 0.1.0
 * @category models
 */
export type SettingSource = typeof SettingSource.Type

/**
 * Values given by one source. `origin` says precisely where (a file path, an environment variable);
 * `textual` sources (files, environment) give strings that are parsed first.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceValues {
  readonly source: SettingSource
  readonly values: ReadonlyArray<{ readonly key: SettingKey; readonly raw: unknown; readonly origin: string }>
}

// -----------------------------------------------------------------------------
// values
// -----------------------------------------------------------------------------

/**
 * `"<run id>?_step=<number>"`: the moment of a run to rewind to or fork from.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunMoment {
  readonly run: string
  readonly metric: "_step"
  readonly value: number
}

/**
 * @since 0.1.0
 * @category models
 */
export type Mode = "online" | "offline" | "disabled"

/**
 * @since 0.1.0
 * @category models
 */
export type Resume = "allow" | "must" | "never" | "auto"

/**
 * @since 0.1.0
 * @category models
 */
export type Reinit = "default" | "return_previous" | "finish_previous" | "create_new"

/**
 * Every resolved setting. Durations are in seconds, as in the official client.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly mode: Mode
  readonly project: string | undefined
  readonly entity: string | undefined
  readonly name: string | undefined
  readonly notes: string | undefined
  readonly tags: ReadonlyArray<string> | undefined
  readonly group: string | undefined
  readonly jobType: string | undefined
  readonly id: string | undefined
  readonly dir: string
  readonly resume: Resume | undefined
  readonly resumeFrom: RunMoment | undefined
  readonly forkFrom: RunMoment | undefined
  readonly reinit: Reinit
  readonly force: boolean
  readonly anonymous: "allow" | "must" | "never" | undefined
  readonly syncTensorboard: boolean
  readonly monitorGym: boolean
  readonly saveCode: boolean | undefined
  readonly magic: boolean
  readonly allowValChange: boolean
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string> | undefined
  readonly initTimeout: number
  readonly finishTimeout: number
  readonly flushInterval: number
  readonly fileStreamInterval: number
  readonly retryWaitMin: number
  readonly retryWaitMax: number
  readonly httpTimeout: number
  readonly console: "wrap" | "off"
  readonly statsInterval: number
  readonly disableStats: boolean
  readonly silent: boolean
  readonly quiet: boolean
  readonly symlink: boolean
  readonly useDotWandb: boolean | undefined
  readonly disableGit: boolean
  readonly program: string | undefined
  readonly host: string | undefined
  readonly username: string | undefined
  readonly gitRemoteUrl: string | undefined
  readonly gitCommit: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type SettingKey = keyof Settings

/**
 * A resolved value with the source that set it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Provenance<A> {
  readonly value: A
  readonly source: SettingSource
  readonly origin: string
}

/**
 * What `run.settings` shows: each setting's value next to where it came from.
 *
 * @since 0.1.0
 * @category models
 */
export type SettingsWithProvenance = { readonly [K in SettingKey]: Provenance<Settings[K]> }

// -----------------------------------------------------------------------------
// parsing and rules
// -----------------------------------------------------------------------------

type Parsed<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly reason: string }

const ok = <A>(value: A): Parsed<A> => ({ ok: true, value })
const fail = (reason: string): Parsed<never> => ({ ok: false, reason })

const TRUE_WORDS = new Set(["true", "1", "yes", "y", "on", "t"])
const FALSE_WORDS = new Set(["false", "0", "no", "n", "off", "f"])

const text = (raw: unknown): Parsed<string> =>
  typeof raw === "string" ? ok(raw) : fail(`expected a string, got ${describe(raw)}`)

const bool = (raw: unknown): Parsed<boolean> => {
  if (typeof raw === "boolean") return ok(raw)
  if (typeof raw === "string") {
    const word = raw.trim().toLowerCase()
    if (TRUE_WORDS.has(word)) return ok(true)
    if (FALSE_WORDS.has(word)) return ok(false)
    return fail(`expected a boolean (true/false, 1/0, yes/no, on/off), got ${JSON.stringify(raw)}`)
  }
  return fail(`expected a boolean, got ${describe(raw)}`)
}

const seconds = (raw: unknown): Parsed<number> => {
  const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw
  if (typeof n !== "number" || Number.isNaN(n)) return fail(`expected a number of seconds, got ${describe(raw)}`)
  if (n < 0 || !Number.isFinite(n)) return fail(`expected a finite number of seconds ≥ 0, got ${n}`)
  return ok(n)
}

const positiveSeconds = (raw: unknown): Parsed<number> => {
  const parsed = seconds(raw)
  if (parsed.ok && parsed.value === 0) return fail("must be greater than 0")
  return parsed
}

// Intervals of background work have a floor: below it a run would spend its machine on itself.
const atLeast = (floor: number) => (raw: unknown): Parsed<number> => {
  const parsed = positiveSeconds(raw)
  if (parsed.ok && parsed.value < floor) return fail(`must be at least ${floor} s, got ${parsed.value}`)
  return parsed
}

const literal = <L extends string>(allowed: ReadonlyArray<L>, aliases: Record<string, L> = {}) =>
(raw: unknown): Parsed<L> => {
  if (typeof raw === "string") {
    if ((allowed as ReadonlyArray<string>).includes(raw)) return ok(raw as L)
    if (raw in aliases) return ok(aliases[raw]!)
  }
  return fail(`expected one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}, got ${describe(raw)}`)
}

const FORBIDDEN_PROJECT_CHARACTERS = ["/", "\\", "#", "?", "%", ":"]

// "." and ".." would be resolved away in the server's URLs, so such a run could never be uploaded.
const onlyDots = (value: string) => /^\.+$/.test(value)

const project = (raw: unknown): Parsed<string> => {
  const parsed = text(raw)
  if (!parsed.ok) return parsed
  const problems: Array<string> = []
  if (parsed.value.length === 0) problems.push("must not be empty")
  if (onlyDots(parsed.value)) problems.push("must not be only dots")
  if (parsed.value.length > 128) problems.push(`must be at most 128 characters, has ${parsed.value.length}`)
  const found = FORBIDDEN_PROJECT_CHARACTERS.filter((c) => parsed.value.includes(c))
  if (found.length > 0) problems.push(`must not contain ${found.join(" ")} (forbidden: / \\ # ? % :)`)
  return problems.length === 0 ? parsed : fail(problems.join("; "))
}

// Tags come as a comma-separated list from files and the environment, and as an array from code. A
// lone string from code is one tag, not a list of characters as in the Python client.
const tags = (raw: unknown): Parsed<ReadonlyArray<string>> => {
  const list = typeof raw === "string" ? raw.split(",") : raw
  if (!Array.isArray(list) || !list.every((t) => typeof t === "string")) {
    return fail(`expected a list of strings, got ${describe(raw)}`)
  }
  const bad = list.flatMap((tag, i) =>
    tag.length < 1 || tag.length > 64 ? [`tag ${i} (${JSON.stringify(tag)}) has ${tag.length} characters`] : []
  )
  return bad.length === 0 ? ok(list) : fail(`tags must be between 1 and 64 characters: ${bad.join(", ")}`)
}

// The W&B server keeps job types to 64 characters; refusing longer ones here keeps an offline run
// from being refused at sync time.
const jobType = (raw: unknown): Parsed<string> => {
  const parsed = text(raw)
  if (parsed.ok && parsed.value.length > 64) return fail(`must be at most 64 characters, has ${parsed.value.length}`)
  return parsed
}

const runId = (raw: unknown): Parsed<string> => {
  const parsed = text(raw)
  if (!parsed.ok) return parsed
  const problems = RunId.problems(parsed.value)
  if (onlyDots(parsed.value)) problems.push("must not be only dots")
  if (parsed.value.includes("\u0000")) problems.push("must not contain a NUL character")
  return problems.length === 0 ? parsed : fail(problems.join("; "))
}

const MOMENT_HINT = `expected "<run id>?_step=<number>", for example "ans3bsax?_step=123"`

/**
 * Parses a run moment string.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseRunMoment = (raw: unknown): Parsed<RunMoment> => {
  if (typeof raw === "object" && raw !== null && "run" in raw && "value" in raw) {
    const moment = raw as Record<string, unknown>
    if (typeof moment.run === "string" && typeof moment.value === "number" && (moment.metric ?? "_step") === "_step") {
      return ok({ run: moment.run, metric: "_step", value: moment.value })
    }
    return fail(MOMENT_HINT)
  }
  if (typeof raw !== "string") return fail(`${MOMENT_HINT}, got ${describe(raw)}`)
  const match = /^([^/?#;]+)\?([^=&#]+)=([^&#]*)$/.exec(raw)
  if (match === null) return fail(`${MOMENT_HINT}, got ${JSON.stringify(raw)}`)
  const [, run, metric, value] = match
  if (metric !== "_step") return fail(`only _step is supported as the moment's metric, got ${JSON.stringify(metric)}`)
  const n = Number(value)
  if (value === "" || Number.isNaN(n)) return fail(`${MOMENT_HINT}, got the step ${JSON.stringify(value)}`)
  return ok({ run: run!, metric: "_step", value: n })
}

const REFUSED_BASE_URLS = ["https://wandb.ai", "https://app.wandb.ai", "http://api.wandb.ai", "http://wandb.ai"]

const baseUrl = (raw: unknown): Parsed<string> => {
  const parsed = text(raw)
  if (!parsed.ok) return parsed
  const trimmed = parsed.value.replace(/\/+$/, "")
  let url: URL
  try {
    url = new URL(trimmed)
  } catch {
    return fail(`expected an http(s) URL, got ${JSON.stringify(parsed.value)}`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return fail(`expected an http(s) URL, got ${JSON.stringify(parsed.value)}`)
  }
  // A URL with a user and password would print a secret in every run URL and log; keys go in apiKey.
  if (url.username !== "" || url.password !== "") {
    return fail("must not carry a user or password; give the API key as apiKey or WANDB_API_KEY")
  }
  if (REFUSED_BASE_URLS.includes(trimmed.toLowerCase())) {
    return fail(`${trimmed} is the web app, not the API; use https://api.wandb.ai`)
  }
  return ok(trimmed)
}

const apiKey = (raw: unknown): Parsed<Redacted.Redacted<string>> => {
  const value = Redacted.isRedacted(raw) ? Redacted.value(raw as Redacted.Redacted<unknown>) : raw
  if (typeof value !== "string") return fail(`expected a string, got ${describe(value)}`)
  if (value.trim() !== value) return fail("must not start or end with whitespace")
  if (value.length === 0) return fail("must not be empty")
  return ok(Redacted.make(value))
}

interface Definition {
  /** The official setting name; also the key in settings files. */
  readonly official: string
  /** Environment variables, the first set one wins. */
  readonly env: ReadonlyArray<string>
  readonly parse: (raw: unknown) => Parsed<unknown>
  /** Only init arguments and init settings may set it (no file or environment form). */
  readonly codeOnly?: boolean
}

const definitions: { readonly [K in SettingKey]: Definition } = {
  mode: {
    official: "mode",
    env: ["WANDB_MODE"],
    parse: literal(["online", "offline", "disabled"], { dryrun: "offline", run: "online" })
  },
  project: { official: "project", env: ["WANDB_PROJECT"], parse: project },
  entity: { official: "entity", env: ["WANDB_ENTITY"], parse: text },
  name: { official: "run_name", env: ["WANDB_NAME", "WANDB_RUN_NAME"], parse: text },
  notes: { official: "run_notes", env: ["WANDB_NOTES", "WANDB_RUN_NOTES"], parse: text },
  tags: { official: "run_tags", env: ["WANDB_TAGS", "WANDB_RUN_TAGS"], parse: tags },
  group: { official: "run_group", env: ["WANDB_RUN_GROUP"], parse: text },
  jobType: { official: "run_job_type", env: ["WANDB_JOB_TYPE", "WANDB_RUN_JOB_TYPE"], parse: jobType },
  id: { official: "run_id", env: ["WANDB_RUN_ID"], parse: runId },
  dir: { official: "root_dir", env: ["WANDB_DIR"], parse: text },
  resume: {
    official: "resume",
    env: ["WANDB_RESUME"],
    parse: (raw) => (raw === true ? ok("auto") : literal(["allow", "must", "never", "auto"])(raw))
  },
  resumeFrom: { official: "resume_from", env: ["WANDB_RESUME_FROM"], parse: parseRunMoment },
  forkFrom: { official: "fork_from", env: ["WANDB_FORK_FROM"], parse: parseRunMoment },
  reinit: {
    official: "reinit",
    env: ["WANDB_REINIT"],
    parse: (raw) => {
      const named = literal(["default", "return_previous", "finish_previous", "create_new"])(raw)
      if (named.ok) return named
      const flag = bool(raw)
      if (flag.ok) return ok(flag.value ? "finish_previous" : "return_previous")
      return named
    }
  },
  force: { official: "force", env: ["WANDB_FORCE"], parse: bool },
  anonymous: { official: "anonymous", env: ["WANDB_ANONYMOUS"], parse: literal(["allow", "must", "never"]) },
  syncTensorboard: { official: "sync_tensorboard", env: ["WANDB_SYNC_TENSORBOARD"], parse: bool },
  monitorGym: { official: "monitor_gym", env: [], parse: bool, codeOnly: true },
  saveCode: { official: "save_code", env: ["WANDB_SAVE_CODE"], parse: bool },
  magic: { official: "magic", env: ["WANDB_MAGIC"], parse: bool },
  allowValChange: { official: "allow_val_change", env: [], parse: bool, codeOnly: true },
  baseUrl: { official: "base_url", env: ["WANDB_BASE_URL"], parse: baseUrl },
  apiKey: { official: "api_key", env: ["WANDB_API_KEY"], parse: apiKey },
  initTimeout: { official: "init_timeout", env: ["WANDB_INIT_TIMEOUT"], parse: positiveSeconds },
  finishTimeout: { official: "finish_timeout", env: ["WANDB_FINISH_TIMEOUT"], parse: seconds },
  flushInterval: { official: "x_flush_interval", env: ["WANDB_X_FLUSH_INTERVAL"], parse: atLeast(0.01) },
  fileStreamInterval: {
    official: "x_file_stream_transmit_interval",
    env: ["WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL"],
    parse: positiveSeconds
  },
  retryWaitMin: {
    official: "x_retry_wait_min_seconds",
    env: ["WANDB_X_RETRY_WAIT_MIN_SECONDS"],
    parse: positiveSeconds
  },
  retryWaitMax: {
    official: "x_retry_wait_max_seconds",
    env: ["WANDB_X_RETRY_WAIT_MAX_SECONDS"],
    parse: positiveSeconds
  },
  httpTimeout: { official: "x_graphql_timeout_seconds", env: ["WANDB_HTTP_TIMEOUT"], parse: positiveSeconds },
  console: {
    official: "console",
    env: ["WANDB_CONSOLE"],
    // Every capturing mode of the official client comes down to wrapping the streams in Node.
    parse: literal(["wrap", "off"], { auto: "wrap", redirect: "wrap", wrap_raw: "wrap", wrap_emu: "wrap" })
  },
  statsInterval: {
    official: "x_stats_sampling_interval",
    env: ["WANDB_X_STATS_SAMPLING_INTERVAL"],
    parse: atLeast(0.1)
  },
  disableStats: { official: "x_disable_stats", env: ["WANDB_X_DISABLE_STATS"], parse: bool },
  silent: { official: "silent", env: ["WANDB_SILENT"], parse: bool },
  quiet: { official: "quiet", env: ["WANDB_QUIET"], parse: bool },
  symlink: { official: "symlink", env: ["WANDB_SYMLINK"], parse: bool },
  useDotWandb: { official: "use_dot_wandb", env: ["WANDB_USE_DOT_WANDB"], parse: bool },
  disableGit: { official: "disable_git", env: ["WANDB_DISABLE_GIT"], parse: bool },
  program: { official: "program", env: ["WANDB_PROGRAM"], parse: text },
  host: { official: "host", env: ["WANDB_HOST"], parse: text },
  username: { official: "username", env: ["WANDB_USERNAME"], parse: text },
  gitRemoteUrl: { official: "git_remote_url", env: ["WANDB_GIT_REMOTE_URL"], parse: text },
  gitCommit: { official: "git_commit", env: ["WANDB_GIT_COMMIT"], parse: text }
}

/**
 * Every setting key, in a stable order.
 *
 * @since 0.1.0
 * @category models
 */
export const settingKeys = Object.keys(definitions) as ReadonlyArray<SettingKey>

/**
 * The official name of a setting (the settings-file key).
 *
 * @since 0.1.0
 * @category models
 */
export const officialName = (key: SettingKey): string => definitions[key].official

/**
 * The environment variables that can set a setting, first one wins.
 *
 * @since 0.1.0
 * @category models
 */
export const environmentNames = (key: SettingKey): ReadonlyArray<string> => definitions[key].env

const byOfficialName = new Map(settingKeys.map((key) => [definitions[key].official, key] as const))

/**
 * The setting a settings-file key names, if it is one we model.
 *
 * @since 0.1.0
 * @category models
 */
export const keyOfOfficialName = (name: string): SettingKey | undefined => byOfficialName.get(name.toLowerCase())

/**
 * Whether a setting can only come from code (init arguments or `init({ settings })`).
 *
 * @since 0.1.0
 * @category models
 */
export const isCodeOnly = (key: SettingKey): boolean => definitions[key].codeOnly === true

/**
 * Is `key` the name of a setting (camelCase, as `init({ settings })` takes them)?
 *
 * @since 0.1.0
 * @category models
 */
export const isSettingKey = (key: string): key is SettingKey => Object.hasOwn(definitions, key)

// -----------------------------------------------------------------------------
// resolution
// -----------------------------------------------------------------------------

/**
 * Defaults that depend on the machine (the working directory, the host name).
 *
 * @since 0.1.0
 * @category models
 */
export interface MachineDefaults {
  readonly dir: string
  readonly host: string | undefined
  readonly program: string | undefined
  readonly username: string | undefined
  /** Symlinks in the wandb dir are on where the platform has them (not on Windows). */
  readonly symlink: boolean
}

const staticDefaults = {
  mode: "online",
  reinit: "default",
  force: false,
  syncTensorboard: false,
  monitorGym: false,
  magic: false,
  allowValChange: false,
  baseUrl: "https://api.wandb.ai",
  initTimeout: 90,
  finishTimeout: 0,
  flushInterval: 0.5,
  fileStreamInterval: 15,
  retryWaitMin: 2,
  retryWaitMax: 60,
  httpTimeout: 30,
  console: "wrap",
  statsInterval: 15,
  disableStats: false,
  silent: false,
  quiet: false,
  disableGit: false
} as const

/**
 * Resolves settings from sources given lowest precedence first. Every value from every source is
 * checked, so one `InvalidSettings` lists every violation, including the rules between settings.
 *
 * @since 0.1.0
 * @category resolution
 */
export const resolve = (
  machine: MachineDefaults,
  sources: ReadonlyArray<SourceValues>,
  extraViolations: ReadonlyArray<SettingViolation> = []
): { readonly _tag: "Right"; readonly right: SettingsWithProvenance } | {
  readonly _tag: "Left"
  readonly left: InvalidSettings
} => {
  const resolved: Record<string, Provenance<unknown>> = {}
  for (const key of settingKeys) {
    const fallback = key in staticDefaults
      ? staticDefaults[key as keyof typeof staticDefaults]
      : key in machine
      ? machine[key as keyof MachineDefaults]
      : undefined
    resolved[key] = { value: fallback, source: "default", origin: "default" }
  }

  const violations: Array<SettingViolation> = [...extraViolations]
  for (const { source, values } of sources) {
    for (const { key, raw, origin } of values) {
      if (raw === undefined || raw === null) continue
      const parsed = definitions[key].parse(raw)
      if (parsed.ok) resolved[key] = { value: parsed.value, source, origin }
      else {
        violations.push(
          new SettingViolation({ setting: key, source: `${source} (${origin})`, reason: parsed.reason })
        )
      }
    }
  }

  const settings = resolved as unknown as SettingsWithProvenance
  violations.push(...crossFieldViolations(settings))
  if (violations.length > 0) return { _tag: "Left", left: new InvalidSettings({ violations }) }
  return { _tag: "Right", right: settings }
}

const crossFieldViolations = (s: SettingsWithProvenance): Array<SettingViolation> => {
  const out: Array<SettingViolation> = []
  const where = (p: Provenance<unknown>) => `${p.source} (${p.origin})`

  const branching = (["resume", "resumeFrom", "forkFrom"] as const).filter((k) => s[k].value !== undefined)
  if (branching.length > 1) {
    out.push(
      new SettingViolation({
        setting: branching.join(", "),
        source: branching.map((k) => where(s[k])).join(", "),
        reason: "resume, resumeFrom and forkFrom are mutually exclusive; set at most one"
      })
    )
  }
  const id = s.id.value
  const rewind = s.resumeFrom.value
  if (rewind !== undefined && id !== undefined && rewind.run !== id) {
    out.push(
      new SettingViolation({
        setting: "resumeFrom",
        source: where(s.resumeFrom),
        reason: `rewinds run ${rewind.run} but the id is ${id}; they must be the same run (or omit id)`
      })
    )
  }
  const fork = s.forkFrom.value
  if (fork !== undefined && id !== undefined && fork.run === id) {
    out.push(
      new SettingViolation({
        setting: "forkFrom",
        source: where(s.forkFrom),
        reason: `a fork needs a new id, not the source run's (${id}); use resumeFrom to continue that run`
      })
    )
  }
  if (s.anonymous.value === "must") {
    out.push(
      new SettingViolation({
        setting: "anonymous",
        source: where(s.anonymous),
        reason: `"must" asks for an anonymous login, which W&B servers no longer offer; log in with an API key`
      })
    )
  }
  return out
}

/**
 * Plain values without their provenance.
 *
 * @since 0.1.0
 * @category accessors
 */
export const values = (settings: SettingsWithProvenance): Settings =>
  Object.fromEntries(settingKeys.map((key) => [key, settings[key].value])) as unknown as Settings

/**
 * A value overridden after resolution (a generated id, a project inferred from the working directory),
 * recorded with the provenance it deserves.
 *
 * @since 0.1.0
 * @category combinators
 */
export const override = <K extends SettingKey>(
  settings: SettingsWithProvenance,
  key: K,
  value: Settings[K],
  origin: string
): SettingsWithProvenance => ({ ...settings, [key]: { value, source: "default", origin } })

const describe = (raw: unknown): string => {
  if (raw === null) return "null"
  if (Array.isArray(raw)) return "an array"
  if (typeof raw === "string") return JSON.stringify(raw)
  return typeof raw === "object" ? "an object" : `${typeof raw} ${String(raw)}`
}
