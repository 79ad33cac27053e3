import { describe, expect, it } from "@effect/vitest"
import { type HistoryRow, PATH_SEPARATOR, StepState, unflatten } from "../src/domain/History.js"
import * as ExtendedJson from "../src/domain/ExtendedJson.js"
import { SummaryState } from "../src/domain/Summary.js"

type Call = [data: Record<string, unknown>, step?: number | undefined, commit?: boolean]

const play = (calls: ReadonlyArray<Call>) => {
  const state = new StepState()
  const rows: Array<HistoryRow> = []
  for (const [data, step, commit] of calls) {
    const outcome = state.log(data, step, commit, 1000)
    if (outcome._tag === "Accepted") rows.push(...outcome.committed)
  }
  rows.push(...state.flush())
  return { rows, state }
}

describe("step and commit rules", () => {
  it("reproduces the official worked example", () => {
    const { rows, state } = play([
      [{ n: 1 }],
      [{ n: 11 }, undefined, false],
      [{ n: 2 }, 100],
      [{ n: 3 }, 100],
      [{ n: 8 }, 101],
      [{ n: 5 }, 102],
      [{ cool: 2 }, 2],
      [{ cool: 2 }, 4]
    ])
    expect(rows.map((r) => r.values.n)).toEqual([1, 11, 3, 8, 5])
    expect(rows.map((r) => r.step)).toEqual([0, 1, 100, 101, 102])
    expect(state.dropped).toBe(2)
  })

  it("an explicit step stays open until a later step, and commit merges into it", () => {
    const { rows } = play([[{ cool: 1 }, 1], [{ cool: 2 }, 4], [{ bad: 3 }, 4, true]])
    expect(rows.map((r) => [r.step, r.values])).toEqual([[1, { cool: 1 }], [4, { cool: 2, bad: 3 }]])
  })

  it("after a committed step, the same step is in the past", () => {
    const { rows, state } = play([[{ cool: 1 }, 1], [{ cool: 2 }, 4, true], [{ bad: 3 }, 4, true]])
    expect(rows.map((r) => r.step)).toEqual([1, 4])
    expect(rows.some((r) => "bad" in r.values)).toBe(false)
    expect(state.dropped).toBe(1)
  })

  it("run.step follows the rules: 0, then 1 after a log, then 3 after log(step=3)", () => {
    const state = new StepState()
    expect(state.current).toBe(0)
    state.log({ a: 1 }, undefined, undefined, 0)
    expect(state.current).toBe(1)
    state.log({ a: 1 }, 3, undefined, 0)
    expect(state.current).toBe(3)
  })

  it("nested objects are flattened to paths and a user _step is ignored", () => {
    const { rows } = play([[{ train: { loss: 1, acc: { top1: 0.5 } }, "a.b": 2, _step: 99, empty: {} }]])
    expect(Object.keys(rows[0]!.values).sort()).toEqual(
      ["a.b", "empty", `train${PATH_SEPARATOR}acc${PATH_SEPARATOR}top1`, `train${PATH_SEPARATOR}loss`].sort()
    )
    expect(rows[0]!.step).toBe(0)
    expect(unflatten(rows[0]!.values)).toEqual({ train: { loss: 1, acc: { top1: 0.5 } }, "a.b": 2, empty: {} })
  })

  it("the row keeps a snapshot: mutating the logged object later changes nothing", () => {
    const state = new StepState()
    const data: Record<string, unknown> = { loss: 1 }
    const outcome = state.log(data, undefined, undefined, 0)
    data.loss = 2
    expect(outcome._tag === "Accepted" && outcome.committed[0]!.values.loss).toBe(1)
  })
})

describe("summary", () => {
  it("keeps the last value of each logged key; an explicit update wins until the key is logged again", () => {
    const summary = new SummaryState()
    summary.applyRow({ step: 0, values: { a: 1, b: 1 }, timestamp: 5 }, 0.5)
    summary.update({ a: 10 })
    expect(summary.nested()).toMatchObject({ a: 10, b: 1, _step: 0, _runtime: 0.5, _timestamp: 5 })
    summary.applyRow({ step: 1, values: { a: 2 }, timestamp: 6 }, 1)
    expect(summary.nested()).toMatchObject({ a: 2, b: 1, _step: 1 })
  })

  it("an update replaces a whole top-level key, and reports the leaves it removed", () => {
    const summary = new SummaryState()
    summary.update({ a: { b: 1, c: 2 } })
    const { removed } = summary.update({ a: { c: 3 } })
    expect(summary.nested()).toEqual({ a: { c: 3 } })
    expect(removed).toEqual([`a${PATH_SEPARATOR}b`])
  })
})

describe("extended JSON", () => {
  it("keeps NaN, Infinity and -Infinity distinct, also nested and next to look-alike strings", () => {
    const value = { nan: NaN, inf: Infinity, ninf: -Infinity, nested: [-Infinity, { x: NaN }], s: "NaN Infinity" }
    const text = ExtendedJson.stringify(value)
    expect(text).toBe(
      `{"nan":NaN,"inf":Infinity,"ninf":-Infinity,"nested":[-Infinity,{"x":NaN}],"s":"NaN Infinity"}`
    )
    const back = ExtendedJson.parse(text) as typeof value
    expect(back.nan).toBeNaN()
    expect(back.inf).toBe(Infinity)
    expect(back.ninf).toBe(-Infinity)
    expect((back.nested[1] as { x: number }).x).toBeNaN()
    expect(back.s).toBe("NaN Infinity")
  })

  it("canonical form ignores key order", () => {
    expect(ExtendedJson.canonical({ b: 1, a: { d: 3.0, c: [1] } }))
      .toBe(ExtendedJson.canonical({ a: { c: [1], d: 3 }, b: 1 }))
    expect(ExtendedJson.canonical({ a: 1 })).not.toBe(ExtendedJson.canonical({ a: "1" }))
  })

  it("rejects malformed text like JSON.parse", () => {
    expect(() => ExtendedJson.parse("{NaN}")).toThrow(SyntaxError)
  })
})
