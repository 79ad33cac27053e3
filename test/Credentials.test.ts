import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Netrc from "../src/domain/Netrc.js"
import type { SettingKey, SettingSource, SettingsWithProvenance } from "../src/domain/Settings.js"
import * as Settings from "../src/domain/Settings.js"
import * as Credentials from "../src/layers/Credentials.js"
import { tempDir } from "./support/runFiles.js"

const key = (c: string, prefix = "") => `${prefix}${c.repeat(40)}`

const KEYS = { init: key("i"), env: key("e"), netrc: key("n"), file: key("f") }

const tempHome = () => tempDir("wandb-effect-credentials-")

const write = (file: string, text: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
}

type Given = ReadonlyArray<readonly [SettingSource, SettingKey, unknown, string]>

/** Settings resolved from the given values, each with its source and origin. */
const settingsOf = (given: Given): SettingsWithProvenance => {
  const sources: Array<Settings.SourceValues> = given.map(([source, k, raw, origin]) => ({
    source,
    values: [{ key: k, raw, origin }]
  }))
  const machine = { dir: "/tmp", host: "test-host", program: undefined, username: "tester", symlink: true }
  const resolved = Settings.resolve(machine, sources)
  if (resolved._tag === "Left") throw new Error(resolved.left.message)
  return resolved.right
}

const BASE = ["default", "baseUrl", "http://127.0.0.1:8080", "test"] as const

const find = (given: Given, options: { readonly home: string; readonly env?: Record<string, string> }) =>
  Effect.gen(function*() {
    const credentials = yield* Credentials.Credentials
    return yield* credentials.find(settingsOf([BASE, ...given]))
  }).pipe(Effect.provide(Credentials.layerWith(options).pipe(Layer.provide(NodeFileSystem.layer))))

const found = (result: Option.Option<Credentials.Credential>) =>
  Option.map(result, (c) => ({ key: Redacted.value(c.key), source: c.source }))

const netrcFor = (machine: string, password: string) => `machine ${machine}\n  login user\n  password ${password}\n`

describe("Credentials.find", () => {
  const everySource: Given = [
    ["global-file", "apiKey", KEYS.file, "/home/u/.config/wandb/settings [default] api_key"],
    ["environment", "apiKey", KEYS.env, "WANDB_API_KEY"],
    ["init-argument", "apiKey", KEYS.init, "init({ apiKey })"]
  ]

  it.effect("an explicit key from init comes first", () =>
    Effect.gen(function*() {
      const home = tempHome()
      write(path.join(home, ".netrc"), netrcFor("127.0.0.1:8080", KEYS.netrc))
      expect(found(yield* find(everySource, { home }))).toEqual(
        Option.some({ key: KEYS.init, source: "init-argument (init({ apiKey }))" })
      )
      const viaSettings: Given = [everySource[0]!, ["init-settings", "apiKey", KEYS.init, "init({ settings })"]]
      expect(found(yield* find(viaSettings, { home }))).toEqual(
        Option.some({ key: KEYS.init, source: "init-settings (init({ settings }))" })
      )
    }))

  it.effect("then WANDB_API_KEY, then netrc, then the settings files", () =>
    Effect.gen(function*() {
      const home = tempHome()
      write(path.join(home, ".netrc"), netrcFor("127.0.0.1:8080", KEYS.netrc))
      const file = everySource[0]!

      expect(found(yield* find(everySource.slice(0, 2), { home }))).toEqual(
        Option.some({ key: KEYS.env, source: "environment (WANDB_API_KEY)" })
      )
      expect(found(yield* find([file], { home }))).toEqual(
        Option.some({ key: KEYS.netrc, source: `netrc (${path.join(home, ".netrc")})` })
      )
      fs.rmSync(path.join(home, ".netrc"))
      expect(found(yield* find([file], { home }))).toEqual(
        Option.some({ key: KEYS.file, source: "global-file (/home/u/.config/wandb/settings [default] api_key)" })
      )
      expect(yield* find([], { home })).toEqual(Option.none())
    }))

  it.effect("the netrc machine is the base URL's host with its port", () =>
    Effect.gen(function*() {
      const home = tempHome()
      write(path.join(home, ".netrc"), netrcFor("127.0.0.1", key("a")) + netrcFor("127.0.0.1:9090", key("b")))
      expect(yield* find([], { home })).toEqual(Option.none())

      write(path.join(home, ".netrc"), netrcFor("127.0.0.1", key("a")) + netrcFor("127.0.0.1:8080", key("c")))
      expect(Option.map(yield* find([], { home }), (c) => Redacted.value(c.key))).toEqual(Option.some(key("c")))

      const portless: Given = [["environment", "baseUrl", "http://127.0.0.1/wandb", "WANDB_BASE_URL"]]
      expect(Option.map(yield* find(portless, { home }), (c) => Redacted.value(c.key))).toEqual(Option.some(key("a")))
    }))

  it.effect("NETRC names the file; then ~/.netrc, then ~/_netrc; HOME moves the home", () =>
    Effect.gen(function*() {
      const home = tempHome()
      const elsewhere = path.join(tempHome(), "credentials")
      write(path.join(home, "_netrc"), netrcFor("127.0.0.1:8080", key("u")))
      const keyOf = (result: Option.Option<Credentials.Credential>) => Option.map(result, (c) => Redacted.value(c.key))

      expect(keyOf(yield* find([], { home }))).toEqual(Option.some(key("u")))
      write(path.join(home, ".netrc"), netrcFor("127.0.0.1:8080", key("d")))
      expect(keyOf(yield* find([], { home }))).toEqual(Option.some(key("d")))

      write(elsewhere, netrcFor("127.0.0.1:8080", key("x")))
      const named = yield* find([], { home, env: { NETRC: elsewhere } })
      expect(found(named)).toEqual(Option.some({ key: key("x"), source: `netrc (${elsewhere})` }))
      // a NETRC naming a missing file means no netrc, not a fallback to the home directory's
      expect(yield* find([], { home, env: { NETRC: `${elsewhere}.missing` } })).toEqual(Option.none())

      const otherHome = tempHome()
      write(path.join(otherHome, ".netrc"), netrcFor("127.0.0.1:8080", key("h")))
      expect(keyOf(yield* find([], { home, env: { HOME: otherHome } }))).toEqual(Option.some(key("h")))
    }))

  it.effect("an entry without a password is skipped and the settings file's key is used", () =>
    Effect.gen(function*() {
      const home = tempHome()
      write(path.join(home, ".netrc"), "machine 127.0.0.1:8080 login user\n")
      const file: Given = [["workspace-file", "apiKey", KEYS.file, "wandb/settings [default] api_key"]]
      expect(found(yield* find(file, { home }))).toEqual(
        Option.some({ key: KEYS.file, source: "workspace-file (wandb/settings [default] api_key)" })
      )
    }))
})

describe("Netrc", () => {
  it("entries across lines and on one line, comments, quoted tokens, macdef bodies and default", () => {
    const text = [
      "# written by hand",
      "machine api.wandb.ai",
      "  login user",
      "  password abc123 # trailing comment",
      "macdef init",
      "  machine not.an.entry password nope",
      "",
      "machine localhost:8080 login \"a user\" password \"with \\\"quote\\\"\" account acct",
      "default login anon password fallback"
    ].join("\n")
    expect(Netrc.parse(text)).toEqual([
      { machine: "api.wandb.ai", login: "user", password: "abc123", account: undefined },
      { machine: "localhost:8080", login: "a user", password: "with \"quote\"", account: "acct" },
      { machine: undefined, login: "anon", password: "fallback", account: undefined }
    ])
  })

  it("lookup: the named machine regardless of case, the last of duplicates, else default", () => {
    const entries = Netrc.parse(
      "machine Host.Example password one\nmachine host.example password two\ndefault password three\n"
    )
    expect(Netrc.lookup(entries, "HOST.example")?.password).toBe("two")
    expect(Netrc.lookup(entries, "other")?.password).toBe("three")
    expect(Netrc.lookup(Netrc.parse("machine a password b"), "c")).toBeUndefined()
  })

  it("machineOf: host plus the port as written", () => {
    expect(Netrc.machineOf("https://api.wandb.ai")).toBe("api.wandb.ai")
    expect(Netrc.machineOf("http://localhost:8080/wandb/")).toBe("localhost:8080")
    expect(Netrc.machineOf("https://api.wandb.ai:443")).toBe("api.wandb.ai:443")
    expect(Netrc.machineOf("http://user:secret@127.0.0.1:9000")).toBe("127.0.0.1:9000")
    expect(Netrc.machineOf("http://[::1]:8080/x")).toBe("[::1]:8080")
    expect(Netrc.machineOf("api.wandb.ai")).toBeUndefined()
  })
})

describe("checkApiKey", () => {
  it("accepts 40+ key characters with or without a prefix, and JWTs", () => {
    const accepted = [
      key("a"),
      key("Z", "local-"),
      `wandb_v1_${"x".repeat(77)}`,
      `pre-${"a-b_".repeat(10)}`,
      "a_b".repeat(14),
      "eyJh.eyJz.sig"
    ]
    for (const ok of accepted) expect(Credentials.checkApiKey(ok)).toBeUndefined()
  })

  it("says what is wrong without repeating the key", () => {
    expect(Credentials.checkApiKey("invalid-api-key")).toBe("API key must have 40+ characters, has 7.")
    expect(Credentials.checkApiKey("a".repeat(39))).toBe("API key must have 40+ characters, has 39.")
    expect(Credentials.checkApiKey(`local-${"a".repeat(39)}`)).toBe("API key must have 40+ characters, has 39.")
    expect(Credentials.checkApiKey("")).toBe("API key is empty")
    expect(Credentials.checkApiKey(` ${key("a")}`)).toBe("API key must not start or end with whitespace")

    const secret = `${"s".repeat(20)}!${"s".repeat(20)}`
    const problem = Credentials.checkApiKey(secret)
    assert(problem !== undefined)
    expect(problem).toContain("position 21")
    expect(problem).not.toContain("ssssss")
    expect(Credentials.checkApiKey(`pre-${"k".repeat(40)}$$`)).toContain("positions 45, 46")
  })
})
