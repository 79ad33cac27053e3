/**
 * Starts `child.ts` with a controlled environment and a time limit, and collects what it reports.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ChildResult, ChildSpec } from "./Measurement.js"
import { RESULT_FD } from "./Measurement.js"

const childScript = path.join(import.meta.dirname, "child.ts")
const tsxLoader = import.meta.resolve("tsx")

export interface ChildOptions {
  readonly spec: ChildSpec
  /** The only `WANDB_*` variables the child sees. */
  readonly baseUrl: string
  readonly apiKey: string
  /** The child is killed (SIGKILL) when it has not exited by then. */
  readonly limitMs: number
  /** How long a child may stay alive after reporting before it is killed. */
  readonly exitGraceMs: number
  /** Extra node flags, e.g. `--cpu-prof`. */
  readonly nodeFlags?: ReadonlyArray<string> | undefined
}

export interface ChildOutcome {
  readonly pid: number | undefined
  readonly result: ChildResult | undefined
  readonly exitCode: number | null
  readonly signal: string | null
  /** Why the runner killed it, if it did. */
  readonly killed: "time limit" | "did not exit after reporting" | undefined
  readonly wallMs: number
  /** Milliseconds from the final result line to the exit. */
  readonly exitAfterReportMs: number | undefined
  /** Highest `VmHWM` of `/proc/<pid>/status`, read every 50 ms by the runner (Linux only). */
  readonly peakRssFromOutsideBytes: number | undefined
  readonly stdoutTail: string
  readonly stderrTail: string
}

const TAIL = 4000
const keepTail = (text: string) => (text.length > TAIL ? text.slice(-TAIL) : text)

/**
 * The child's whole environment: a PATH to find nothing in particular, HOME and cwd in its own temporary
 * directory (so no netrc or settings file of the machine is read), and the loopback server as W&B.
 */
const environment = (options: ChildOptions): Record<string, string> => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: options.spec.dir,
  ...(process.env.TMPDIR === undefined ? {} : { TMPDIR: process.env.TMPDIR }),
  WANDB_BASE_URL: options.baseUrl,
  WANDB_API_KEY: options.apiKey
})

export const runChild = (options: ChildOptions, onSpawn?: () => void): Promise<ChildOutcome> =>
  new Promise((resolve) => {
    const started = performance.now()
    const child = spawn(
      process.execPath,
      [
        ...(options.nodeFlags ?? []),
        "--import",
        tsxLoader,
        "--conditions=source",
        childScript,
        JSON.stringify(options.spec)
      ],
      { cwd: options.spec.dir, env: environment(options), stdio: ["ignore", "pipe", "pipe", "pipe"] }
    )
    onSpawn?.()
    let stdout = ""
    let stderr = ""
    let resultText = ""
    let result: ChildResult | undefined
    let reportedAt: number | undefined
    let killed: ChildOutcome["killed"]
    let graceTimer: NodeJS.Timeout | undefined

    child.stdout!.on("data", (chunk: Buffer) => (stdout = keepTail(stdout + chunk.toString("utf8"))))
    child.stderr!.on("data", (chunk: Buffer) => (stderr = keepTail(stderr + chunk.toString("utf8"))))
    const resultStream = child.stdio[RESULT_FD] as NodeJS.ReadableStream
    resultStream.on("data", (chunk: Buffer) => {
      resultText += chunk.toString("utf8")
      for (let newline = resultText.indexOf("\n"); newline !== -1; newline = resultText.indexOf("\n")) {
        result = JSON.parse(resultText.slice(0, newline)) as ChildResult
        resultText = resultText.slice(newline + 1)
        if (result.phase === "logged" || reportedAt !== undefined) continue
        reportedAt = performance.now()
        graceTimer = setTimeout(() => {
          killed = "did not exit after reporting"
          child.kill("SIGKILL")
        }, options.exitGraceMs)
      }
    })

    // The kernel's view of the child's memory, read from outside: still there when the child is killed.
    let peakFromOutside: number | undefined
    const readStatus = () => {
      try {
        const status = fs.readFileSync(`/proc/${child.pid}/status`, "utf8")
        const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status)
        if (hwm !== null) peakFromOutside = Math.max(peakFromOutside ?? 0, Number(hwm[1]) * 1024)
      } catch {
        // not Linux, or the child is gone: the child's own numbers stand alone
      }
    }
    const statusTimer = setInterval(readStatus, 50)

    const limit = setTimeout(() => {
      killed ??= "time limit"
      child.kill("SIGKILL")
    }, options.limitMs)

    child.on("exit", () => clearInterval(statusTimer))
    child.on("close", (exitCode, signal) => {
      clearTimeout(limit)
      clearTimeout(graceTimer)
      const ended = performance.now()
      resolve({
        pid: child.pid,
        result,
        exitCode,
        signal,
        killed,
        wallMs: ended - started,
        exitAfterReportMs: reportedAt === undefined ? undefined : ended - reportedAt,
        peakRssFromOutsideBytes: peakFromOutside,
        stdoutTail: stdout,
        stderrTail: stderr
      })
    })
  })
