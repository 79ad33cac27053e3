/**
 * Command-line flags for the Iris example: each hyperparameter can be overridden by a flag of the same name,
 * as in `--epochs 50 --learning_rate 0.1`. Flags that are not given are left out, so merging the result over
 * the defaults gives the run's config.
 */
import { parseArgs } from "node:util"
import type { TrainingConfig } from "./train.js"

type FlagName = keyof TrainingConfig

interface FlagRule {
  readonly accepts: (value: number) => boolean
  readonly expected: string
}

const isPositiveInteger = (value: number) => Number.isInteger(value) && value >= 1

const rules: { readonly [Name in FlagName]: FlagRule } = {
  learning_rate: { accepts: (value) => value > 0, expected: "a number above 0" },
  epochs: { accepts: isPositiveInteger, expected: "a whole number of at least 1" },
  hidden_size: { accepts: isPositiveInteger, expected: "a whole number of at least 1" },
  batch_size: { accepts: isPositiveInteger, expected: "a whole number of at least 1" },
  // The generators take 32-bit seeds; a larger one would silently collide with a smaller one.
  seed: {
    accepts: (value) => Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff,
    expected: "a whole number from 0 to 4294967295"
  },
  momentum: { accepts: (value) => value >= 0 && value < 1, expected: "a number from 0 up to, not including, 1" }
}

/** A flag that is unknown, lacks a value, or has a value outside its range. */
export class FlagError extends Error {
  override readonly name = "FlagError"
}

/** The flags given in `args` (without the node and script paths), each checked and converted to a number. */
export const parseTrainingFlags = (args: ReadonlyArray<string>): Partial<TrainingConfig> => {
  let values: Record<string, unknown>
  try {
    values = parseArgs({
      args: [...args],
      options: Object.fromEntries(Object.keys(rules).map((name) => [name, { type: "string" as const }])),
      strict: true,
      allowPositionals: false
    }).values
  } catch (error) {
    throw new FlagError(error instanceof Error ? error.message : String(error))
  }

  const flags: { -readonly [Name in FlagName]?: number } = {}
  for (const name of Object.keys(rules) as Array<FlagName>) {
    const text = values[name]
    if (typeof text !== "string") continue
    const value = text.trim() === "" ? Number.NaN : Number(text)
    if (!Number.isFinite(value) || !rules[name].accepts(value)) {
      throw new FlagError(`--${name} must be ${rules[name].expected}, got "${text}"`)
    }
    flags[name] = value
  }
  return flags
}
