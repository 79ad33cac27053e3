/**
 * Reads a V8 CPU profile (`node --cpu-prof`, or `npm run bench -- --profile <dir>`) and prints the functions
 * with the most self time and the most inclusive time, as percentages of the sampled time.
 *
 *   npx tsx bench/profile.ts <dir>/<label>.phases.json [--top 25] [--root <dir>]
 *   npx tsx bench/profile.ts <file.cpuprofile> [--top 25] [--root <dir>]
 *   npx tsx bench/profile.ts <dir>/<label>.heapprofile [--top 25] [--root <dir>]
 *
 * The runner writes `<label>.phases.json` beside each child's profile: it names the profile and when the
 * logging loop and `finish` ran, and each phase gets a section of its own. tsx compiles every module to a
 * single line, so positions are mapped back through the source maps the child wrote beside it
 * (`<label>.sourcemaps.json`). `--root` is stripped from file names (packages are named from their
 * `node_modules` folder on). A `.heapprofile` (`npm run bench -- --heap-profile <dir>`) is read the same
 * way, with sampled bytes live at the child's highest RSS in place of time.
 */
import * as fs from "node:fs"
import { SourceMap, type SourceMapPayload } from "node:module"
import * as path from "node:path"
import { parseArgs } from "node:util"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

/** Source maps by module URL; `undefined` when the child wrote none. */
export type SourceMaps = ReadonlyMap<string, SourceMap>

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
  readonly startTime: number
  readonly endTime: number
}

export interface FunctionTime {
  readonly name: string
  readonly selfMs: number
  readonly totalMs: number
  readonly selfShare: number
  readonly totalShare: number
}

const label = (frame: CallFrame, root: string, maps: SourceMaps): string => {
  const name = frame.functionName === "" ? "(anonymous)" : frame.functionName
  if (frame.url === "") return name
  const entry = maps.get(frame.url)?.findEntry(frame.lineNumber, frame.columnNumber)
  const line = entry !== undefined && "originalLine" in entry ? entry.originalLine : frame.lineNumber
  const local = frame.url.replace(/^file:\/\//, "")
  const packaged = local.lastIndexOf("/node_modules/")
  const file = packaged !== -1
    ? local.slice(packaged + "/node_modules/".length)
    : local.startsWith(root)
    ? local.slice(root.length).replace(/^\//, "")
    : local
  return `${name} ${file}:${line + 1}`
}

/**
 * Self and inclusive time per function (functions identified by name, file and line), from the samples
 * stamped within `window` (microseconds of the profile's clock) when one is given.
 */
export const functionTimes = (
  profile: CpuProfile,
  root = "",
  maps: SourceMaps = new Map(),
  window?: readonly [number, number]
): Array<FunctionTime> => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

  const selfUs = new Map<number, number>()
  let stamp = profile.startTime
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0
    stamp += delta
    if (window !== undefined && (stamp < window[0] || stamp > window[1])) return
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  })
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0)

  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!
    const name = label(node.callFrame, root, maps)
    self.set(name, (self.get(name) ?? 0) + us)
    // each function counts once per sample even when it recurses
    const onStack = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      onStack.add(label(byId.get(at)!.callFrame, root, maps))
    }
    for (const frame of onStack) inclusive.set(frame, (inclusive.get(frame) ?? 0) + us)
  }

  return [...inclusive.keys()].map((name) => ({
    name,
    selfMs: (self.get(name) ?? 0) / 1000,
    totalMs: (inclusive.get(name) ?? 0) / 1000,
    selfShare: (self.get(name) ?? 0) / totalUs,
    totalShare: (inclusive.get(name) ?? 0) / totalUs
  }))
}

interface HeapNode {
  readonly callFrame: CallFrame
  readonly selfSize: number
  readonly children: ReadonlyArray<HeapNode>
}

export interface AllocationSite {
  readonly name: string
  readonly selfBytes: number
  readonly totalBytes: number
  readonly selfShare: number
  readonly totalShare: number
}

/** Bytes live at the time of the sampling heap profile, per allocating function, self and inclusive. */
export const allocationSites = (head: HeapNode, root = "", maps: SourceMaps = new Map()): Array<AllocationSite> => {
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let all = 0
  const walk = (node: HeapNode, stack: ReadonlyArray<string>): number => {
    const name = label(node.callFrame, root, maps)
    const onStack = stack.includes(name) ? stack : [...stack, name]
    self.set(name, (self.get(name) ?? 0) + node.selfSize)
    all += node.selfSize
    let below = node.selfSize
    for (const child of node.children) below += walk(child, onStack)
    // a recursive function's bytes are counted once, at its outermost frame
    if (!stack.includes(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + below)
    return below
  }
  walk(head, [])
  return [...inclusive.keys()].map((name) => ({
    name,
    selfBytes: self.get(name) ?? 0,
    totalBytes: inclusive.get(name) ?? 0,
    selfShare: (self.get(name) ?? 0) / all,
    totalShare: (inclusive.get(name) ?? 0) / all
  }))
}

/** Phase name → `[from, to]` in microseconds of the monotonic clock, as the runner writes them. */
export type Phases = Readonly<Record<string, readonly [number, number]>>

const percent = (share: number) => `${(share * 100).toFixed(1).padStart(5)} %`

const printTimes = (title: string, times: ReadonlyArray<FunctionTime>, top: number) => {
  const sampledMs = times.find((t) => t.name === "(root)")?.totalMs ?? 0
  process.stdout.write(`${title}: ${sampledMs.toFixed(0)} ms sampled\n\nself time\n`)
  for (const t of [...times].sort((a, b) => b.selfMs - a.selfMs).slice(0, top)) {
    process.stdout.write(`${percent(t.selfShare)} ${t.selfMs.toFixed(0).padStart(7)} ms  ${t.name}\n`)
  }
  process.stdout.write(`\ninclusive time\n`)
  for (const t of [...times].sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) {
    process.stdout.write(`${percent(t.totalShare)} ${t.totalMs.toFixed(0).padStart(7)} ms  ${t.name}\n`)
  }
  process.stdout.write("\n")
}

const readJson = <A>(file: string): A => JSON.parse(fs.readFileSync(file, "utf8")) as A

const readMaps = (file: string): Map<string, SourceMap> => {
  const maps = new Map<string, SourceMap>()
  if (!fs.existsSync(file)) return maps
  for (const [url, payload] of Object.entries(readJson<Record<string, SourceMapPayload>>(file))) {
    maps.set(url, new SourceMap(payload))
  }
  return maps
}

const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1).padStart(7)} MB`

const printSites = (title: string, sites: ReadonlyArray<AllocationSite>, top: number) => {
  const all = sites.find((site) => site.name === "(root)")?.totalBytes ?? 0
  process.stdout.write(`${title}: ${megabytes(all).trim()} sampled\n\nallocated by (self)\n`)
  for (const site of [...sites].sort((a, b) => b.selfBytes - a.selfBytes).slice(0, top)) {
    process.stdout.write(`${percent(site.selfShare)} ${megabytes(site.selfBytes)}  ${site.name}\n`)
  }
  process.stdout.write(`\nallocated under (inclusive)\n`)
  for (const site of [...sites].sort((a, b) => b.totalBytes - a.totalBytes).slice(0, top)) {
    process.stdout.write(`${percent(site.totalShare)} ${megabytes(site.totalBytes)}  ${site.name}\n`)
  }
  process.stdout.write("\n")
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: "string", default: "25" },
      root: { type: "string", default: process.cwd() }
    }
  })
  const top = Number(values.top)
  for (const file of positionals) {
    if (file.endsWith(".heapprofile")) {
      const heap = readJson<{ head: HeapNode; rssBytes?: number; phase?: string; mode?: string }>(file)
      const maps = readMaps(file.replace(/(\.(loop|finish))?\.heapprofile$/, ".sourcemaps.json"))
      const at = heap.rssBytes === undefined
        ? ""
        : heap.mode === "allocated"
        ? `, allocated during ${heap.phase}, collected or not`
        : ` at RSS ${megabytes(heap.rssBytes).trim()} (${heap.phase})`
      printSites(`${path.basename(file)}${at}`, allocationSites(heap.head, values.root, maps), top)
      continue
    }
    let profileFile = file
    let phases: Phases = {}
    const maps = new Map<string, SourceMap>()
    if (file.endsWith(".phases.json")) {
      const written = readJson<{ profile?: string; phases: Phases }>(file)
      if (written.profile === undefined) throw new Error(`${file} names no profile`)
      profileFile = path.join(path.dirname(file), written.profile)
      phases = written.phases
      for (const [url, map] of readMaps(file.replace(/\.phases\.json$/, ".sourcemaps.json"))) maps.set(url, map)
    }
    const profile = readJson<CpuProfile>(profileFile)
    printTimes(`${path.basename(profileFile)}, whole process`, functionTimes(profile, values.root, maps), top)
    for (const [name, window] of Object.entries(phases)) {
      printTimes(`${path.basename(profileFile)}, ${name}`, functionTimes(profile, values.root, maps, window), top)
    }
  }
}
