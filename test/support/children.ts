/**
 * Runs TypeScript programs of this repository as real child processes, the way a user runs them.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

export const repoRoot = path.resolve(import.meta.dirname, "..", "..")

// The children run from their own temp dir, so tsx's loader is named by its absolute location.
const tsxLoader = pathToFileURL(path.join(repoRoot, "node_modules", "tsx", "dist", "loader.mjs")).href

/** The environment of the test process without any WANDB_* variable of the machine. */
export const cleanEnv = (): Record<string, string> =>
  Object.fromEntries(
    Object.entries(process.env).filter((entry): entry is [string, string] =>
      !entry[0].startsWith("WANDB_") && entry[1] !== undefined
    )
  )

export const startProgram = (
  script: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: Record<string, string> }
): ChildProcess =>
  spawn(process.execPath, ["--import", tsxLoader, "--conditions=source", path.resolve(repoRoot, script), ...args], {
    cwd: options.cwd,
    env: { ...cleanEnv(), HOME: options.cwd, ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })

export interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export const watch = (child: ChildProcess) => {
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (chunk) => (stdout += chunk))
  child.stderr!.on("data", (chunk) => (stderr += chunk))
  const ended = new Promise<Ended>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  const waitFor = (pattern: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = stdout.match(pattern)
        if (match !== null) {
          child.stdout!.off("data", check)
          resolve(match)
        }
      }
      child.stdout!.on("data", check)
      child.on("close", () => reject(new Error(`exited before ${pattern}: ${stderr}`)))
      check()
    })
  return { ended, waitFor, output: () => stdout }
}

/** Runs a program to its end. */
export const runProgram = (
  script: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: Record<string, string> }
): Promise<Ended> => watch(startProgram(script, args, options)).ended
