/**
 * The `wandb-effect` command line: `sync` uploads runs kept on disk, `ls` lists the runs of a wandb
 * directory with whether they are synced, `show` prints a transaction log's records as JSON lines.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type * as Terminal from "@effect/platform/Terminal"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { SDK_VERSION } from "../domain/Records.js"
import { recordToJson, TransactionLog } from "../layers/TransactionLog.js"
import type { WandbEnv } from "./Init.js"
import * as Sync from "./Sync.js"

/**
 * Raised to end the process with exit code 1 once every run was reported.
 *
 * @since 0.1.0
 * @category errors
 */
export class SomeRunsFailed extends Error {
  readonly _tag = "SomeRunsFailed"
}

const progressBar = (log: string, fraction: number) => {
  const width = 30
  const filled = Math.round(fraction * width)
  const name = log.split(/[\\/]/).slice(-2, -1)[0] ?? log
  process.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.round(fraction * 100)}% ${name}`)
}

const syncCommand = Command.make(
  "sync",
  {
    paths: Args.text({ name: "path" }).pipe(
      Args.withDescription("run directories, .wandb files or wandb directories (default: ./wandb)"),
      Args.repeated
    ),
    entity: Options.text("entity").pipe(Options.withDescription("upload into this entity"), Options.optional),
    project: Options.text("project").pipe(Options.withDescription("upload into this project"), Options.optional),
    includeSynced: Options.boolean("include-synced").pipe(
      Options.withDescription("sync runs already marked synced again")
    )
  },
  ({ entity, includeSynced, paths, project }) =>
    Effect.gen(function*() {
      const tty = process.stderr.isTTY === true
      const outcomes = yield* Sync.sync(paths, {
        entity: Option.getOrUndefined(entity),
        project: Option.getOrUndefined(project),
        includeSynced,
        onProgress: tty ? progressBar : undefined
      })
      if (tty) process.stderr.write("\r\u001b[K")
      if (outcomes.length === 0) yield* Console.log("No runs found to sync.")
      for (const outcome of outcomes) yield* Console.log(Sync.describeOutcome(outcome))
      const failed = outcomes.filter((outcome) => outcome.status === "failed").length
      if (failed > 0) {
        return yield* Effect.fail(new SomeRunsFailed(`${failed} of ${outcomes.length} runs failed to sync`))
      }
    })
).pipe(
  Command.withDescription(
    "Upload runs kept on disk (offline runs, or online runs that did not finish sending) to the server named " +
      "by WANDB_BASE_URL (default https://api.wandb.ai), with the key from WANDB_API_KEY or ~/.netrc"
  )
)

const lsCommand = Command.make(
  "ls",
  {
    dir: Args.text({ name: "dir" }).pipe(
      Args.withDescription("a wandb directory or run directory (default: ./wandb)"),
      Args.withDefault("wandb")
    )
  },
  ({ dir }) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const { logs } = yield* Sync.discover([dir], process.cwd())
      for (const log of logs) {
        const synced = yield* fs.exists(`${log}.synced`).pipe(Effect.orElseSucceed(() => false))
        yield* Console.log(`${synced ? "synced    " : "not synced"}  ${log}`)
      }
    })
).pipe(Command.withDescription("List the runs of a wandb directory and whether they are synced"))

const showCommand = Command.make(
  "show",
  { file: Args.text({ name: "file" }).pipe(Args.withDescription("a run-<id>.wandb file or its run directory")) },
  ({ file }) =>
    Effect.gen(function*() {
      const path = yield* Path.Path
      const log = yield* TransactionLog
      const [target] = (yield* Sync.discover([file], process.cwd())).logs
      if (target === undefined) return yield* Effect.fail(new SomeRunsFailed(`no .wandb file at ${file}`))
      const contents = yield* log.read(target)
      for (const entry of contents.records) yield* Console.log(JSON.stringify(recordToJson(entry.record)))
      if (Option.isSome(contents.damage)) {
        yield* Console.error(`${path.basename(target)}: ${contents.damage.value.message}`)
      }
    })
).pipe(Command.withDescription("Print a transaction log's records as JSON lines"))

const root = Command.make("wandb-effect").pipe(Command.withSubcommands([syncCommand, lsCommand, showCommand]))

/**
 * Runs the command line on `argv` (as `process.argv`).
 *
 * @since 0.1.0
 * @category programs
 */
export const run = (
  argv: ReadonlyArray<string>
): Effect.Effect<void, unknown, WandbEnv | Terminal.Terminal | CommandExecutor.CommandExecutor> =>
  Command.run(root, { name: "wandb-effect", version: SDK_VERSION })(argv)
