import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as path from "node:path"
import { InvalidSettings, Wandb } from "wandb-effect"
import { parseRunMoment, type SettingKey } from "../src/domain/Settings.js"
import { parseIni } from "../src/layers/SettingsSources.js"
import { tempDir } from "./support/runFiles.js"

const writeFile = (file: string, text: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
}

const settingsOf = (options: Wandb.InitOptions, env: Record<string, string>, cwd: string, home = cwd) =>
  Effect.scoped(Effect.map(Wandb.init(options), (run) => run.settings)).pipe(
    Effect.provide(Wandb.layerTest({ cwd, env, home }))
  )

const violationsOf = (error: InvalidSettings) => error.violations.map((v) => `${v.setting} <- ${v.source}`)

describe("settings sources and precedence", () => {
  it.effect("each source overrides the ones below it, and every value keeps its source", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const home = tempDir()
      writeFile(
        path.join(home, ".config", "wandb", "settings"),
        "[default]\nbase_url = http://127.0.0.1:9\nentity = global-entity\nrun_group = global-group\n" +
          "run_job_type = global-job\nproject = global-project\n[other]\nproject = ignored\n"
      )
      writeFile(
        path.join(cwd, "wandb", "settings"),
        "[default]\nentity = workspace-entity\nrun_group = workspace-group\nrun_job_type = workspace-job\n" +
          "project = workspace-project\n"
      )
      const env = { WANDB_RUN_GROUP: "env-group", WANDB_JOB_TYPE: "env-job", WANDB_PROJECT: "env-project" }
      const settings = yield* settingsOf(
        {
          mode: "disabled",
          project: "arg-project",
          settings: { jobType: "settings-job", project: "settings-project" }
        },
        env,
        cwd,
        home
      )

      const seen = (key: SettingKey) => [settings[key].value, settings[key].source]
      expect(seen("initTimeout")).toEqual([90, "default"])
      expect(seen("baseUrl")).toEqual(["http://127.0.0.1:9", "global-file"])
      expect(seen("entity")).toEqual(["workspace-entity", "workspace-file"])
      expect(seen("group")).toEqual(["env-group", "environment"])
      expect(seen("jobType")).toEqual(["settings-job", "init-settings"])
      expect(seen("project")).toEqual(["arg-project", "init-argument"])
      expect(settings.group.origin).toBe("WANDB_RUN_GROUP")
      expect(settings.entity.origin).toContain(path.join(cwd, "wandb", "settings"))
    }))

  it.effect("WANDB_CONFIG_DIR moves the global settings file", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const configDir = tempDir()
      writeFile(path.join(configDir, "settings"), "[default]\nproject = from-config-dir\n")
      writeFile(path.join(cwd, ".config", "wandb", "settings"), "[default]\nproject = from-home\n")
      const settings = yield* settingsOf({ mode: "disabled" }, { WANDB_CONFIG_DIR: configDir }, cwd)
      expect(settings.project.value).toBe("from-config-dir")
      expect(settings.project.source).toBe("global-file")
    }))

  it.effect("environment values are parsed: booleans, numbers, comma lists, aliases", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const settings = yield* settingsOf({ mode: "disabled" }, {
        WANDB_SILENT: "yes",
        WANDB_QUIET: "0",
        WANDB_INIT_TIMEOUT: "12.5",
        WANDB_TAGS: "a,b",
        WANDB_NAME: "run-name",
        WANDB_NOTES: "some notes",
        WANDB_RUN_ID: "abc123",
        WANDB_REINIT: "true",
        WANDB_API_KEY: "k".repeat(40)
      }, cwd)
      expect(settings.silent.value).toBe(true)
      expect(settings.quiet.value).toBe(false)
      expect(settings.initTimeout.value).toBe(12.5)
      expect(settings.tags.value).toEqual(["a", "b"])
      expect(settings.name.value).toBe("run-name")
      expect(settings.notes.value).toBe("some notes")
      expect(settings.id.value).toBe("abc123")
      expect(settings.reinit.value).toBe("finish_previous")
      expect(Redacted.isRedacted(settings.apiKey.value)).toBe(true)
      expect(String(settings.apiKey.value)).not.toContain("kkkk")
    }))

  it.effect("WANDB_MODE=dryrun means offline; an unknown file key is left alone", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      writeFile(path.join(cwd, "wandb", "settings"), "[default]\nsome_future_setting = 1\nmode = disabled\n")
      const settings = yield* settingsOf({}, {}, cwd)
      expect(settings.mode.value).toBe("disabled")
      const offline = yield* settingsOf({ mode: "dryrun", dir: cwd }, {}, cwd)
      expect(offline.mode.value).toBe("offline")
    }))
})

describe("validation", () => {
  it.effect("one InvalidSettings lists every violation from every source, and nothing is written", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      writeFile(path.join(cwd, "bad.yaml"), "lr: [1, 2\n  nope: {")
      const error = yield* Effect.flip(
        Effect.scoped(Wandb.init({
          mode: "offline",
          project: "bad/name?",
          tags: ["ok", "", "x".repeat(65)],
          id: "a:b",
          jobType: "j".repeat(65),
          config: "bad.yaml",
          configIncludeKeys: ["a"],
          configExcludeKeys: ["b"],
          // @ts-expect-error: an unknown mode, as untyped callers may pass
          resume: "sometimes",
          settings: { initTimeout: -1 }
        })).pipe(
          Effect.provide(Wandb.layerTest({ cwd, env: { WANDB_SILENT: "maybe", WANDB_FINISH_TIMEOUT: "junk" } }))
        )
      )
      expect(error).toBeInstanceOf(InvalidSettings)
      const listed = violationsOf(error as InvalidSettings)
      for (
        const expected of [
          "project <- init-argument",
          "tags <- init-argument",
          "id <- init-argument",
          "jobType <- init-argument",
          "config <- init-argument",
          "configIncludeKeys, configExcludeKeys <- init-argument",
          "resume <- init-argument",
          "initTimeout <- init-settings",
          "silent <- environment (WANDB_SILENT)",
          "finishTimeout <- environment (WANDB_FINISH_TIMEOUT)"
        ]
      ) {
        expect(listed.some((line) => line.startsWith(expected)), `${expected} in ${listed.join(" | ")}`).toBe(true)
      }
      const tags = (error as InvalidSettings).violations.find((v) => v.setting === "tags")!
      expect(tags.reason).toContain("tag 1")
      expect(tags.reason).toContain("tag 2")
      expect(tags.reason).not.toContain("tag 0")
      expect((error as InvalidSettings).message).toContain("Invalid settings")
      expect(fs.existsSync(path.join(cwd, "wandb"))).toBe(false)
    }))

  it.effect("an unknown option, a wrong type and a malformed mode from the environment", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const error = yield* Effect.flip(
        // @ts-expect-error: checks what untyped callers get
        settingsOf({ mode: "offline", projekt: "typo", tags: "not-a-list", dir: cwd }, { WANDB_MODE: "ONLINE" }, cwd)
      )
      const listed = violationsOf(error as InvalidSettings)
      expect(listed.some((l) => l.startsWith("projekt <- init-argument"))).toBe(true)
      expect(listed.some((l) => l.startsWith("tags <- init-argument"))).toBe(true)
      expect(listed.some((l) => l.startsWith("mode <- environment (WANDB_MODE)"))).toBe(true)
    }))

  it.effect("resume, resumeFrom and forkFrom exclude each other; anonymous must is refused", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const error = yield* Effect.flip(
        settingsOf({ mode: "disabled", resume: "allow", forkFrom: "abc?_step=3", anonymous: "must" }, {}, cwd)
      )
      const listed = violationsOf(error as InvalidSettings)
      expect(listed.some((l) => l.startsWith("resume, forkFrom"))).toBe(true)
      expect(listed.some((l) => l.startsWith("anonymous"))).toBe(true)
    }))

  it.effect("a settings-file value that breaks a rule is reported with its file", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      writeFile(path.join(cwd, "wandb", "settings"), "[default]\nbase_url = https://wandb.ai\n")
      const error = yield* Effect.flip(settingsOf({ mode: "disabled" }, {}, cwd))
      const violation = (error as InvalidSettings).violations[0]!
      expect(violation.setting).toBe("baseUrl")
      expect(violation.source).toContain("workspace-file")
      expect(violation.reason).toContain("https://api.wandb.ai")
    }))
})

describe("names the server could not route", () => {
  it.effect("ids and projects made of dots, and a base URL carrying a password, are refused", () =>
    Effect.gen(function*() {
      const cwd = tempDir()
      const error = yield* Effect.flip(
        settingsOf({ mode: "disabled", id: "..", project: "." }, { WANDB_BASE_URL: "http://u:secret@127.0.0.1:1" }, cwd)
      )
      const listed = (error as InvalidSettings).violations.map((v) => v.setting)
      expect(listed).toEqual(expect.arrayContaining(["id", "project", "baseUrl"]))
      expect((error as InvalidSettings).message).not.toContain("secret")
    }))
})

describe("parsers", () => {
  it("reads only the [default] section of an INI file", () => {
    const values = parseIni("# comment\n[default]\nProject = p\nentity: e\n; other\n[x]\nproject = no\n")
    expect([...values]).toEqual([["project", "p"], ["entity", "e"]])
  })

  it("parses run moments and refuses malformed ones", () => {
    expect(parseRunMoment("abc?_step=12")).toEqual({ ok: true, value: { run: "abc", metric: "_step", value: 12 } })
    expect(parseRunMoment("abc?_step=1.5")).toMatchObject({ ok: true, value: { value: 1.5 } })
    const malformed = ["x?metric=1", "x?_step=abc", "x/metric?_step=1", "x?_step=1&metric=1", "x?_step=1#f", "?_step=1"]
    for (const bad of malformed) {
      expect(parseRunMoment(bad).ok, bad).toBe(false)
    }
  })
})
