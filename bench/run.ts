/**
 * `npm run bench`: wandb-effect (the Promise facade) side by side with @wandb/sdk against the loopback
 * W&B test server. Each measurement runs in a child process of its own (see `child.ts`); this process
 * hosts the server, watches what reaches it, prints a table and writes `bench/results.json`.
 *
 *   npm run bench
 *   npm run bench -- --rows 10000,100000       other row counts (the targets speak of 100k and 1M)
 *   npm run bench -- --only wandb-effect       one SDK
 *   npm run bench -- --profile <dir>           also write a --cpu-prof profile of each logging child
 *   npm run bench -- --heap-profile <dir>      also write a sampling heap profile at each logging child's peak
 *   npm run bench -- --heap-profile <dir> --allocations
 *                                              … of everything allocated in the loop and in finish instead
 *   npm run bench -- --out <file>              write the results elsewhere
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { sampleApiKey, startTestServer } from "../test/support/WandbTestServer.js"
import type { ChildSpec, LogTiming, LoopTiming, Sdk, Task } from "./Measurement.js"
import { type MeasurementRecord, printTable, type Results, summarize } from "./report.js"
import { ArrivalWatch, storedHistory, summarizeTraffic } from "./ServerWatch.js"
import { runChild } from "./spawn.js"

const { values: flags } = parseArgs({
  options: {
    rows: { type: "string", default: "100000,1000000" },
    only: { type: "string" },
    profile: { type: "string" },
    "heap-profile": { type: "string" },
    allocations: { type: "boolean", default: false },
    out: { type: "string", default: path.join(import.meta.dirname, "results.json") }
  }
})

const rowCounts = flags.rows.split(",").map((text) => Number(text.replace(/_/g, "")))
if (rowCounts.some((n) => !Number.isInteger(n) || n <= 0)) {
  throw new Error(`--rows wants positive integers: ${flags.rows}`)
}
const sdks: Array<Sdk> = (["wandb-effect", "@wandb/sdk"] as const).filter((sdk) =>
  flags.only === undefined || flags.only === sdk
)

/** Generous limits: a child past them is killed and reported as such. */
const limitFor = (task: Task): number =>
  task.kind === "log" ? 30_000 + task.rows * 0.09 : task.kind === "init" ? 60_000 : 30_000

const INIT_REPEATS = 5
const EXIT_GRACE_MS = 10_000

// ---------------------------------------------------------------------------------------------------------------

for (const dir of [flags.profile, flags["heap-profile"]]) if (dir !== undefined) fs.mkdirSync(dir, { recursive: true })
const server = await startTestServer()
const apiKey = sampleApiKey()
const project = "bench"
let runCounter = 0
const nextRunId = (sdk: Sdk) => `${sdk === "wandb-effect" ? "we" : "js"}${Date.now().toString(36)}${runCounter++}`

const slug = (label: string) => label.replace(/[^A-Za-z0-9]+/g, "-")

const measure = async (label: string, sdk: Sdk, task: Task): Promise<MeasurementRecord> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wandb-bench-"))
  const rows = task.kind === "log" ? task.rows : 0
  const profiling = flags.profile !== undefined && task.kind === "log"
  const heapProfiling = flags["heap-profile"] !== undefined && task.kind === "log"
  const heapProfileTo = heapProfiling ? path.resolve(flags["heap-profile"]!, slug(label)) : undefined
  const heapProfileMode = flags.allocations ? "allocated" as const : "live-at-peak" as const
  // both kinds of profile are read with the child's source maps beside them
  const mapsIn = [profiling ? flags.profile! : undefined, heapProfiling ? flags["heap-profile"]! : undefined]
    .filter((dir) => dir !== undefined)
    .map((dir) => path.resolve(dir, `${slug(label)}.sourcemaps.json`))
  const sourceMapsTo = mapsIn[0]
  const runId = nextRunId(sdk)
  const spec: ChildSpec = { sdk, task, project, runId, dir, sourceMapsTo, heapProfileTo, heapProfileMode }
  process.stdout.write(`${label} ... `)

  server.reset()
  let watch: ArrivalWatch | undefined
  const outcome = await runChild(
    {
      spec,
      baseUrl: server.url,
      apiKey,
      limitMs: limitFor(task),
      exitGraceMs: EXIT_GRACE_MS,
      nodeFlags: profiling ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(flags.profile!)}`] : []
    },
    () => {
      if (rows > 0) watch = new ArrivalWatch(server, spec.runId, rows)
    }
  )
  watch?.stop()
  for (const copy of mapsIn.slice(1)) if (fs.existsSync(mapsIn[0]!)) fs.copyFileSync(mapsIn[0]!, copy)
  if (profiling) writePhases(label, outcome.pid, outcome.result?.logRun)

  const traffic = summarizeTraffic(server.requests(), apiKey)
  const history = rows > 0 ? storedHistory(server, spec.runId, rows) : undefined
  server.reset()
  fs.rmSync(dir, { recursive: true, force: true })

  const status = outcome.killed ?? (outcome.result?.error !== undefined ? "error" : `exit ${outcome.exitCode}`)
  process.stdout.write(`${(outcome.wallMs / 1000).toFixed(1)} s, ${status}\n`)
  return {
    label,
    sdk,
    task,
    runId: spec.runId,
    outcome,
    traffic,
    history,
    allStoredAt: watch?.allStoredAt
  }
}

/** Beside the child's profiles: when its loop and its `finish` ran, for `profile.ts --phases`. */
const writePhases = (label: string, pid: number | undefined, logRun: LoopTiming | LogTiming | undefined) => {
  if (logRun === undefined) return
  const phases: Record<string, [number, number]> = { "log loop": [logRun.loopStartUs, logRun.loopEndUs] }
  if ("finishEndUs" in logRun) phases["finish"] = [logRun.finishStartUs, logRun.finishEndUs]
  // node names profiles CPU.<date>.<time>.<pid>.<thread>.<sequence>.cpuprofile; thread 0 is the main thread
  const profile = fs.readdirSync(flags.profile!).find((name) => name.includes(`.${pid}.0.`))
  const file = path.join(flags.profile!, `${slug(label)}.phases.json`)
  fs.writeFileSync(file, `${JSON.stringify({ label, pid, profile, phases }, null, 2)}\n`)
}

const measurements: Array<MeasurementRecord> = []
const started = new Date()
const loadAtStart = os.loadavg()

// Fills tsx's transform cache for both SDKs, so no measured child pays for compiling TypeScript.
for (const sdk of sdks) await measure(`warm-up ${sdk}`, sdk, { kind: "init", mode: "online", repeats: 0 })
measurements.push(await measure("baseline (no SDK)", "wandb-effect", { kind: "baseline" }))

for (const sdk of sdks) {
  if (sdk === "wandb-effect") {
    const task = { kind: "init", mode: "offline", repeats: INIT_REPEATS } as const
    measurements.push(await measure(`${sdk} init offline`, sdk, task))
  }
  measurements.push(await measure(`${sdk} init online`, sdk, { kind: "init", mode: "online", repeats: INIT_REPEATS }))
  for (const rows of rowCounts) measurements.push(await measure(`${sdk} log ${rows} rows`, sdk, { kind: "log", rows }))
}

await server.close()

const cpus = os.cpus()
const root = path.join(import.meta.dirname, "..")
const results: Results = {
  date: started.toISOString(),
  durationS: (Date.now() - started.getTime()) / 1000,
  machine: {
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    totalMemoryBytes: os.totalmem(),
    // Other work on the machine shows here; timings taken under load are slower and noisier.
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: os.loadavg()
  },
  setup: {
    runner: "node --import tsx --conditions=source bench/child.ts, one child per measurement, for both SDKs",
    source: sourceState(root),
    sdkVersions: {
      "wandb-effect": readVersion(path.join(root, "package.json")),
      "@wandb/sdk": readVersion(path.join(root, "node_modules", "@wandb", "sdk", "package.json"))
    },
    settings: "each SDK's defaults plus silent; wandb-effect: fileStreamInterval 15 s, flushInterval 0.5 s",
    environment: "HOME and cwd a fresh temp dir; WANDB_BASE_URL = the loopback server; WANDB_API_KEY = a sample key",
    rowShape: "10 numeric metrics per row (integers and fractions), built outside the timed region",
    logTiming: "performance.now() around each call, per-call histogram at 1 ns resolution; net = minus timer median",
    rowsPerSecond: "rows / (server holds every row − first log call); the runner polls the request log every 2 ms",
    bytes: "sum of request bodyBytes as received (no HTTP headers, no compression in use)",
    initRepeats: INIT_REPEATS,
    exitGraceMs: EXIT_GRACE_MS,
    limits: "30 s + 0.09 ms per row for logging children, 60 s for init children"
  },
  summary: summarize(measurements),
  measurements
}

printTable(results)
// Paths of this machine (run directories, stack traces) are written relative to placeholders.
const written = JSON.stringify(results, null, 2)
  .replaceAll(fs.realpathSync(path.join(root, "node_modules")), "<repo>/node_modules")
  .replaceAll(path.resolve(root), "<repo>")
  .replaceAll(os.tmpdir(), "<tmp>")
fs.writeFileSync(flags.out, `${written}\n`)
process.stdout.write(`\nwrote ${path.relative(process.cwd(), flags.out)}\n`)

function readVersion(file: string): string {
  return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version
}

/** The commit measured, and whether src/ differed from it. */
function sourceState(dir: string): { commit: string; uncommittedSrcChanges: ReadonlyArray<string> } {
  const git = (...args: Array<string>) => execFileSync("git", args, { cwd: dir, encoding: "utf8" }).trim()
  try {
    const changes = git("status", "--porcelain", "--", "src")
    return { commit: git("rev-parse", "HEAD"), uncommittedSrcChanges: changes === "" ? [] : changes.split("\n") }
  } catch {
    return { commit: "unknown", uncommittedSrcChanges: [] }
  }
}
