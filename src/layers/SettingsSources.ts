/**
 * The sources settings are read from, besides `init` itself: the global and workspace settings files
 * and the `WANDB_*` environment variables, plus the machine facts that give defaults (working
 * directory, host name). The environment is read through Effect's `Config`, so tests and applications
 * choose the provider.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as os from "node:os"
import { SettingViolation } from "../domain/Errors.js"
import {
  environmentNames,
  isCodeOnly,
  keyOfOfficialName,
  type MachineDefaults,
  settingKeys,
  type SourceValues
} from "../domain/Settings.js"

/**
 * Facts about the machine and process that settings default to.
 *
 * @since 0.1.0
 * @category models
 */
export interface MachineFacts {
  readonly cwd: string
  readonly home: string
  readonly hostname: string | undefined
  readonly username: string | undefined
  readonly program: string | undefined
  readonly platform: string
}

/**
 * Everything read from outside `init`, in precedence order, lowest first.
 *
 * @since 0.1.0
 * @category models
 */
export interface LoadedSources {
  readonly machine: MachineDefaults
  readonly cwd: string
  readonly sources: ReadonlyArray<SourceValues>
  /** Files that had settings in them, for the "Loading settings from" line. */
  readonly filesRead: ReadonlyArray<string>
  readonly violations: ReadonlyArray<SettingViolation>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class SettingsSources extends Context.Tag("wandb-effect/SettingsSources")<SettingsSources, {
  readonly load: Effect.Effect<LoadedSources>
}>() {}

/**
 * Parses the INI text of a settings file and returns the `[default]` section. Other sections, comments
 * (`#`, `;`) and blank lines are ignored; keys are lowercased, as Python's configparser does.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseIni = (text: string): Map<string, string> => {
  const values = new Map<string, string>()
  let section: string | undefined
  let lastKey: string | undefined
  for (const rawLine of text.split(/\r?\n/)) {
    if (/^\s*([#;]|$)/.test(rawLine)) continue
    const header = /^\s*\[([^\]]*)\]\s*$/.exec(rawLine)
    if (header !== null) {
      section = header[1]!.trim()
      lastKey = undefined
      continue
    }
    if (section !== "default") continue
    // An indented line continues the previous value, as configparser allows.
    if (/^\s/.test(rawLine) && lastKey !== undefined) {
      values.set(lastKey, `${values.get(lastKey)}\n${rawLine.trim()}`)
      continue
    }
    const pair = /^([^=:]+)[=:](.*)$/.exec(rawLine)
    if (pair === null) continue
    lastKey = pair[1]!.trim().toLowerCase()
    values.set(lastKey, pair[2]!.trim())
  }
  return values
}

const readSettingsFile = (
  fs: FileSystem.FileSystem,
  path: string,
  source: "global-file" | "workspace-file"
): Effect.Effect<
  { readonly values: SourceValues; readonly problems: Array<SettingViolation>; readonly had: boolean }
> =>
  fs.readFileString(path).pipe(
    Effect.map((text) => {
      const problems: Array<SettingViolation> = []
      const values: Array<SourceValues["values"][number]> = []
      for (const [name, raw] of parseIni(text)) {
        const key = keyOfOfficialName(name)
        // Keys we do not model (the official client has many more settings) are left alone, so a file
        // shared with the Python client keeps working.
        if (key === undefined || isCodeOnly(key)) continue
        if (key === "dir") {
          problems.push(
            new SettingViolation({
              setting: "dir",
              source: `${source} (${path})`,
              reason: "root_dir cannot be set in a settings file; use WANDB_DIR or init({ dir })"
            })
          )
          continue
        }
        values.push({ key, raw, origin: `${path} [default] ${name}` })
      }
      return { values: { source, values }, problems, had: values.length > 0 }
    }),
    Effect.catchAll((error) =>
      Effect.succeed({
        values: { source, values: [] },
        problems: error._tag === "SystemError" && error.reason === "NotFound"
          ? []
          : [new SettingViolation({ setting: "settings file", source: `${source} (${path})`, reason: error.message })],
        had: false
      })
    )
  )

/**
 * An environment variable through the current `ConfigProvider`; empty counts as unset.
 *
 * @since 0.1.0
 * @category constructors
 */
export const optionalEnv = (name: string): Effect.Effect<Option.Option<string>> =>
  Config.option(Config.string(name)).pipe(
    Effect.map(Option.filter((value) => value !== "")),
    Effect.orElseSucceed(() => Option.none<string>())
  )

const readEnvironment: Effect.Effect<SourceValues> = Effect.gen(function*() {
  const values: Array<SourceValues["values"][number]> = []
  for (const key of settingKeys) {
    for (const name of environmentNames(key)) {
      // An empty variable (`WANDB_MODE= npm start`) counts as unset, as shells make it easy to write.
      const raw = yield* optionalEnv(name)
      if (Option.isSome(raw)) {
        values.push({ key, raw: raw.value, origin: name })
        break
      }
    }
  }
  return { source: "environment", values }
})

/**
 * Builds the service from machine facts; files through `FileSystem`, variables through `Config`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (facts: MachineFacts, provider?: ConfigProvider.ConfigProvider) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path

    const load = Effect.gen(function*() {
      const configDir = yield* optionalEnv("WANDB_CONFIG_DIR")
      const home = Option.getOrElse(yield* optionalEnv("HOME"), () => facts.home)
      const globalPath = Option.match(configDir, {
        onNone: () => path.join(home, ".config", "wandb", "settings"),
        onSome: (dir) => path.join(dir, "settings")
      })
      // The workspace file is found from the working directory, never from WANDB_DIR or init({ dir }),
      // as in the official client.
      const dotWandb = path.join(facts.cwd, ".wandb")
      const useDot = yield* fs.exists(dotWandb).pipe(Effect.orElseSucceed(() => false))
      const workspacePath = path.join(facts.cwd, useDot ? ".wandb" : "wandb", "settings")

      const global = yield* readSettingsFile(fs, globalPath, "global-file")
      const workspace = yield* readSettingsFile(fs, workspacePath, "workspace-file")
      const environment = yield* readEnvironment

      return {
        machine: {
          dir: facts.cwd,
          host: facts.hostname,
          program: facts.program,
          username: facts.username,
          symlink: facts.platform !== "win32"
        },
        cwd: facts.cwd,
        sources: [global.values, workspace.values, environment],
        filesRead: [...(global.had ? [globalPath] : []), ...(workspace.had ? [workspacePath] : [])],
        violations: [...global.problems, ...workspace.problems]
      } satisfies LoadedSources
    })

    // Without a provider of its own the service reads whatever provider is current where init runs.
    return SettingsSources.of({ load: provider === undefined ? load : Effect.withConfigProvider(load, provider) })
  })

/**
 * The facts of this Node process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const nodeMachineFacts = (): MachineFacts => {
  let username: string | undefined
  try {
    username = os.userInfo().username
  } catch {
    username = undefined
  }
  return {
    cwd: process.cwd(),
    home: os.homedir(),
    hostname: os.hostname(),
    username,
    program: process.argv[1],
    platform: process.platform
  }
}

/**
 * Reads this process's working directory and host, the files under `HOME`, and the environment through
 * the current `ConfigProvider`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<SettingsSources, never, FileSystem.FileSystem | Path.Path> = Layer.effect(
  SettingsSources,
  Effect.suspend(() => make(nodeMachineFacts()))
)

/**
 * Given machine facts and environment variables, for tests: nothing of the real process leaks in.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWith = (
  facts: Partial<MachineFacts> & { readonly cwd: string },
  env: Readonly<Record<string, string>> = {}
): Layer.Layer<SettingsSources, never, FileSystem.FileSystem | Path.Path> =>
  Layer.effect(
    SettingsSources,
    make(
      {
        home: facts.cwd,
        hostname: "test-host",
        username: "tester",
        program: undefined,
        platform: "linux",
        ...facts
      },
      ConfigProvider.fromMap(new Map(Object.entries(env)))
    )
  )
