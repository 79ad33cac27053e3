#!/usr/bin/env node
/**
 * The `wandb-effect` executable.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Cli from "./programs/Cli.js"
import * as Wandb from "./Wandb.js"

// Failures are told in one line, as a command line should, and end the process with exit code 1.
Cli.run(process.argv).pipe(
  Effect.tapErrorCause((cause) =>
    Effect.sync(() => {
      if (Cause.isInterruptedOnly(cause)) return
      const error = Cause.squash(cause)
      // The command line parser has already explained a bad argument, with the usage.
      if (ValidationError.isValidationError(error)) return
      process.stderr.write(`wandb-effect: ${error instanceof Error ? error.message : String(error)}\n`)
    })
  ),
  Effect.provide(Wandb.layer),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
