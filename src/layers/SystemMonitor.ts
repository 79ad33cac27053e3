/**
 * Samples of the machine's and this process's CPU and memory use, for the run's system metrics. Keys
 * are those of the official client's stats, without the `system.` prefix that the events line adds.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"

/**
 * One sample: when it was taken and the metrics, in a fixed order.
 *
 * @since 0.1.0
 * @category models
 */
export interface SystemSample {
  /** Unix seconds. */
  readonly timestamp: number
  readonly metrics: ReadonlyArray<readonly [key: string, value: number]>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class SystemMonitor extends Context.Tag("wandb-effect/SystemMonitor")<SystemMonitor, {
  readonly sample: Effect.Effect<SystemSample>
}>() {}

const MB = 1024 * 1024

const round2 = (value: number) => Math.round(value * 100) / 100

const percent = (part: number, whole: number) => whole > 0 ? Math.min(100, Math.max(0, (part / whole) * 100)) : 0

/** Busy and total CPU time of all cores, in milliseconds since boot. */
const machineCpuTimes = () => {
  let busy = 0
  let total = 0
  for (const { times } of os.cpus()) {
    const used = times.user + times.nice + times.sys + times.irq
    busy += used
    total += used + times.idle
  }
  return { busy, total }
}

/** The process's thread count where the kernel tells it for the price of a small read (Linux). */
const threadCount = (): number | undefined => {
  if (process.platform !== "linux") return undefined
  try {
    const match = /^Threads:\s+(\d+)/m.exec(fs.readFileSync("/proc/self/status", "latin1"))
    return match === null ? undefined : Number(match[1])
  } catch {
    return undefined
  }
}

/**
 * The machine's CPU use, memory use and free memory, and this process's resident memory, CPU use and
 * threads. CPU figures cover the time since the previous sample, or since the layer was built for the
 * first one. `proc.cpu.percent` can exceed 100 when the process keeps more than one core busy.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<SystemMonitor> = Layer.sync(SystemMonitor, () => {
  let machine = machineCpuTimes()
  let processCpu = process.cpuUsage()
  let wall = process.hrtime.bigint()

  const measure = (timestampMillis: number): SystemSample => {
    const nowMachine = machineCpuTimes()
    const nowProcessCpu = process.cpuUsage()
    const nowWall = process.hrtime.bigint()
    const wallMicros = Number(nowWall - wall) / 1000
    const processMicros = nowProcessCpu.user - processCpu.user + nowProcessCpu.system - processCpu.system
    const totalMemory = os.totalmem()
    const freeMemory = os.freemem()
    const rss = process.memoryUsage.rss()
    const threads = threadCount()

    const metrics: Array<readonly [string, number]> = []
    // Without per-core times (some sandboxes hide them) there is no machine CPU figure to give.
    if (nowMachine.total > 0) {
      metrics.push(["cpu", round2(percent(nowMachine.busy - machine.busy, nowMachine.total - machine.total))])
    }
    metrics.push(
      ["memory", round2(percent(totalMemory - freeMemory, totalMemory))],
      ["proc.memory.rssMB", round2(rss / MB)],
      ["proc.memory.percent", round2(percent(rss, totalMemory))],
      ["proc.memory.availableMB", round2(freeMemory / MB)]
    )
    if (threads !== undefined) metrics.push(["proc.cpu.threads", threads])
    metrics.push(["proc.cpu.percent", round2(wallMicros > 0 ? Math.max(0, processMicros / wallMicros) * 100 : 0)])

    machine = nowMachine
    processCpu = nowProcessCpu
    wall = nowWall
    return { timestamp: timestampMillis / 1000, metrics }
  }

  return SystemMonitor.of({ sample: Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => measure(now))) })
})

/**
 * Replays the given samples in order, then repeats the last one. Without samples every sample is empty,
 * stamped with the current time.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest = (samples: ReadonlyArray<SystemSample>): Layer.Layer<SystemMonitor> =>
  Layer.sync(SystemMonitor, () => {
    let next = 0
    return SystemMonitor.of({
      sample: samples.length === 0
        ? Effect.map(Clock.currentTimeMillis, (now): SystemSample => ({ timestamp: now / 1000, metrics: [] }))
        : Effect.sync(() => samples[Math.min(next++, samples.length - 1)]!)
    })
  })
