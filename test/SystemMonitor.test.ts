import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as os from "node:os"
import * as SystemMonitor from "../src/layers/SystemMonitor.js"

const MB = 1024 * 1024

const busyFor = (millis: number) =>
  Effect.sync(() => {
    const end = performance.now() + millis
    let x = 0
    while (performance.now() < end) x = Math.sqrt(x + 1)
    return x
  })

const idleFor = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

const metric = (sample: SystemMonitor.SystemSample, key: string): number => {
  const found = sample.metrics.find(([k]) => k === key)
  expect(found, key).toBeDefined()
  return found![1]
}

const sample = Effect.flatMap(SystemMonitor.SystemMonitor, (monitor) => monitor.sample)

describe("SystemMonitor.layer", () => {
  it.live("a sample has every metric, each within its range", () =>
    Effect.gen(function*() {
      const before = Date.now() / 1000
      yield* idleFor(50)
      const s = yield* sample
      const after = Date.now() / 1000

      const keys = s.metrics.map(([key]) => key)
      const expected = ["cpu", "memory", "proc.memory.rssMB", "proc.memory.percent", "proc.memory.availableMB"]
      expect(keys).toEqual(expect.arrayContaining([...expected, "proc.cpu.percent"]))
      if (process.platform === "linux") {
        expect(Number.isInteger(metric(s, "proc.cpu.threads"))).toBe(true)
        expect(metric(s, "proc.cpu.threads")).toBeGreaterThanOrEqual(1)
      }
      expect(new Set(keys).size).toBe(keys.length)
      for (const [key, value] of s.metrics) {
        expect(Number.isFinite(value), key).toBe(true)
        expect(Math.round(value * 100) / 100, key).toBe(value)
      }

      expect(s.timestamp).toBeGreaterThanOrEqual(Math.floor(before))
      expect(s.timestamp).toBeLessThanOrEqual(after)
      for (const key of ["cpu", "memory", "proc.memory.percent"]) {
        expect(metric(s, key), key).toBeGreaterThanOrEqual(0)
        expect(metric(s, key), key).toBeLessThanOrEqual(100)
      }
      const totalMB = os.totalmem() / MB
      expect(metric(s, "proc.memory.rssMB")).toBeGreaterThan(0)
      expect(metric(s, "proc.memory.rssMB")).toBeLessThan(totalMB)
      expect(metric(s, "proc.memory.availableMB")).toBeGreaterThan(0)
      expect(metric(s, "proc.memory.availableMB")).toBeLessThanOrEqual(totalMB)
      // The percentages agree with the megabytes they come from.
      expect(metric(s, "proc.memory.percent")).toBeCloseTo((metric(s, "proc.memory.rssMB") / totalMB) * 100, 1)
      expect(metric(s, "memory")).toBeCloseTo(100 - (metric(s, "proc.memory.availableMB") / totalMB) * 100, 1)
      // One process can keep at most every core busy; the small margin covers the two clocks being read
      // a moment apart.
      expect(metric(s, "proc.cpu.percent")).toBeGreaterThanOrEqual(0)
      expect(metric(s, "proc.cpu.percent")).toBeLessThanOrEqual(100 * os.cpus().length + 5)
    }).pipe(Effect.provide(SystemMonitor.layer)))

  it.live("CPU figures cover the time since the previous sample: a busy interval shows more than an idle one", () =>
    Effect.gen(function*() {
      yield* sample
      yield* idleFor(300)
      const idle = yield* sample
      yield* busyFor(300)
      const busy = yield* sample
      expect(metric(busy, "proc.cpu.percent")).toBeGreaterThan(metric(idle, "proc.cpu.percent"))
      // This process alone kept one core busy, so the machine was not idle.
      expect(metric(busy, "cpu")).toBeGreaterThan(0)
    }).pipe(Effect.provide(SystemMonitor.layer)))

  it.live("the first sample measures from when the layer was built, and each layer keeps its own baseline", () =>
    Effect.gen(function*() {
      const firstAfter = (interval: Effect.Effect<unknown>) =>
        Effect.zipRight(interval, sample).pipe(Effect.provide(SystemMonitor.layer))
      const idle = yield* firstAfter(idleFor(300))
      const busy = yield* firstAfter(busyFor(300))
      const idleAgain = yield* firstAfter(idleFor(300))
      expect(metric(busy, "proc.cpu.percent")).toBeGreaterThan(metric(idle, "proc.cpu.percent"))
      expect(metric(busy, "proc.cpu.percent")).toBeGreaterThan(metric(idleAgain, "proc.cpu.percent"))
    }))
})

describe("SystemMonitor.layerTest", () => {
  const first = { timestamp: 1724000000, metrics: [["cpu", 10], ["memory", 40]] } as const
  const second = { timestamp: 1724000015, metrics: [["cpu", 90], ["memory", 41.5]] } as const

  it.effect("replays the samples in order, then repeats the last", () =>
    Effect.gen(function*() {
      expect(yield* sample).toEqual(first)
      expect(yield* sample).toEqual(second)
      expect(yield* sample).toEqual(second)
      expect(yield* sample).toEqual(second)
    }).pipe(Effect.provide(SystemMonitor.layerTest([first, second]))))

  it.effect("each built layer starts from the first sample", () =>
    Effect.gen(function*() {
      const layer = SystemMonitor.layerTest([first, second])
      expect(yield* Effect.provide(Effect.zipRight(sample, sample), layer)).toEqual(second)
      expect(yield* Effect.provide(sample, layer)).toEqual(first)
    }))

  it.effect("without samples gives empty ones at the current time", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("15 seconds")
      expect(yield* sample).toEqual({ timestamp: 15, metrics: [] })
    }).pipe(Effect.provide(SystemMonitor.layerTest([]))))
})
