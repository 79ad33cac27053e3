import { assert, describe, it } from "@effect/vitest"
import {
  BLOCK_SIZE,
  chunkChecksum,
  ChunkType,
  crc32,
  FILE_HEADER,
  frame,
  framedLength,
  MAX_CHUNK_PAYLOAD,
  scan,
  writeFramed
} from "../src/domain/LogFraming.js"
import type { ScanResult } from "../src/domain/LogFraming.js"
import { chunkLayout, seededRandom } from "./support/logRecords.js"

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"))

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text)

const filled = (length: number, seed: number): Uint8Array => {
  const random = seededRandom(seed)
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256)
  return bytes
}

/** A whole file: the header, then each payload framed after the previous one. */
const logOf = (payloads: ReadonlyArray<Uint8Array>): Uint8Array => {
  const parts: Array<Uint8Array> = [Uint8Array.from(FILE_HEADER)]
  let position = FILE_HEADER.length
  for (const payload of payloads) {
    const framed = frame(position, payload)
    parts.push(framed.bytes)
    position = framed.next
  }
  return new Uint8Array(Buffer.concat(parts))
}

const concat = (...parts: Array<Uint8Array>): Uint8Array => new Uint8Array(Buffer.concat(parts))

const damageOf = (result: ScanResult) => {
  assert.isDefined(result.damage)
  return result.damage!
}

describe("LogFraming", () => {
  describe("constants and checksums", () => {
    it("has the W&B file header, whose magic is the low 16 bits of the CRC of \"Weights & Biases\"", () => {
      assert.strictEqual(hex(Uint8Array.from(FILE_HEADER)), "3a572642e1be00")
      const magic = crc32(ascii("Weights & Biases")) & 0xffff
      assert.strictEqual(magic, 0xbee1)
    })

    it("computes the IEEE CRC-32 and continues a running value", () => {
      assert.strictEqual(crc32(ascii("123456789")), 0xcbf43926)
      assert.strictEqual(crc32(ascii("6789"), 0, 4, crc32(ascii("12345"))), 0xcbf43926)
      assert.strictEqual(crc32(ascii("xx123456789yy"), 2, 11), 0xcbf43926)
    })

    it("seeds the chunk checksum with the type byte", () => {
      const empty = new Uint8Array(0)
      assert.deepStrictEqual(
        [ChunkType.FULL, ChunkType.FIRST, ChunkType.MIDDLE, ChunkType.LAST].map((t) => chunkChecksum(t, empty)),
        [0xa505df1b, 0x3c0c8ea1, 0x4b0bbe37, 0xd56f2b94]
      )
      const payload = ascii("payload")
      assert.strictEqual(chunkChecksum(ChunkType.LAST, payload), crc32(concat(Uint8Array.of(4), payload)))
    })
  })

  describe("frame", () => {
    it("frames an empty record as the Go test vector", () => {
      const framed = frame(7, new Uint8Array(0))
      assert.strictEqual(hex(framed.bytes), "1bdf05a5000001")
      assert.strictEqual(framed.next, 14)
    })

    it("frames the worked example Record{num: 1, header: {}}", () => {
      const file = logOf([fromHex("08 01 aa 01 00")])
      assert.strictEqual(hex(file), "3a572642e1be00" + "55b7a63f" + "0500" + "01" + "0801aa0100")
    })

    it("gives a 24-byte file for records of 1 and 2 bytes", () => {
      assert.strictEqual(logOf([Uint8Array.of(1), Uint8Array.of(2, 3)]).length, 24)
    })

    it("ends a record that exactly fills the block with a FULL chunk and no padding after it", () => {
      const position = 7
      const payload = filled(BLOCK_SIZE - position - 7, 1)
      const framed = frame(position, payload)
      assert.strictEqual(framed.bytes.length, BLOCK_SIZE - position)
      assert.strictEqual(framed.next, BLOCK_SIZE)
      assert.strictEqual(framed.bytes[6], ChunkType.FULL)

      const after = frame(framed.next, Uint8Array.of(9))
      assert.strictEqual(after.bytes.length, 8, "the next record starts the next block without padding")
    })

    it("splits a record one byte too long for the block into a FIRST and a one-byte LAST", () => {
      const position = 7
      const payload = filled(BLOCK_SIZE - position - 7 + 1, 2)
      const bytes = frame(position, payload).bytes
      assert.deepStrictEqual(chunkLayout(concat(Uint8Array.from(FILE_HEADER), bytes)), [
        { offset: 7, type: ChunkType.FIRST, length: BLOCK_SIZE - 14 },
        { offset: BLOCK_SIZE, type: ChunkType.LAST, length: 1 }
      ])
    })

    it("writes a zero-length FIRST chunk when exactly 7 bytes are left in the block", () => {
      const position = BLOCK_SIZE - 7
      const payload = filled(10, 3)
      const framed = frame(position, payload)
      assert.strictEqual(hex(framed.bytes.subarray(0, 7)), "a18e0c3c000002")
      const last = framed.bytes.subarray(7)
      assert.strictEqual(last[4], 10)
      assert.strictEqual(last[6], ChunkType.LAST)
      assert.strictEqual(hex(last.subarray(7)), hex(payload))
      assert.strictEqual(framed.next, BLOCK_SIZE + 7 + 10)
    })

    it("still fits a record in exactly 7 bytes when it is empty", () => {
      const framed = frame(BLOCK_SIZE - 7, new Uint8Array(0))
      assert.strictEqual(hex(framed.bytes), "1bdf05a5000001")
      assert.strictEqual(framed.next, BLOCK_SIZE)
    })

    it("pads 1 to 6 leftover bytes with zeros and starts the record in the next block", () => {
      for (let left = 1; left <= 6; left++) {
        const position = 3 * BLOCK_SIZE - left
        const payload = filled(20, left)
        const framed = frame(position, payload)
        assert.strictEqual(framed.bytes.length, left + 7 + 20)
        assert.deepStrictEqual(Array.from(framed.bytes.subarray(0, left)), new Array<number>(left).fill(0))
        const chunk = framed.bytes.subarray(left)
        assert.strictEqual(chunk[6], ChunkType.FULL)
        assert.strictEqual(hex(chunk.subarray(7)), hex(payload))
        assert.strictEqual(framed.next, 3 * BLOCK_SIZE + 27)
      }
    })

    it("splits a record larger than two blocks into FIRST, MIDDLE and LAST on block boundaries", () => {
      const payload = filled(70_098, 4)
      const file = concat(new Uint8Array(733), frame(733, payload).bytes)
      const chunks = chunkLayout(file, 733)
      assert.deepStrictEqual(chunks, [
        { offset: 733, type: ChunkType.FIRST, length: BLOCK_SIZE - 733 - 7 },
        { offset: BLOCK_SIZE, type: ChunkType.MIDDLE, length: MAX_CHUNK_PAYLOAD },
        { offset: 2 * BLOCK_SIZE, type: ChunkType.LAST, length: 70_098 - (BLOCK_SIZE - 740) - MAX_CHUNK_PAYLOAD }
      ])
    })

    it("agrees with framedLength and writes padding over old bytes in a reused buffer", () => {
      const random = seededRandom(42)
      const target = new Uint8Array(5 * BLOCK_SIZE).fill(0xee)
      for (let i = 0; i < 2000; i++) {
        const position = 7 + Math.floor(random() * 4 * BLOCK_SIZE)
        const length = random() < 0.9 ? Math.floor(random() * 300) : Math.floor(random() * 3 * BLOCK_SIZE)
        const payload = filled(length, i)
        const expected = frame(position, payload).bytes
        assert.strictEqual(framedLength(position, length), expected.length)
        const written = writeFramed(target, 11, position, payload)
        assert.strictEqual(written, expected.length)
        assert.strictEqual(hex(target.subarray(11, 11 + written)), hex(expected))
        target.fill(0xee)
      }
    })
  })

  describe("scan", () => {
    const payloadsOf = (result: ScanResult) => result.records.map((record) => hex(record.payload))

    it("reads back records of random sizes with their offsets, sizes and chunk counts", () => {
      const random = seededRandom(7)
      const payloads = Array.from({ length: 400 }, (_, i) => {
        const roll = random()
        const length = roll < 0.8 ? Math.floor(random() * 200) : roll < 0.95 ? 32_000 + i : 80_000 + i
        return filled(length, i)
      })
      const file = logOf(payloads)
      const result = scan(file)

      assert.isUndefined(result.damage)
      assert.strictEqual(result.end, file.length)
      assert.deepStrictEqual(payloadsOf(result), payloads.map(hex))

      let position = 7
      for (const [i, record] of result.records.entries()) {
        const padding = BLOCK_SIZE - (position % BLOCK_SIZE) < 7 ? BLOCK_SIZE - (position % BLOCK_SIZE) : 0
        assert.strictEqual(record.offset, position + padding)
        assert.strictEqual(record.bytes, payloads[i]!.length)
        const framed = frame(position, payloads[i]!)
        assert.strictEqual(record.end, framed.next)
        const layout = chunkLayout(concat(new Uint8Array(position), framed.bytes), position)
        assert.strictEqual(record.chunks, layout.length)
        position = framed.next
      }
      assert.isTrue(result.records.some((record) => record.chunks >= 3))
    })

    it("reads from a record boundary with only the bytes from there on", () => {
      const payloads = Array.from({ length: 50 }, (_, i) => filled(i * 997, i))
      const file = logOf(payloads)
      const all = scan(file)
      for (const [i, record] of all.records.entries()) {
        const tail = scan(file.subarray(record.offset), record.offset)
        assert.isUndefined(tail.damage)
        assert.deepStrictEqual(payloadsOf(tail), payloads.slice(i).map(hex))
        assert.deepStrictEqual(tail.records.map((r) => r.offset), all.records.slice(i).map((r) => r.offset))

        // The end of the previous record is a boundary too, even when padding follows it.
        const previousEnd = i === 0 ? 7 : all.records[i - 1]!.end
        const fromEnd = scan(file.subarray(previousEnd), previousEnd)
        assert.deepStrictEqual(payloadsOf(fromEnd), payloads.slice(i).map(hex))
      }
      assert.deepStrictEqual(scan(new Uint8Array(0), file.length), { records: [], end: file.length, damage: undefined })
    })

    it("accepts a file that ends 1 to 6 bytes before a block boundary", () => {
      for (let left = 1; left <= 6; left++) {
        const file = logOf([filled(BLOCK_SIZE - 14 - left, left)])
        assert.strictEqual(file.length, BLOCK_SIZE - left)
        const result = scan(file)
        assert.isUndefined(result.damage)
        assert.strictEqual(result.records.length, 1)
        assert.strictEqual(result.end, file.length)
      }
    })

    it("accepts block padding that reaches the block end with nothing after it", () => {
      const file = concat(logOf([filled(BLOCK_SIZE - 17, 1)]), new Uint8Array(3))
      assert.strictEqual(file.length, BLOCK_SIZE)
      const result = scan(file)
      assert.isUndefined(result.damage)
      assert.strictEqual(result.end, BLOCK_SIZE - 3)
    })

    it("reports an empty file and a short header as truncated, a wrong header as corrupt", () => {
      assert.deepStrictEqual(damageOf(scan(new Uint8Array(0))).kind, "truncated")
      assert.deepStrictEqual(damageOf(scan(fromHex("3a572642e1"))), {
        kind: "truncated",
        offset: 0,
        reason: "the file ends inside its 7-byte header"
      })
      assert.deepStrictEqual(damageOf(scan(fromHex("3a5726"))).kind, "truncated")
      assert.deepStrictEqual(damageOf(scan(fromHex("3a5826"))).offset, 0)
      const good = logOf([Uint8Array.of(1)])
      for (const [index, offset] of [[0, 0], [3, 0], [4, 4], [5, 4], [6, 6]] as const) {
        const bad = good.slice()
        bad[index] ^= 0x01
        const damage = damageOf(scan(bad))
        assert.strictEqual(damage.kind, "corrupt")
        assert.strictEqual(damage.offset, offset)
      }
    })

    it("reports a file cut anywhere inside a record as truncated, with the records before it", () => {
      const payloads = [filled(40, 1), filled(70_000, 2), filled(10, 3)]
      const file = logOf(payloads)
      const full = scan(file)
      const big = full.records[1]!
      const cuts = [big.offset + 1, big.offset + 7, big.offset + 100, BLOCK_SIZE, BLOCK_SIZE + 3, 2 * BLOCK_SIZE]
      for (const cut of [...cuts, big.end - 1]) {
        const result = scan(file.subarray(0, cut))
        const damage = damageOf(result)
        assert.strictEqual(damage.kind, "truncated", `cut at ${cut}`)
        assert.strictEqual(damage.offset, big.offset, `cut at ${cut}`)
        assert.strictEqual(result.end, full.records[0]!.end)
        assert.deepStrictEqual(payloadsOf(result), [hex(payloads[0]!)])
      }
    })

    it("reports block padding cut short as truncated", () => {
      const file = concat(logOf([filled(BLOCK_SIZE - 19, 1)]), new Uint8Array(2))
      const damage = damageOf(scan(file))
      assert.strictEqual(damage.kind, "truncated")
      assert.strictEqual(damage.offset, BLOCK_SIZE - 5)
    })

    it("reports zero bytes after the last record as corrupt", () => {
      const good = logOf([filled(30, 1)])
      for (const count of [1, 6, 7, 100]) {
        const result = scan(concat(good, new Uint8Array(count)))
        const damage = damageOf(result)
        assert.strictEqual(damage.kind, "corrupt", `${count} zero bytes`)
        assert.strictEqual(damage.offset, good.length)
        assert.strictEqual(result.records.length, 1)
        assert.strictEqual(result.end, good.length)
      }
    })

    it("reports a partial chunk header that is not all zero as truncated", () => {
      const good = logOf([filled(30, 1)])
      const next = frame(good.length, filled(30, 2)).bytes
      for (let count = 1; count <= 6; count++) {
        const damage = damageOf(scan(concat(good, next.subarray(0, count))))
        assert.strictEqual(damage.kind, "truncated")
        assert.strictEqual(damage.offset, good.length)
      }
    })

    it("reports wrong bytes as corrupt at the offending chunk", () => {
      const payloads = [filled(30, 1), filled(50_000, 2), filled(30, 3)]
      const file = logOf(payloads)
      const { records } = scan(file)
      const second = records[1]!
      const corrupt = (mutate: (bytes: Uint8Array) => void) => {
        const bytes = file.slice()
        mutate(bytes)
        return scan(bytes)
      }

      const flipped = corrupt((bytes) => {
        bytes[BLOCK_SIZE + 100]! ^= 0x40
      })
      assert.deepStrictEqual(damageOf(flipped), {
        kind: "corrupt",
        offset: BLOCK_SIZE,
        reason: "chunk checksum mismatch"
      })
      assert.strictEqual(flipped.records.length, 1)
      assert.strictEqual(flipped.end, records[0]!.end)

      const badType = corrupt((bytes) => {
        bytes[second.offset + 6] = 5
      })
      assert.deepStrictEqual(damageOf(badType), { kind: "corrupt", offset: second.offset, reason: "bad chunk type 5" })

      const crossing = corrupt((bytes) => {
        bytes[7 + 4] = 0xff
        bytes[7 + 5] = 0x7f
      })
      assert.strictEqual(damageOf(crossing).kind, "corrupt")
      assert.match(damageOf(crossing).reason, /crosses the block boundary/)

      const startsWithLast = corrupt((bytes) => {
        bytes[second.offset + 6] = ChunkType.LAST
        const crc = chunkChecksum(ChunkType.LAST, bytes, second.offset + 7, BLOCK_SIZE)
        bytes.set(Uint8Array.of(crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24), second.offset)
      })
      assert.deepStrictEqual(damageOf(startsWithLast), {
        kind: "corrupt",
        offset: second.offset,
        reason: "a record starts with a LAST chunk"
      })

      const fullInside = corrupt((bytes) => {
        bytes[BLOCK_SIZE + 6] = ChunkType.FULL
        const crc = chunkChecksum(ChunkType.FULL, bytes, BLOCK_SIZE + 7, second.end)
        bytes.set(Uint8Array.of(crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24), BLOCK_SIZE)
      })
      assert.strictEqual(damageOf(fullInside).offset, BLOCK_SIZE)
      assert.match(damageOf(fullInside).reason, /inside a record that is not finished/)
    })

    it("reports non-zero block padding and trailing garbage as corrupt", () => {
      const padded = logOf([filled(BLOCK_SIZE - 17, 1), filled(5, 2)])
      assert.strictEqual(scan(padded).records.length, 2)
      const dirty = padded.slice()
      dirty[BLOCK_SIZE - 2] = 1
      assert.deepStrictEqual(damageOf(scan(dirty)), {
        kind: "corrupt",
        offset: BLOCK_SIZE - 2,
        reason: "non-zero bytes in block padding"
      })

      const garbage = concat(logOf([filled(30, 1)]), fromHex("01020304 0506 07 0809"))
      assert.strictEqual(damageOf(scan(garbage)).kind, "corrupt")
    })
  })
})
