#!/usr/bin/env node
/**
 * The `wandb-effect` executable.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./programs/Cli.js"
import * as Wandb from "./Wandb.js"

Cli.run(process.argv).pipe(
  Effect.provide(Wandb.layer),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: false })
)
