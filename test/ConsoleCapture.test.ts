import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as ConsoleCapture from "../src/layers/ConsoleCapture.js"

type Write = (...args: Array<unknown>) => boolean

interface Seen {
  readonly stream: ConsoleCapture.OutputStream
  readonly text: string
}

const stdout = process.stdout as unknown as { write: Write }
const stderr = process.stderr as unknown as { write: Write }

// The writes that reach the real streams beneath every wrapper, recorded and still printed. What the
// sink returns can be forced, to see that a wrapper hands the program the original's answer.
let saved: { readonly stdout: PropertyDescriptor | undefined; readonly stderr: PropertyDescriptor | undefined }
let reached: Array<{ readonly stream: string; readonly args: Array<unknown>; result?: boolean }>
let forcedResult: boolean | undefined
let sinks: { readonly stdout: Write; readonly stderr: Write }

const sinkFor = (stream: "stdout" | "stderr", below: Write): Write =>
  function(this: unknown, ...args) {
    const entry: (typeof reached)[number] = { stream, args }
    reached.push(entry)
    const result = below.apply(this, args)
    entry.result = forcedResult ?? result
    return entry.result
  }

const restore = (target: { write: Write }, descriptor: PropertyDescriptor | undefined) => {
  if (descriptor === undefined) delete (target as Partial<{ write: Write }>).write
  else Object.defineProperty(target, "write", descriptor)
}

beforeEach(() => {
  saved = {
    stdout: Object.getOwnPropertyDescriptor(process.stdout, "write"),
    stderr: Object.getOwnPropertyDescriptor(process.stderr, "write")
  }
  reached = []
  forcedResult = undefined
  sinks = { stdout: sinkFor("stdout", stdout.write), stderr: sinkFor("stderr", stderr.write) }
  stdout.write = sinks.stdout
  stderr.write = sinks.stderr
})

afterEach(() => {
  restore(stdout, saved.stdout)
  restore(stderr, saved.stderr)
})

/** Starts a capture in a scope of its own, so tests choose when and in which order captures end. */
const open = (layer: Layer.Layer<ConsoleCapture.ConsoleCapture> = ConsoleCapture.layer) =>
  Effect.gen(function*() {
    const seen: Array<Seen> = []
    const scope = yield* Scope.make()
    const capture = yield* Effect.provide(ConsoleCapture.ConsoleCapture, layer)
    yield* capture.capture((stream, text) => seen.push({ stream, text })).pipe(Scope.extend(scope))
    return { seen, close: Scope.close(scope, Exit.void) }
  })

const textOf = (seen: ReadonlyArray<Seen>, stream: ConsoleCapture.OutputStream = "stdout") =>
  seen.filter((s) => s.stream === stream).map((s) => s.text).join("")

const reachedText = (stream: "stdout" | "stderr" = "stdout") =>
  reached.filter((r) => r.stream === stream).map((r) => String(r.args[0])).join("")

/** Writes with a callback and waits for it; gives the error it was called with (none on success). */
const writeWithCallback = (args: ReadonlyArray<unknown>) =>
  Effect.async<unknown>((resume) => {
    stdout.write(...args, (error: unknown) => resume(Effect.succeed(error)))
  })

describe("ConsoleCapture.layer", () => {
  it.effect("hands each write on either stream to onOutput and passes the same arguments on", () =>
    Effect.gen(function*() {
      const a = yield* open()
      const toStdout = stdout.write("capture: to stdout\n")
      const toStderr = stderr.write("capture: to stderr\n")
      expect(a.seen).toEqual([
        { stream: "stdout", text: "capture: to stdout\n" },
        { stream: "stderr", text: "capture: to stderr\n" }
      ])
      expect(reached).toEqual([
        { stream: "stdout", args: ["capture: to stdout\n"], result: toStdout },
        { stream: "stderr", args: ["capture: to stderr\n"], result: toStderr }
      ])
      yield* a.close
    }))

  it.effect("returns what the original write returns", () =>
    Effect.gen(function*() {
      const a = yield* open()
      forcedResult = false
      expect(stdout.write("capture: the sink says the buffer is full\n")).toBe(false)
      forcedResult = true
      expect(stdout.write("capture: the sink says go on\n")).toBe(true)
      yield* a.close
    }))

  it.effect("calls the program's callback, with or without an encoding", () =>
    Effect.gen(function*() {
      const a = yield* open()
      expect(yield* writeWithCallback(["capture: callback\n"])).toBeFalsy()
      expect(yield* writeWithCallback(["capture: callback after encoding\n", "utf8"])).toBeFalsy()
      expect(typeof reached[0]!.args[1]).toBe("function")
      expect(reached[1]!.args[1]).toBe("utf8")
      expect(typeof reached[1]!.args[2]).toBe("function")
      expect(textOf(a.seen)).toBe("capture: callback\ncapture: callback after encoding\n")
      yield* a.close
    }))

  it.effect("reads bytes and other encodings as the text they print", () =>
    Effect.gen(function*() {
      const a = yield* open()
      stdout.write(Buffer.from("capture: hex ").toString("hex"), "hex")
      stdout.write(Buffer.from("and base64 ").toString("base64"), "base64")
      stdout.write(Buffer.from("a Buffer "))
      stdout.write(new TextEncoder().encode("a Uint8Array "))
      // "é" is two bytes in UTF-8; split across two writes it must still come out whole.
      const accent = Buffer.from("café\n")
      stdout.write(accent.subarray(0, 4))
      stdout.write(accent.subarray(4))
      expect(textOf(a.seen)).toBe("capture: hex and base64 a Buffer a Uint8Array café\n")
      expect(reached.map((r) => r.args[1])).toEqual(["hex", "base64", undefined, undefined, undefined, undefined])
      yield* a.close
    }))

  it.effect("a write the original rejects throws as before and is not reported", () =>
    Effect.gen(function*() {
      const a = yield* open()
      expect(() => stdout.write(42)).toThrow(TypeError)
      expect(a.seen).toEqual([])
      yield* a.close
    }))

  it.effect("releasing puts the previous write back and stops reporting", () =>
    Effect.gen(function*() {
      const a = yield* open()
      expect(stdout.write).not.toBe(sinks.stdout)
      yield* a.close
      expect(stdout.write).toBe(sinks.stdout)
      expect(stderr.write).toBe(sinks.stderr)
      stdout.write("capture: after release\n")
      expect(a.seen).toEqual([])
      expect(reachedText()).toBe("capture: after release\n")
    }))

  it.effect("an inherited write is restored by removing the own property again", () =>
    Effect.gen(function*() {
      delete (stdout as Partial<{ write: Write }>).write
      const inherited = stdout.write
      expect(Object.hasOwn(stdout, "write")).toBe(false)
      const a = yield* open()
      expect(Object.hasOwn(stdout, "write")).toBe(true)
      yield* a.close
      expect(Object.hasOwn(stdout, "write")).toBe(false)
      expect(stdout.write).toBe(inherited)
    }))

  it.effect("two captures at once both see every write, which is printed once", () =>
    Effect.gen(function*() {
      const a = yield* open()
      const b = yield* open()
      stdout.write("capture: nested\n")
      expect(textOf(a.seen)).toBe("capture: nested\n")
      expect(textOf(b.seen)).toBe("capture: nested\n")
      expect(reached).toHaveLength(1)
      yield* a.close
      yield* b.close
    }))

  it.effect("nested captures released inner first leave the original write", () =>
    Effect.gen(function*() {
      const a = yield* open()
      const b = yield* open()
      yield* b.close
      stdout.write("capture: only the outer\n")
      expect(textOf(a.seen)).toBe("capture: only the outer\n")
      expect(b.seen).toEqual([])
      yield* a.close
      expect(stdout.write).toBe(sinks.stdout)
      expect(stderr.write).toBe(sinks.stderr)
    }))

  it.effect("nested captures released outer first leave the original write", () =>
    Effect.gen(function*() {
      const a = yield* open()
      const b = yield* open()
      yield* a.close
      stdout.write("capture: only the later one\n")
      expect(a.seen).toEqual([])
      expect(textOf(b.seen)).toBe("capture: only the later one\n")
      expect(reached).toHaveLength(1)
      yield* b.close
      expect(stdout.write).toBe(sinks.stdout)
      expect(stderr.write).toBe(sinks.stderr)
    }))

  it.effect("a wrapper installed after ours survives our release", () =>
    Effect.gen(function*() {
      const a = yield* open()
      const theirs: Array<unknown> = []
      const below = stdout.write
      const foreign: Write = function(this: unknown, ...args) {
        theirs.push(args[0])
        return below.apply(this, args)
      }
      stdout.write = foreign
      yield* a.close
      expect(stdout.write).toBe(foreign)
      stdout.write("capture: through the foreign wrapper\n")
      expect(theirs).toEqual(["capture: through the foreign wrapper\n"])
      expect(a.seen).toEqual([])
      expect(reached).toHaveLength(1)

      // When they put back what they found, our spent wrapper only passes writes on, and the next
      // capture to be released takes it off.
      stdout.write = below
      stdout.write("capture: after the foreign wrapper left\n")
      expect(reached).toHaveLength(2)
      expect(a.seen).toEqual([])
      const b = yield* open()
      yield* b.close
      expect(stdout.write).toBe(sinks.stdout)
    }))

  it.effect("a throwing onOutput neither stops the write nor reaches the program", () =>
    Effect.gen(function*() {
      const a = yield* open()
      const scope = yield* Scope.make()
      const capture = yield* Effect.provide(ConsoleCapture.ConsoleCapture, ConsoleCapture.layer)
      yield* capture.capture(() => {
        throw new Error("observer failed")
      }).pipe(Scope.extend(scope))
      expect(stdout.write("capture: despite a failing observer\n")).toBe(reached[0]!.result)
      expect(yield* writeWithCallback(["capture: and the callback still runs\n"])).toBeFalsy()
      expect(reachedText()).toBe("capture: despite a failing observer\ncapture: and the callback still runs\n")
      expect(textOf(a.seen)).toBe("capture: despite a failing observer\ncapture: and the callback still runs\n")
      yield* Scope.close(scope, Exit.void)
      yield* a.close
      expect(stdout.write).toBe(sinks.stdout)
    }))

  it.effect("output written by onOutput itself is printed but not reported back", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const seen: Array<string> = []
      const capture = yield* Effect.provide(ConsoleCapture.ConsoleCapture, ConsoleCapture.layer)
      yield* capture.capture((_, text) => {
        seen.push(text)
        stdout.write("capture: echo\n")
      }).pipe(Scope.extend(scope))
      stdout.write("capture: original\n")
      expect(seen).toEqual(["capture: original\n"])
      expect(reachedText()).toBe("capture: original\ncapture: echo\n")
      yield* Scope.close(scope, Exit.void)
    }))

  it.scoped("the capture ends with its scope", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      yield* Effect.scoped(
        Effect.gen(function*() {
          const capture = yield* ConsoleCapture.ConsoleCapture
          yield* capture.capture((_, text) => seen.push(text))
          stdout.write("capture: inside the scope\n")
        })
      ).pipe(Effect.provide(ConsoleCapture.layer))
      stdout.write("capture: outside the scope\n")
      expect(seen).toEqual(["capture: inside the scope\n"])
      expect(stdout.write).toBe(sinks.stdout)
    }))
})

describe("ConsoleCapture.layerNoop", () => {
  it.effect("leaves write alone and reports nothing", () =>
    Effect.gen(function*() {
      const a = yield* open(ConsoleCapture.layerNoop)
      expect(stdout.write).toBe(sinks.stdout)
      stdout.write("capture: not captured\n")
      expect(a.seen).toEqual([])
      expect(reachedText()).toBe("capture: not captured\n")
      yield* a.close
    }))
})
