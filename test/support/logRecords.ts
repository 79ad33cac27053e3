/**
 * Helpers for transaction-log tests: records of an exact encoded size, an independent chunk walker,
 * a seeded random source and a scoped temporary directory.
 */
import { create, toBinary } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import type { Record } from "../../src/internal/proto/wandb_internal_pb.js"
import { RecordSchema } from "../../src/internal/proto/wandb_internal_pb.js"

/** A record whose serialized form is exactly `size` bytes (at least 6): an output_raw line padded out. */
export const recordOfSize = (size: number, num = 1): Record => {
  for (const n of [num, num + 200, num + 20000]) {
    for (let length = Math.max(0, size - 12); length <= size; length++) {
      const record = create(RecordSchema, {
        num: BigInt(n),
        recordType: { case: "outputRaw", value: { line: "x".repeat(length) } }
      })
      if (toBinary(RecordSchema, record).length === size) return record
    }
  }
  throw new Error(`no record of exactly ${size} bytes`)
}

export interface Chunk {
  readonly offset: number
  readonly type: number
  readonly length: number
}

/**
 * The chunk headers of a well-formed log from the absolute offset `from` on, read with nothing but the
 * block rule: a chunk header never starts in the last 6 bytes of a block.
 */
export const chunkLayout = (bytes: Uint8Array, from = 7): Array<Chunk> => {
  const chunks: Array<Chunk> = []
  let pos = from
  while (pos < bytes.length) {
    const left = 32768 - (pos % 32768)
    if (left < 7) {
      pos += left
      continue
    }
    const length = bytes[pos + 4]! | (bytes[pos + 5]! << 8)
    chunks.push({ offset: pos, type: bytes[pos + 6]!, length })
    pos += 7 + length
  }
  return chunks
}

/** A small deterministic generator (mulberry32), so a failing case can be replayed. */
export const seededRandom = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A fresh directory under the system temp dir, removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "wandb-effect-log-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)
