/**
 * Finding the API key for the base URL. Sources, first found wins:
 *
 * 1. a key given to `init` (as an argument or in `init({ settings })`);
 * 2. `WANDB_API_KEY`;
 * 3. the netrc entry for the base URL's host (with `:port` when the URL has one), from the file named by
 *    `NETRC`, else `~/.netrc`, else `~/_netrc`;
 * 4. `api_key` in the workspace or global settings file.
 *
 * Variables are read through `Config` and files through `FileSystem`, so tests choose both.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as os from "node:os"
import * as nodePath from "node:path"
import { InvalidSettings, SettingViolation } from "../domain/Errors.js"
import * as Netrc from "../domain/Netrc.js"
import type { SettingsWithProvenance } from "../domain/Settings.js"
import { optionalEnv } from "./SettingsSources.js"

/**
 * A key and where it was found, for messages such as "the API key from netrc (/home/me/.netrc) is malformed".
 *
 * @since 0.1.0
 * @category models
 */
export interface Credential {
  readonly key: Redacted.Redacted<string>
  /** `init-argument (…)`, `environment (WANDB_API_KEY)`, `netrc (<path>)`, `global-file (…)`, … */
  readonly source: string
}

/**
 * Fails with `InvalidSettings`, naming where the key came from, when a found key is malformed: before any
 * request is made with it.
 *
 * @since 0.1.0
 * @category validation
 */
export const requireWellFormed = (credential: Credential): Effect.Effect<Credential, InvalidSettings> => {
  const problem = checkApiKey(Redacted.value(credential.key))
  return problem === undefined
    ? Effect.succeed(credential)
    : Effect.fail(
      new InvalidSettings({
        violations: [new SettingViolation({ setting: "apiKey", source: credential.source, reason: problem })]
      })
    )
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Credentials extends Context.Tag("wandb-effect/Credentials")<Credentials, {
  /** The key for `settings.baseUrl`, if any source has one. */
  readonly find: (settings: SettingsWithProvenance) => Effect.Effect<Option.Option<Credential>>
}>() {}

// -----------------------------------------------------------------------------
// key format
// -----------------------------------------------------------------------------

const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/
const KEY_CHARACTER = /[A-Za-z0-9_-]/

/**
 * What is wrong with a key's format, or `undefined` when it may be sent (protocol §2.2): a JWT (`x.y.z`)
 * passes; otherwise the part after an optional `prefix-` must be 40 or more of `[A-Za-z0-9_-]`. The
 * message never repeats the key; it names positions instead.
 *
 * @since 0.1.0
 * @category validation
 */
export const checkApiKey = (key: string): string | undefined => {
  if (key === "") return "API key is empty"
  if (key.trim() !== key) return "API key must not start or end with whitespace"
  if (JWT.test(key)) return undefined
  const dash = key.indexOf("-")
  const secret = dash === -1 ? key : key.slice(dash + 1)
  const offset = dash + 1
  const bad = [...secret].flatMap((c, i) => (KEY_CHARACTER.test(c) ? [] : [offset + i + 1]))
  if (bad.length > 0) {
    const where = bad.slice(0, 5).join(", ") + (bad.length > 5 ? ", …" : "")
    return `API key may only contain letters, digits, "_" and "-" after an optional "prefix-"; ` +
      `it has other characters at position${bad.length === 1 ? "" : "s"} ${where}`
  }
  if (secret.length < 40) return `API key must have 40+ characters, has ${secret.length}.`
  return undefined
}

// -----------------------------------------------------------------------------
// constructor
// -----------------------------------------------------------------------------

/**
 * Builds the service. `home` is used when `HOME` is unset.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  facts: { readonly home: string },
  provider?: ConfigProvider.ConfigProvider
): Effect.Effect<Context.Tag.Service<Credentials>, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem

    /** The netrc text and where it came from; none when there is no file to read. */
    const readNetrc = Effect.gen(function*() {
      const explicit = yield* optionalEnv("NETRC")
      const home = Option.getOrElse(yield* optionalEnv("HOME"), () => facts.home)
      const candidates = Option.match(explicit, {
        onSome: (file) => [file],
        onNone: () => [nodePath.join(home, ".netrc"), nodePath.join(home, "_netrc")]
      })
      for (const file of candidates) {
        const text = yield* fs.readFileString(file).pipe(
          Effect.map(Option.some),
          Effect.catchAll((error) =>
            error._tag === "SystemError" && error.reason === "NotFound"
              ? Effect.succeed(Option.none<string>())
              : Effect.as(Effect.logDebug(`cannot read ${file}: ${error.message}`), Option.none<string>())
          )
        )
        if (Option.isSome(text)) return Option.some({ file, text: text.value })
      }
      return Option.none<{ readonly file: string; readonly text: string }>()
    })

    const fromNetrc = (baseUrl: string) =>
      Effect.gen(function*() {
        const machine = Netrc.machineOf(baseUrl)
        const netrc = yield* readNetrc
        if (machine === undefined || Option.isNone(netrc)) return Option.none<Credential>()
        const entry = Netrc.lookup(Netrc.parse(netrc.value.text), machine)
        if (entry === undefined) return Option.none<Credential>()
        if (entry.password === undefined || entry.password === "") {
          yield* Effect.logWarning(`The netrc entry for ${machine} in ${netrc.value.file} has no password; ignored.`)
          return Option.none<Credential>()
        }
        return Option.some<Credential>({ key: Redacted.make(entry.password), source: `netrc (${netrc.value.file})` })
      })

    const find = (settings: SettingsWithProvenance) =>
      Effect.gen(function*() {
        const { apiKey, baseUrl } = settings
        const fromSettings = (): Option.Option<Credential> =>
          apiKey.value === undefined
            ? Option.none()
            : Option.some({ key: apiKey.value, source: `${apiKey.source} (${apiKey.origin})` })

        // Settings resolution already ranks init over the environment over the files; only netrc has to
        // be slotted in, between the environment and the files.
        switch (apiKey.source) {
          case "init-argument":
          case "init-settings":
          case "environment":
            return fromSettings()
        }
        const netrc = yield* fromNetrc(baseUrl.value)
        return Option.isSome(netrc) ? netrc : fromSettings()
      })

    return Credentials.of({ find: provider === undefined ? find : (s) => Effect.withConfigProvider(find(s), provider) })
  })

/**
 * Reads `NETRC` and `HOME` through the current `ConfigProvider`, falling back to this user's home.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Credentials, never, FileSystem.FileSystem> = Layer.effect(
  Credentials,
  Effect.suspend(() => make({ home: os.homedir() }))
)

/**
 * For tests: a fixed home and fixed variables, so nothing of the real user leaks in.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWith = (options: {
  readonly home: string
  readonly env?: Readonly<Record<string, string>> | undefined
}): Layer.Layer<Credentials, never, FileSystem.FileSystem> =>
  Layer.effect(
    Credentials,
    make({ home: options.home }, ConfigProvider.fromMap(new Map(Object.entries(options.env ?? {}))))
  )
