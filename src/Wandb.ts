/**
 * The Effect API of wandb-effect.
 *
 * ```ts
 * import { Wandb } from "wandb-effect"
 *
 * const program = Effect.scoped(
 *   Effect.gen(function*() {
 *     const run = yield* Wandb.init({ project: "demo", config: { lr: 0.01 } })
 *     yield* run.log({ loss: 0.5 })
 *   })
 * ).pipe(Effect.provide(Wandb.layer))
 * ```
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Layer from "effect/Layer"
import * as ConsoleCapture from "./layers/ConsoleCapture.js"
import * as Credentials from "./layers/Credentials.js"
import * as RunDirectory from "./layers/RunDirectory.js"
import * as ServerApi from "./layers/ServerApi.js"
import * as SettingsSources from "./layers/SettingsSources.js"
import * as SystemMonitor from "./layers/SystemMonitor.js"
import * as TransactionLog from "./layers/TransactionLog.js"
import type { WandbEnv } from "./programs/Init.js"

export {
  /**
   * Starts a run in the current scope; see `Run`.
   *
   * @since 0.1.0
   * @category constructors
   */
  init,
  type WandbEnv
} from "./programs/Init.js"

export {
  /**
   * Uploads runs kept on disk; see `Sync.sync`.
   *
   * @since 0.1.0
   * @category programs
   */
  sync,
  type SyncOptions,
  type SyncOutcome
} from "./programs/Sync.js"

export type { FinishOptions, FinishResult, LogOptions, Run, RunConfigAccess, RunSummaryAccess } from "./programs/Run.js"
export type { InitOptions } from "./domain/InitOptions.js"

/**
 * Everything `init` needs on Node: this process's settings sources, the file system, the run directory
 * and transaction log.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<WandbEnv> = Layer.mergeAll(
  SettingsSources.layer,
  ConsoleCapture.layer,
  SystemMonitor.layer,
  Credentials.layer,
  RunDirectory.layer,
  TransactionLog.layer,
  ServerApi.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
).pipe(Layer.provideMerge(NodeContext.layer))

/**
 * For tests: the real file system under `cwd` and real HTTP, with the given environment variables in
 * place of the process's (nothing of the real environment or home directory leaks in). Point
 * `WANDB_BASE_URL` at a test server.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest = (options: {
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly home?: string | undefined
  /** Capture the process's console output (off by default: the test runner owns it). */
  readonly captureConsole?: boolean | undefined
}): Layer.Layer<WandbEnv> =>
  Layer.mergeAll(
    SettingsSources.layerWith({ cwd: options.cwd, home: options.home ?? options.cwd }, options.env),
    options.captureConsole === true ? ConsoleCapture.layer : ConsoleCapture.layerNoop,
    SystemMonitor.layer,
    Credentials.layerWith({ home: options.home ?? options.cwd, env: options.env }),
    RunDirectory.layer,
    TransactionLog.layer,
    ServerApi.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
  ).pipe(Layer.provideMerge(NodeContext.layer))
