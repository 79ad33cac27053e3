/**
 * Sees what the program writes to its stdout and stderr, for the run's console log, without changing what
 * gets written.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { StringDecoder } from "node:string_decoder"
import type * as ConsoleLog from "../domain/ConsoleLog.js"

/**
 * @since 0.1.0
 * @category models
 */
export type OutputStream = ConsoleLog.OutputStream

/**
 * @since 0.1.0
 * @category tags
 */
export class ConsoleCapture extends Context.Tag("wandb-effect/ConsoleCapture")<ConsoleCapture, {
  /** While the scope is open, every write to the process's stdout/stderr is also handed to onOutput. */
  readonly capture: (onOutput: (stream: OutputStream, text: string) => void) => Effect.Effect<void, never, Scope.Scope>
}>() {}

type Write = (this: unknown, ...args: Array<unknown>) => boolean

interface Target {
  write: Write
}

interface Wrapper {
  readonly original: Write
  /** Whether `write` was the stream's own property before; if not, restoring deletes ours. */
  readonly ownProperty: boolean
  active: boolean
}

// Shared by every capture in the process, so that releasing one can recognise wrappers of the others.
const wrappers = new WeakMap<Write, Wrapper>()

const isUtf8 = (encoding: unknown) =>
  typeof encoding !== "string" || encoding === "utf8" || encoding.toLowerCase().replace("-", "") === "utf8"

/** The text a write puts on the terminal: bytes, and strings in other encodings, read as UTF-8. */
const decode = (decoder: StringDecoder, chunk: unknown, encoding: unknown): string => {
  if (typeof chunk === "string") {
    if (isUtf8(encoding)) return decoder.end() + chunk
    return decoder.write(Buffer.from(chunk, encoding as BufferEncoding))
  }
  // A multi-byte character split across two writes is completed by the decoder, not mangled.
  return chunk instanceof Uint8Array ? decoder.write(chunk) : ""
}

const install = (
  target: Target,
  stream: OutputStream,
  onOutput: (stream: OutputStream, text: string) => void
): Write => {
  const original = target.write
  const decoder = new StringDecoder("utf8")
  let reporting = false
  const wrapper: Write = function(this: unknown, ...args) {
    const result = original.apply(this, args)
    const state = wrappers.get(wrapper)
    // A write made by onOutput itself is passed on but not reported again, so it cannot loop.
    if (state?.active === true && !reporting) {
      reporting = true
      try {
        const text = decode(decoder, args[0], typeof args[1] === "function" ? undefined : args[1])
        if (text !== "") onOutput(stream, text)
      } catch {
        // The program's write already happened; a failing observer must not turn it into an error.
      } finally {
        reporting = false
      }
    }
    return result
  }
  wrappers.set(wrapper, { original, ownProperty: Object.hasOwn(target, "write"), active: true })
  target.write = wrapper
  return wrapper
}

/**
 * Turns the wrapper into a pass-through, then takes off the outermost wrappers for as long as they are
 * ours and inactive. A wrapper someone installed after ours stays, and so does ours beneath it.
 */
const release = (target: Target, wrapper: Write): void => {
  const state = wrappers.get(wrapper)
  if (state !== undefined) state.active = false
  let top = wrappers.get(target.write)
  while (top !== undefined && !top.active) {
    if (top.ownProperty) {
      target.write = top.original
    } else {
      delete (target as Partial<Target>).write
      if (target.write !== top.original) target.write = top.original
    }
    top = wrappers.get(target.write)
  }
}

const targets = (): ReadonlyArray<readonly [OutputStream, Target]> => [
  ["stdout", process.stdout as unknown as Target],
  ["stderr", process.stderr as unknown as Target]
]

/**
 * Wraps `process.stdout.write` and `process.stderr.write`. Captures may overlap (each sees all output),
 * and other code may wrap `write` after us: releasing then leaves its wrapper in place.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<ConsoleCapture> = Layer.succeed(
  ConsoleCapture,
  ConsoleCapture.of({
    capture: (onOutput) =>
      Effect.acquireRelease(
        Effect.sync(() => targets().map(([stream, target]) => [target, install(target, stream, onOutput)] as const)),
        (installed) =>
          Effect.sync(() => {
            for (const [target, wrapper] of installed) release(target, wrapper)
          })
      ).pipe(Effect.asVoid)
  })
)

/**
 * Captures nothing, for runs with console capture turned off and for tests.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNoop: Layer.Layer<ConsoleCapture> = Layer.succeed(
  ConsoleCapture,
  ConsoleCapture.of({ capture: () => Effect.void })
)
