/**
 * What the runner asks a child for and what the child reports back, as plain JSON.
 */
import type { Quantiles } from "./LatencyHistogram.js"
import type { ConnectionAttempt } from "./loopbackOnly.js"

export type Sdk = "wandb-effect" | "@wandb/sdk"

export type Task =
  /** Loads the child's own modules and nothing else: the floor every other child's memory stands on. */
  | { readonly kind: "baseline" }
  /** Imports the SDK, then times `init` (and an untimed-in-the-target `finish`) `repeats` times. */
  | { readonly kind: "init"; readonly mode: "online" | "offline"; readonly repeats: number }
  /** One run: `rows` calls of `log`, each timed, then `finish`. */
  | { readonly kind: "log"; readonly rows: number }

export interface ChildSpec {
  readonly sdk: Sdk
  readonly task: Task
  readonly project: string
  /** ID of the (first) run, so the runner can find it on the server. */
  readonly runId: string
  /** A fresh temporary directory: the child's cwd, HOME and run directory. */
  readonly dir: string
  /**
   * When profiling: where to write the source maps of the repository's TypeScript modules the child loaded,
   * so `profile.ts` can name the lines tsx's compact output hides.
   */
  readonly sourceMapsTo?: string | undefined
  /**
   * When heap profiling: the path, without extension, of the sampling heap profiles (Chrome DevTools format)
   * to write. `live-at-peak`: one `.heapprofile` of the allocations still live at the child's highest RSS.
   * `allocated`: one `.<phase>.heapprofile` for the logging loop and one for `finish`, of everything
   * allocated in the phase, collected or not (where the garbage collector's work comes from).
   */
  readonly heapProfileTo?: string | undefined
  readonly heapProfileMode?: "live-at-peak" | "allocated" | undefined
}

export interface InitTiming {
  readonly initMs: number
  readonly finishMs: number
  readonly runId: string
}

export interface LoopTiming {
  readonly rows: number
  /** `performance.now()` around an empty statement, the timer's own cost. */
  readonly timer: Quantiles
  /** `performance.now()` around `run.log(row)`, timer cost included. */
  readonly log: Quantiles
  /** Wall time of the whole logging loop, row construction and timing included. */
  readonly loopMs: number
  /** Unix epoch milliseconds (sub-millisecond precision) just before the first `log` call. */
  readonly firstLogAt: number
  readonly lastLogAt: number
  /** Loop start and end on the monotonic clock of CPU profiles, in microseconds. */
  readonly loopStartUs: number
  readonly loopEndUs: number
}

export interface LogTiming extends LoopTiming {
  /** Time `await run.finish()` took, started right after the last row. */
  readonly finishMs: number
  readonly finishedAt: number
  readonly finishStartUs: number
  readonly finishEndUs: number
  /** What `finish` resolved to (ours: `FinishResult`; @wandb/sdk: nothing). */
  readonly finishResult: unknown
}

/** Where the child is: before the SDK loads, loading it, starting the run(s), timing the timer, logging… */
export type Phase = "start" | "import" | "init" | "timer" | "loop" | "finish" | "end"

/** `process.memoryUsage()` at the highest RSS sampled in a phase. */
export interface PhasePeak {
  readonly rssBytes: number
  readonly heapUsedBytes: number
  readonly heapTotalBytes: number
  /** C++ objects bound to JS ones, `arrayBuffersBytes` (Buffers, typed arrays) included. */
  readonly externalBytes: number
  readonly arrayBuffersBytes: number
}

export interface Memory {
  /** Highest `process.memoryUsage.rss()` seen: every 5 ms by a timer, every 8192 rows, and at the end. */
  readonly peakSampledRssBytes: number
  readonly samples: number
  /** `process.resourceUsage().maxRSS`, converted from KiB to bytes: the kernel's high-water mark. */
  readonly maxRssBytes: number
  readonly heapUsedAtEndBytes: number
  readonly peaks: Partial<Record<Phase, PhasePeak>>
}

export interface ChildResult {
  readonly sdk: Sdk
  readonly task: Task
  /** `logged`: sent before `finish`, replaced by the `done` line if the child gets that far. */
  readonly phase: "logged" | "done" | "failed"
  readonly importMs: number
  readonly inits?: ReadonlyArray<InitTiming> | undefined
  readonly logRun?: LoopTiming | LogTiming | undefined
  readonly memory: Memory
  readonly connections: ReadonlyArray<ConnectionAttempt>
  readonly error?: string | undefined
}

/**
 * The child writes its results as JSON lines on this file descriptor, the last one counting; stdout and
 * stderr stay the SDK's.
 */
export const RESULT_FD = 3
