import { create, equals, toBinary } from "@bufbuild/protobuf"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { StorageError, TransactionLogCorrupt, TransactionLogTruncated } from "../src/domain/Errors.js"
import { BLOCK_SIZE, ChunkType, FILE_HEADER, frame } from "../src/domain/LogFraming.js"
import type { Record } from "../src/internal/proto/wandb_internal_pb.js"
import { RecordSchema } from "../src/internal/proto/wandb_internal_pb.js"
import type { LogContents, LogEntry } from "../src/layers/TransactionLog.js"
import * as TransactionLog from "../src/layers/TransactionLog.js"
import type { ExpectedRecord } from "./support/logFixtures.js"
import {
  damagedDir,
  expectedRecords,
  fixturePath,
  goodFixtures,
  withoutDecodedValues
} from "./support/logFixtures.js"
import { chunkLayout, recordOfSize, seededRandom, tempDir } from "./support/logRecords.js"

const TestLayer = TransactionLog.layer.pipe(Layer.provideMerge(NodeContext.layer))

const withLog = <A, E>(f: (log: TransactionLog.Service, dir: string) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const log = yield* TransactionLog.TransactionLog
    const dir = yield* tempDir
    return yield* f(log, dir)
  }).pipe(Effect.scoped, Effect.provide(TestLayer))

/** Writes `records` to a new log at `file` in one batch and closes it. */
const writeLog = (log: TransactionLog.Service, file: string, records: ReadonlyArray<Record>) =>
  Effect.scoped(Effect.gen(function*() {
    const writer = yield* log.create(file)
    yield* writer.append(records)
  }))

const assertMatchesExpected = (entries: ReadonlyArray<LogEntry>, expected: ReadonlyArray<ExpectedRecord>) => {
  assert.strictEqual(entries.length, expected.length)
  for (const [i, entry] of entries.entries()) {
    const want = expected[i]!
    assert.strictEqual(entry.offset, want.offset, `record ${i} offset`)
    assert.strictEqual(entry.bytes, want.bytes, `record ${i} bytes`)
    assert.strictEqual(entry.chunks, want.chunks, `record ${i} chunks`)
    assert.strictEqual(Number(entry.record.num), want.num, `record ${i} num`)
    assert.strictEqual(TransactionLog.recordTypeName(entry.record), want.type, `record ${i} type`)
    assert.deepStrictEqual(TransactionLog.recordToJson(entry.record), withoutDecodedValues(want.record), `record ${i}`)
  }
}

const history = (num: number, items: ReadonlyArray<readonly [string, string]>): Record =>
  create(RecordSchema, {
    num: BigInt(num),
    recordType: {
      case: "history",
      value: {
        item: items.map(([key, valueJson]) => ({ nestedKey: [key], valueJson })),
        step: { num: BigInt(num) }
      }
    }
  })

const header = (num: number): Record =>
  create(RecordSchema, { num: BigInt(num), recordType: { case: "header", value: {} } })

describe("TransactionLog", () => {
  describe("reading the official fixtures", () => {
    for (const name of goodFixtures) {
      it.effect(`decodes ${name} to exactly its expected records`, () =>
        withLog((log) =>
          Effect.gen(function*() {
            const contents = yield* log.read(fixturePath(name))
            assert.isTrue(Option.isNone(contents.damage))
            assert.strictEqual(contents.end, fs.statSync(fixturePath(name)).size)
            assertMatchesExpected(contents.records, expectedRecords(name))
          })
        ))
    }

    it.effect("readOrFail returns the same records for a good log", () =>
      withLog((log) =>
        Effect.gen(function*() {
          const records = yield* log.readOrFail(fixturePath("official-writer-small"))
          assertMatchesExpected(records, expectedRecords("official-writer-small"))
        })
      ))
  })

  describe("reading damaged logs", () => {
    const small = expectedRecords("official-writer-small")
    const multichunk = expectedRecords("official-writer-multichunk")

    // file → damage offset, and the intact records before it (a prefix of an official decoding).
    const cases: ReadonlyArray<readonly [string, number, ReadonlyArray<ExpectedRecord>]> = [
      ["corrupt-bad-chunk-type", 7, []],
      ["corrupt-bad-magic", 4, []],
      ["corrupt-bad-version", 6, []],
      ["corrupt-flipped-payload-byte", 196, small.slice(0, 2)],
      ["corrupt-payload-not-a-record", 7, []],
      ["corrupt-trailing-garbage", 702, small],
      ["corrupt-zero-bytes-appended", 702, small],
      ["empty", 0, []],
      ["truncated-after-first-chunk", 733, multichunk.slice(0, 11)],
      ["truncated-after-middle-chunk", 733, multichunk.slice(0, 11)],
      ["truncated-inside-chunk-header", 672, small.slice(0, 10)],
      ["truncated-inside-file-header", 0, []],
      ["truncated-inside-last-payload", 672, small.slice(0, 10)]
    ]

    it("has a case for every damaged fixture", () => {
      const files = fs.readdirSync(damagedDir).filter((file) => file.endsWith(".wandb")).sort()
      const covered = [...cases.map(([name]) => `${name}.wandb`), "corrupt-chunk-crosses-block.wandb"].sort()
      assert.deepStrictEqual(files, covered)
    })

    for (const [name, offset, before] of cases) {
      it.effect(`reports ${name} as ${name.startsWith("corrupt") ? "corrupt" : "truncated"}`, () =>
        withLog((log) =>
          Effect.gen(function*() {
            const file = path.join(damagedDir, `${name}.wandb`)
            const contents = yield* log.read(file)
            const damage = Option.getOrThrow(contents.damage)
            if (name.startsWith("corrupt")) assert.instanceOf(damage, TransactionLogCorrupt)
            else assert.instanceOf(damage, TransactionLogTruncated)
            assert.strictEqual(damage.path, file)
            assert.strictEqual(damage.offset, offset)
            assert.strictEqual(damage.recordsBefore, before.length)
            assertMatchesExpected(contents.records, before)

            const failure = yield* Effect.flip(log.readOrFail(file))
            assert.deepStrictEqual(failure, damage)
          })
        ))
    }

    it.effect("reports corrupt-chunk-crosses-block as corrupt after its one intact record", () =>
      withLog((log) =>
        Effect.gen(function*() {
          const contents = yield* log.read(path.join(damagedDir, "corrupt-chunk-crosses-block.wandb"))
          const damage = Option.getOrThrow(contents.damage)
          assert.instanceOf(damage, TransactionLogCorrupt)
          assert.strictEqual(damage.offset, 19)
          assert.strictEqual(damage.recordsBefore, 1)
          assert.strictEqual(contents.records.length, 1)
          assert.isTrue(equals(RecordSchema, contents.records[0]!.record, header(1)))
          assert.strictEqual(contents.end, 19)
        })
      ))

    it.effect("fails to read a missing file with a StorageError", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(log.read(path.join(dir, "missing.wandb")))
          assert.instanceOf(error, StorageError)
          assert.strictEqual(error.operation, "read")
        })
      ))

    it.effect("reports a record without a record type as corrupt", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const file = path.join(dir, "untyped.wandb")
          const untyped = toBinary(RecordSchema, create(RecordSchema, { num: BigInt(2), uuid: "u" }))
          const first = frame(7, toBinary(RecordSchema, header(1)))
          const second = frame(first.next, untyped)
          fs.writeFileSync(file, Buffer.concat([Uint8Array.from(FILE_HEADER), first.bytes, second.bytes]))

          const contents = yield* log.read(file)
          const damage = Option.getOrThrow(contents.damage)
          assert.instanceOf(damage, TransactionLogCorrupt)
          assert.strictEqual(damage.offset, first.next)
          assert.strictEqual(damage.reason, "the record has no record type")
          assert.strictEqual(contents.records.length, 1)
          assert.strictEqual(contents.end, first.next)
        })
      ))
  })

  describe("writing", () => {
    it.effect("reproduces every official fixture byte for byte from its decoded records", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          for (const name of goodFixtures) {
            const decoded = yield* log.readOrFail(fixturePath(name))
            const file = path.join(dir, `${name}.wandb`)
            yield* writeLog(log, file, decoded.map((entry) => entry.record))
            const ours = fs.readFileSync(file)
            const theirs = fs.readFileSync(fixturePath(name))
            assert.strictEqual(ours.length, theirs.length, name)
            assert.isTrue(ours.equals(theirs), `${name} differs`)
          }
        })
      ))

    it.effect("splits a history record over 64 KiB with the chunk layout of the official writer", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const official = fs.readFileSync(fixturePath("official-writer-multichunk"))
          const decoded = yield* log.readOrFail(fixturePath("official-writer-multichunk"))
          const big = decoded.find((entry) => entry.chunks > 1)!
          assert.strictEqual(big.offset, 733)

          // Our own records up to the same position, then our own history row of the same size.
          const lead = recordOfSize(733 - 7 - 7)
          const rowOf = (length: number) => history(12, [["blob", JSON.stringify("y".repeat(length))]])
          const draft = toBinary(RecordSchema, rowOf(big.bytes)).length
          const row = rowOf(big.bytes - (draft - big.bytes))
          assert.strictEqual(toBinary(RecordSchema, row).length, big.bytes)

          const file = path.join(dir, "ours.wandb")
          yield* writeLog(log, file, [lead, row, decoded[decoded.length - 1]!.record])
          const ours = chunkLayout(new Uint8Array(fs.readFileSync(file)), 733)
          assert.deepStrictEqual(ours, chunkLayout(new Uint8Array(official), 733))
          assert.deepStrictEqual(ours.map((chunk) => chunk.type), [
            ChunkType.FIRST,
            ChunkType.MIDDLE,
            ChunkType.LAST,
            ChunkType.FULL
          ])
        })
      ))

    it.effect("writes the file header at creation, before anything is flushed", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const file = path.join(dir, "run.wandb")
          const writer = yield* log.create(file)
          assert.strictEqual(writer.path, file)
          assert.strictEqual(Buffer.from(fs.readFileSync(file)).toString("hex"), "3a572642e1be00")
          assert.strictEqual(yield* writer.position, 7)

          yield* writer.append([header(1)])
          assert.strictEqual(fs.statSync(file).size, 7, "append does no I/O")
          assert.strictEqual(yield* writer.position, 19)

          yield* writer.flush
          assert.strictEqual(
            Buffer.from(fs.readFileSync(file)).toString("hex"),
            "3a572642e1be00" + "55b7a63f" + "0500" + "01" + "0801aa0100"
          )
        })
      ))

    it.effect("never opens an existing file and leaves it untouched", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const file = path.join(dir, "taken.wandb")
          fs.writeFileSync(file, "precious")
          const error = yield* Effect.flip(Effect.scoped(log.create(file)))
          assert.instanceOf(error, StorageError)
          assert.strictEqual(error.operation, "create")
          assert.strictEqual(fs.readFileSync(file, "utf8"), "precious")
        })
      ))

    it.effect("flushes and closes the file when the scope closes", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const file = path.join(dir, "closed.wandb")
          const records = [header(1), history(2, [["loss", "0.5"]])]
          const writer = yield* Effect.scoped(Effect.gen(function*() {
            const writer = yield* log.create(file)
            yield* writer.append(records)
            return writer
          }))

          const contents = yield* log.read(file)
          assert.isTrue(Option.isNone(contents.damage))
          assert.strictEqual(contents.records.length, 2)
          assert.isTrue(equals(RecordSchema, contents.records[1]!.record, records[1]!))

          const late = yield* Effect.exit(writer.append([header(3)]))
          assert.isTrue(Exit.isFailure(late) && Cause.isDie(late.cause), "appending after close is a defect")
        })
      ))

    it.effect("keeps nothing of a batch that holds a record without a type", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const writer = yield* log.create(path.join(dir, "batch.wandb"))
          yield* writer.append([header(1)])
          const untyped = create(RecordSchema, { num: BigInt(3) })
          const exit = yield* Effect.exit(writer.append([history(2, [["a", "1"]]), untyped]))
          assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
          assert.strictEqual(yield* writer.position, 19)

          yield* writer.sync
          const contents = yield* log.read(writer.path)
          assert.strictEqual(contents.records.length, 1)
          assert.strictEqual(contents.end, 19)
        })
      ))

    describe("block edges through the writer", () => {
      const layoutOf = (log: TransactionLog.Service, file: string, records: ReadonlyArray<Record>) =>
        Effect.gen(function*() {
          yield* writeLog(log, file, records)
          const bytes = new Uint8Array(fs.readFileSync(file))
          const contents = yield* log.read(file)
          assert.isTrue(Option.isNone(contents.damage))
          assert.strictEqual(contents.records.length, records.length)
          for (const [i, entry] of contents.records.entries()) {
            assert.isTrue(equals(RecordSchema, entry.record, records[i]!))
          }
          return { bytes, layout: chunkLayout(bytes), contents }
        })

      it.effect("a record that exactly fills the first block is one FULL chunk; the next needs no padding", () =>
        withLog((log, dir) =>
          Effect.gen(function*() {
            const { layout } = yield* layoutOf(log, path.join(dir, "fill.wandb"), [
              recordOfSize(BLOCK_SIZE - 14),
              recordOfSize(40, 2)
            ])
            assert.deepStrictEqual(layout, [
              { offset: 7, type: ChunkType.FULL, length: BLOCK_SIZE - 14 },
              { offset: BLOCK_SIZE, type: ChunkType.FULL, length: 40 }
            ])
          })
        ))

      it.effect("with exactly 7 bytes left the next record starts with an empty FIRST chunk", () =>
        withLog((log, dir) =>
          Effect.gen(function*() {
            const { bytes, layout } = yield* layoutOf(log, path.join(dir, "seven.wandb"), [
              recordOfSize(BLOCK_SIZE - 21),
              recordOfSize(40, 2)
            ])
            assert.deepStrictEqual(layout, [
              { offset: 7, type: ChunkType.FULL, length: BLOCK_SIZE - 21 },
              { offset: BLOCK_SIZE - 7, type: ChunkType.FIRST, length: 0 },
              { offset: BLOCK_SIZE, type: ChunkType.LAST, length: 40 }
            ])
            const emptyFirst = Buffer.from(bytes.subarray(BLOCK_SIZE - 7, BLOCK_SIZE)).toString("hex")
            assert.strictEqual(emptyFirst, "a18e0c3c000002")
          })
        ))

      for (let left = 1; left <= 6; left++) {
        it.effect(`with ${left} byte(s) left the block is zero-padded, and only when a record follows`, () =>
          withLog((log, dir) =>
            Effect.gen(function*() {
              const first = recordOfSize(BLOCK_SIZE - 14 - left)
              const alone = yield* layoutOf(log, path.join(dir, "alone.wandb"), [first])
              assert.strictEqual(alone.bytes.length, BLOCK_SIZE - left, "no padding at the end of the file")

              const second = recordOfSize(40, 2)
              const { bytes, layout } = yield* layoutOf(log, path.join(dir, "padded.wandb"), [first, second])
              assert.deepStrictEqual(layout[1], { offset: BLOCK_SIZE, type: ChunkType.FULL, length: 40 })
              assert.deepStrictEqual(Array.from(bytes.subarray(BLOCK_SIZE - left, BLOCK_SIZE)), Array(left).fill(0))
            })
          ))
      }

      it.effect("two of the smallest records, 3 bytes each, give a 27-byte file", () =>
        withLog((log, dir) =>
          Effect.gen(function*() {
            const smallest = create(RecordSchema, { recordType: { case: "final", value: {} } })
            assert.strictEqual(toBinary(RecordSchema, smallest).length, 3)
            const { bytes } = yield* layoutOf(log, path.join(dir, "tiny.wandb"), [smallest, smallest])
            assert.strictEqual(bytes.length, 7 + 10 + 10)
          })
        ))
    })

    it.effect("round-trips many records of random sizes over several flushes", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const random = seededRandom(2026)
          const file = path.join(dir, "random.wandb")
          const writer = yield* log.create(file)
          const written: Array<Record> = []
          const expectedFile: Array<Uint8Array> = [Uint8Array.from(FILE_HEADER)]
          let position = 7

          for (let batch = 0; batch < 40; batch++) {
            const records = Array.from({ length: 1 + Math.floor(random() * 60) }, () => {
              const roll = random()
              const size = roll < 0.85 ? 12 + Math.floor(random() * 400) : roll < 0.97 ? 30_000 : 100_000
              return recordOfSize(size + Math.floor(random() * 50), written.length + 1)
            })
            yield* writer.append(records)
            for (const record of records) {
              const framed = frame(position, toBinary(RecordSchema, record))
              expectedFile.push(framed.bytes)
              position = framed.next
            }
            written.push(...records)
            assert.strictEqual(yield* writer.position, position)
            if (random() < 0.5) yield* writer.flush
            if (random() < 0.1) yield* writer.sync
          }
          yield* writer.flush

          const bytes = fs.readFileSync(file)
          assert.isTrue(bytes.equals(Buffer.concat(expectedFile)), "the file is the concatenated frames")
          const contents = yield* log.read(file)
          assert.isTrue(Option.isNone(contents.damage))
          assert.strictEqual(contents.end, bytes.length)
          assert.strictEqual(contents.records.length, written.length)
          for (const [i, entry] of contents.records.entries()) {
            assert.isTrue(equals(RecordSchema, entry.record, written[i]!), `record ${i}`)
          }
          assert.isTrue(contents.records.some((entry) => entry.chunks > 2))
        })
      ))

    it.effect("keeps records appended while a flush is writing, in order", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const writer = yield* log.create(path.join(dir, "overlap.wandb"))
          const before = Array.from({ length: 300 }, (_, i) => recordOfSize(500, i + 1))
          const during = Array.from({ length: 300 }, (_, i) => recordOfSize(700, i + 301))
          yield* writer.append(before)
          yield* Effect.all([writer.flush, writer.append(during), writer.flush], { concurrency: "unbounded" })
          yield* writer.flush

          const contents = yield* log.read(writer.path)
          assert.isTrue(Option.isNone(contents.damage))
          assert.strictEqual(contents.end, yield* writer.position)
          assert.deepStrictEqual(
            contents.records.map((entry) => Number(entry.record.num)),
            Array.from({ length: 600 }, (_, i) => i + 1)
          )
        })
      ))

    it.effect("keeps NaN and Infinity as value_json text", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const values = ["NaN", "Infinity", "-Infinity", "{\"a\": NaN, \"b\": [Infinity, -Infinity]}"] as const
          const file = path.join(dir, "nan.wandb")
          yield* writeLog(log, file, [history(1, values.map((value, i) => [`k${i}`, value] as const))])
          const [entry] = yield* log.readOrFail(file)
          const record = entry!.record
          assert.strictEqual(record.recordType.case, "history")
          const items = record.recordType.case === "history" ? record.recordType.value.item : []
          assert.deepStrictEqual(items.map((item) => item.valueJson), [...values])
          const json = TransactionLog.recordToJson(record) as { history: { item: Array<{ value_json: string }> } }
          assert.deepStrictEqual(json.history.item.map((item) => item.value_json), [...values])
        })
      ))
  })

  describe("following a live log", () => {
    it.effect("reads only what was written, and resumes from the previous end", () =>
      withLog((log, dir) =>
        Effect.gen(function*() {
          const file = path.join(dir, "live.wandb")
          const writer = yield* log.create(file)

          const empty = yield* log.readFrom(file, 0)
          assert.deepStrictEqual([empty.records.length, empty.end, Option.isNone(empty.damage)], [0, 7, true])

          yield* writer.append([header(1), history(2, [["loss", "1"]])])
          yield* writer.flush
          const first: LogContents = yield* log.readFrom(file, empty.end)
          assert.deepStrictEqual(first.records.map((entry) => Number(entry.record.num)), [1, 2])
          assert.isTrue(Option.isNone(first.damage))

          const big = recordOfSize(50_000, 3)
          yield* writer.append([big, history(4, [["loss", "0.5"]])])
          yield* writer.flush

          // Simulate a reader that sees the file while the big record is half written.
          const full = fs.readFileSync(file)
          const partial = path.join(dir, "partial.wandb")
          fs.writeFileSync(partial, full.subarray(0, first.end + 40_000))
          const torn = yield* log.readFrom(partial, first.end)
          assert.strictEqual(torn.records.length, 0)
          assert.strictEqual(torn.end, first.end)
          assert.instanceOf(Option.getOrThrow(torn.damage), TransactionLogTruncated)

          const second = yield* log.readFrom(file, torn.end)
          assert.deepStrictEqual(second.records.map((entry) => Number(entry.record.num)), [3, 4])
          assert.strictEqual(second.records[0]!.offset, first.end)
          assert.strictEqual(second.end, full.length)

          const nothing = yield* log.readFrom(file, second.end)
          assert.strictEqual(nothing.records.length, 0)
          assert.strictEqual(nothing.end, full.length)
          assert.isTrue(Option.isNone(nothing.damage))

          const fromMiddle = yield* log.readFrom(file, second.records[1]!.offset)
          assert.deepStrictEqual(fromMiddle.records.map((entry) => Number(entry.record.num)), [4])

          const whole = yield* log.read(file)
          const fromSeven = yield* log.readFrom(file, 7)
          const offsets = (contents: LogContents) => contents.records.map((entry) => entry.offset)
          assert.deepStrictEqual(offsets(fromSeven), offsets(whole))
          assert.strictEqual(whole.records.length, 4)
        })
      ))

    it.effect("reports an offset past the end of the file as corrupt", () =>
      withLog((log) =>
        Effect.gen(function*() {
          const contents = yield* log.readFrom(fixturePath("official-writer-small"), 10_000)
          const damage = Option.getOrThrow(contents.damage)
          assert.instanceOf(damage, TransactionLogCorrupt)
          assert.strictEqual(damage.offset, 10_000)
        })
      ))
  })
})

describe("bounded reads of a live log", () => {
  it.effect("reads a log in windows of at most maxBytes, whole records only, and widens for a large record", () =>
    withLog((log, dir) =>
      Effect.gen(function*() {
        const file = path.join(dir, "windows.wandb")
        const writer = yield* log.create(file)
        const records = [header(1), ...Array.from({ length: 60 }, (_, i) => history(i + 2, [["loss", String(i)]]))]
        records.splice(30, 0, recordOfSize(5_000, 99))
        yield* writer.append(records)
        yield* writer.flush
        assert.strictEqual(writer.written(), yield* writer.position)

        const seen: Array<number> = []
        let offset = 0
        let reads = 0
        for (;;) {
          const window = yield* log.readFrom(file, offset, { maxBytes: 300 })
          reads++
          assert.isTrue(Option.isNone(window.damage))
          seen.push(...window.records.map((entry) => Number(entry.record.num)))
          offset = window.end
          if (window.reachedEnd) break
        }
        assert.deepStrictEqual(seen, records.map((record) => Number(record.num)))
        assert.isAbove(reads, 2)

        const upTo = yield* log.readFrom(file, 0, { until: 7 + 20 })
        assert.isAtMost(upTo.end, 27)
      })
    ))

  it.effect("appendAndFlushSync writes at once, without a fiber", () =>
    withLog((log, dir) =>
      Effect.gen(function*() {
        const file = path.join(dir, "sync.wandb")
        const writer = yield* log.create(file)
        assert.isUndefined(writer.appendAndFlushSync([header(1), history(2, [["a", "1"]])]))
        assert.strictEqual(fs.statSync(file).size, writer.written())
        const contents = yield* log.read(file)
        assert.deepStrictEqual(contents.records.map((entry) => Number(entry.record.num)), [1, 2])
      })
    ))
})
