/**
 * One measurement, in a process of its own so its memory numbers are its own. Started by `run.ts` as
 *
 *   node --import tsx --conditions=source bench/child.ts '<ChildSpec as JSON>'
 *
 * for both SDKs alike. The SDK is reached the way its users reach it: `wandb-effect/promise` (the Promise
 * facade, from source through the "source" export condition) and `@wandb/sdk` (its published build). Both
 * are configured by the environment the runner gives (`WANDB_BASE_URL`, `WANDB_API_KEY`) plus `silent`.
 * Results go to file descriptor 3 as JSON lines: one when the logging loop is done, one at the end.
 */
import { connectionAttempts } from "./loopbackOnly.js"
import * as fs from "node:fs"
import * as inspector from "node:inspector"
import { findSourceMap } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { LatencyHistogram } from "./LatencyHistogram.js"
import type {
  ChildResult,
  ChildSpec,
  InitTiming,
  LogTiming,
  LoopTiming,
  Memory,
  Phase,
  PhasePeak
} from "./Measurement.js"
import { RESULT_FD } from "./Measurement.js"

const spec = JSON.parse(process.argv[2] ?? "") as ChildSpec

/** What the child is doing, so each memory peak can be put down to a phase. */
let phase: Phase = "start"

// ---------------------------------------------------------------------------------------------------------------
// Heap profiles, when asked for (see `ChildSpec.heapProfileMode`). At the highest RSS: the live sampled
// allocations are read each time the RSS has grown by 16 MB since the last reading, and the last reading
// is kept. Allocated: sampling that keeps collected objects runs through each profiled phase.
// ---------------------------------------------------------------------------------------------------------------

const heapMode = spec.heapProfileTo === undefined ? undefined : spec.heapProfileMode ?? "live-at-peak"
const heapSession = heapMode === undefined ? undefined : new inspector.Session()
const heapProfiles = new Map<string, { readonly profile: unknown; readonly rssBytes: number; readonly phase: Phase }>()
const ALLOCATION_PHASES: ReadonlyArray<Phase> = ["loop", "finish"]
let heapProfileRss = 0

// An inspector session on its own thread answers synchronously.
const heapCommand = (method: string, params?: object): unknown => {
  let failure: Error | null = null
  let result: unknown
  heapSession!.post(method, params, (error, answer) => {
    failure = error
    result = answer
  })
  if (failure !== null) throw failure
  return result
}
const startSampling = (keepCollected: boolean) =>
  heapCommand("HeapProfiler.startSampling", {
    samplingInterval: 32768,
    includeObjectsCollectedByMajorGC: keepCollected,
    includeObjectsCollectedByMinorGC: keepCollected
  })
const sampledProfile = () => (heapCommand("HeapProfiler.getSamplingProfile") as { profile: unknown }).profile

if (heapSession !== undefined) {
  heapSession.connect()
  heapCommand("HeapProfiler.enable")
  if (heapMode === "live-at-peak") startSampling(false)
}

const readLiveProfile = (rss: number) => {
  heapProfileRss = rss
  heapProfiles.set("", { profile: sampledProfile(), rssBytes: rss, phase })
}

/** In `allocated` mode: ends the profile of the phase being left and starts one for the phase entered. */
const switchAllocationProfile = (next: Phase) => {
  if (heapMode !== "allocated") return
  if (ALLOCATION_PHASES.includes(phase)) {
    heapProfiles.set(`.${phase}`, { profile: sampledProfile(), rssBytes: process.memoryUsage.rss(), phase })
    heapCommand("HeapProfiler.stopSampling")
  }
  if (ALLOCATION_PHASES.includes(next)) startSampling(true)
}

// ---------------------------------------------------------------------------------------------------------------
// Memory: a timer every 5 ms, plus explicit samples from the logging loop, which never yields to the timer
// ---------------------------------------------------------------------------------------------------------------

const peaks: Partial<Record<Phase, PhasePeak>> = {}
let peakRss = 0
let rssSamples = 0

const sampleRss = () => {
  const rss = process.memoryUsage.rss()
  rssSamples++
  if (rss > peakRss) peakRss = rss
  if (heapMode === "live-at-peak" && rss > heapProfileRss + 16 * 1024 * 1024) readLiveProfile(rss)
  const current = peaks[phase]
  // The full breakdown costs more than the RSS alone, so it is taken at a phase's new highs only.
  if (current === undefined || rss > current.rssBytes) {
    const usage = process.memoryUsage()
    peaks[phase] = {
      rssBytes: rss,
      heapUsedBytes: usage.heapUsed,
      heapTotalBytes: usage.heapTotal,
      externalBytes: usage.external,
      arrayBuffersBytes: usage.arrayBuffers
    }
  }
}
sampleRss()
const sampler = setInterval(sampleRss, 5)
sampler.unref()

const enter = (next: Phase) => {
  sampleRss()
  switchAllocationProfile(next)
  phase = next
  sampleRss()
}

const memory = (): Memory => {
  sampleRss()
  return {
    peakSampledRssBytes: peakRss,
    samples: rssSamples,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    heapUsedAtEndBytes: process.memoryUsage().heapUsed,
    peaks
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The two SDKs behind one shape
// ---------------------------------------------------------------------------------------------------------------

interface BenchRun {
  log(row: Record<string, number>): void
  finish(): Promise<unknown>
}

interface Client {
  init(runId: string, mode: "online" | "offline"): Promise<BenchRun>
}

const loadClient = async (): Promise<Client> => {
  if (spec.sdk === "wandb-effect") {
    const wandb = (await import("wandb-effect/promise")).default
    return {
      init: async (id, mode) => {
        const run = await wandb.init({ project: spec.project, id, mode, dir: spec.dir, settings: { silent: true } })
        return { log: (row) => run.log(row), finish: () => run.finish() }
      }
    }
  }
  // @wandb/sdk: no `dir` (it writes nothing locally) and no offline mode worth timing (it still calls the
  // server at init); a config would make it throw, so none is given to either SDK.
  // Its settings type wants `baseUrl`; the value is the environment's, which it would read anyway.
  const baseUrl = process.env["WANDB_BASE_URL"]
  if (baseUrl === undefined) throw new Error("WANDB_BASE_URL must name the loopback server")
  const wandb = (await import("@wandb/sdk")).default
  return {
    init: async (id) => {
      const run = await wandb.init({ project: spec.project, id, settings: { baseUrl, silent: true } })
      return { log: (row) => run.log(row), finish: () => run.finish() }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------------------------

const epochNow = () => performance.timeOrigin + performance.now()
/** The monotonic clock V8's CPU profiles are stamped with, in microseconds. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n)

const timeInits = async (client: Client, mode: "online" | "offline", repeats: number) => {
  const inits: Array<InitTiming> = []
  for (let i = 0; i < repeats; i++) {
    const runId = i === 0 ? spec.runId : `${spec.runId}-${i}`
    const t0 = performance.now()
    const run = await client.init(runId, mode)
    const t1 = performance.now()
    await run.finish()
    const t2 = performance.now()
    inits.push({ initMs: t1 - t0, finishMs: t2 - t1, runId })
  }
  return inits
}

/** Ten numbers per row, a mix of integers and fractions, as a training loop's metrics are. */
const rowAt = (i: number, rows: number): Record<string, number> => ({
  epoch: Math.floor(i / 1000),
  batch: i % 1000,
  loss: 1 / (1 + i * 1e-3),
  accuracy: i / rows,
  learning_rate: 0.001 * 0.5 ** Math.floor(i / 100_000),
  grad_norm: 1 + Math.sin(i),
  weight_norm: 10 + Math.cos(i) * 0.01,
  tokens: i * 512,
  throughput: 1000 + (i % 37),
  val_loss: 0.5 + 1 / (2 + i)
})

/** `logged` is told the loop's numbers before `finish` starts, so a child killed in `finish` still has them. */
const timeLog = async (client: Client, rows: number, logged: (loop: LoopTiming) => void): Promise<LogTiming> => {
  enter("init")
  const run = await client.init(spec.runId, "online")
  if (spec.sourceMapsTo !== undefined) process.setSourceMapsEnabled(false)
  enter("timer")

  // The timer's own cost, measured with the same loop shape on an empty statement.
  const timer = new LatencyHistogram()
  for (let i = 0; i < rows; i++) {
    const row = rowAt(i, rows)
    const t0 = performance.now()
    const t1 = performance.now()
    timer.record(t1 - t0)
    if (row.epoch < 0) throw new Error("unreachable: keeps the row alive like the logging loop does")
  }

  const log = new LatencyHistogram()
  enter("loop")
  const loopStartUs = monotonicUs()
  const firstLogAt = epochNow()
  const loopStart = performance.now()
  for (let i = 0; i < rows; i++) {
    const row = rowAt(i, rows)
    const t0 = performance.now()
    run.log(row)
    const t1 = performance.now()
    log.record(t1 - t0)
    if ((i & 8191) === 0) sampleRss()
  }
  const loopEnd = performance.now()
  const lastLogAt = epochNow()
  const loopEndUs = monotonicUs()
  const loop = {
    rows,
    timer: timer.summary(),
    log: log.summary(),
    loopMs: loopEnd - loopStart,
    firstLogAt,
    lastLogAt,
    loopStartUs,
    loopEndUs
  }
  logged(loop)

  enter("finish")
  const finishStartUs = monotonicUs()
  const finishStart = performance.now()
  const finishResult = await run.finish()
  const finishEnd = performance.now()
  const finishEndUs = monotonicUs()
  enter("end")
  return {
    ...loop,
    finishMs: finishEnd - finishStart,
    finishedAt: epochNow(),
    finishStartUs,
    finishEndUs,
    finishResult: finishResult ?? null
  }
}

const main = async (): Promise<ChildResult> => {
  const task = spec.task
  if (task.kind === "baseline") {
    return { sdk: spec.sdk, task, phase: "done", importMs: 0, memory: memory(), connections: [] }
  }
  // Source maps are collected while the modules load and the run starts, and then switched off: mapping
  // every stack trace Effect captures would slow the measured loop down.
  if (spec.sourceMapsTo !== undefined) process.setSourceMapsEnabled(true)
  enter("import")
  const t0 = performance.now()
  const client = await loadClient()
  const importMs = performance.now() - t0
  const partial = { sdk: spec.sdk, task, importMs, phase: "done" as const }
  if (task.kind === "init") {
    enter("init")
    const inits = await timeInits(client, task.mode, task.repeats)
    enter("end")
    return { ...partial, inits, memory: memory(), connections: connectionAttempts }
  }
  const logRun = await timeLog(client, task.rows, (loop) =>
    report({ ...partial, phase: "logged", logRun: loop, memory: memory(), connections: connectionAttempts }))
  return { ...partial, logRun, memory: memory(), connections: connectionAttempts }
}

function report(result: ChildResult) {
  fs.writeSync(RESULT_FD, `${JSON.stringify(result)}\n`)
}

/** Source maps of the loaded modules under `src/` and `bench/`, keyed by URL, without their sources. */
const writeSourceMaps = (file: string) => {
  process.setSourceMapsEnabled(true)
  const root = path.resolve(import.meta.dirname, "..")
  const maps: Record<string, unknown> = {}
  for (const folder of ["src", "bench"]) {
    for (const entry of fs.readdirSync(path.join(root, folder), { recursive: true, encoding: "utf8" })) {
      if (!entry.endsWith(".ts")) continue
      const url = pathToFileURL(path.join(root, folder, entry)).href
      const map = findSourceMap(url) // the cache filled while maps were enabled
      if (map !== undefined) maps[url] = { ...map.payload, sourcesContent: undefined }
    }
  }
  fs.writeFileSync(file, JSON.stringify(maps))
}

try {
  report(await main())
} catch (error) {
  const message = error instanceof Error ? error.stack ?? error.message : String(error)
  report({
    sdk: spec.sdk,
    task: spec.task,
    phase: "failed",
    importMs: 0,
    memory: memory(),
    connections: connectionAttempts,
    error: message
  })
  process.exitCode = 1
}
if (spec.sourceMapsTo !== undefined) writeSourceMaps(spec.sourceMapsTo)
for (const [suffix, { phase: atPhase, profile, rssBytes }] of heapProfiles) {
  const file = `${spec.heapProfileTo}${suffix}.heapprofile`
  fs.writeFileSync(file, JSON.stringify({ ...(profile as object), rssBytes, phase: atPhase, mode: heapMode }))
}
