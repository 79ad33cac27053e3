/**
 * The run's transaction log on disk (`run-<id>.wandb`): an append-only writer, and readers for a finished
 * log, for a log that is still being written, and for a damaged one.
 *
 * The writer buffers framed records in memory and writes them with one write per flush, so a log only
 * ever grows by whole records: no padding without a following record, no zero-filled tail. The readers
 * hand back every intact record before any damage and say what the damage is.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { fromBinary, toBinary, toJson } from "@bufbuild/protobuf"
import type { JsonObject } from "@bufbuild/protobuf"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { StorageError, TransactionLogCorrupt, TransactionLogTruncated } from "../domain/Errors.js"
import * as LogFraming from "../domain/LogFraming.js"
import type { Record } from "../internal/proto/wandb_internal_pb.js"
import { RecordSchema } from "../internal/proto/wandb_internal_pb.js"

// ---------------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------------

/**
 * An open log being appended to. Obtained from `TransactionLog.create`; it lives as long as its scope.
 *
 * @since 0.1.0
 * @category models
 */
export interface LogWriter {
  readonly path: string
  /**
   * Encodes and frames the records into the in-memory buffer. It does no I/O. A batch is all or nothing:
   * if one record cannot be encoded, none of the batch is kept. A record without a record type, or a call
   * after the writer's scope closed, is a defect.
   */
  readonly append: (records: ReadonlyArray<Record>) => Effect.Effect<void>
  /** Writes everything buffered with one write call. */
  readonly flush: Effect.Effect<void, StorageError>
  /** Flushes, then asks the operating system to put the file on stable storage. */
  readonly sync: Effect.Effect<void, StorageError>
  /** The file's length once everything appended so far is written, header included. */
  readonly position: Effect.Effect<number>
}

/**
 * One record read from a log.
 *
 * @since 0.1.0
 * @category models
 */
export interface LogEntry {
  /** Absolute offset of the record's first chunk header. */
  readonly offset: number
  /** Serialized length of the record. */
  readonly bytes: number
  /** Number of chunks that carried it (1 for a FULL chunk). */
  readonly chunks: number
  readonly record: Record
}

/**
 * @since 0.1.0
 * @category models
 */
export type LogDamage = TransactionLogCorrupt | TransactionLogTruncated

/**
 * What a read found.
 *
 * @since 0.1.0
 * @category models
 */
export interface LogContents {
  readonly records: ReadonlyArray<LogEntry>
  /**
   * Absolute offset after the last intact record. A reader that follows a live log passes it to
   * `readFrom` next time.
   */
  readonly end: number
  /**
   * Why reading stopped early. `TransactionLogTruncated` means the bytes end inside a record: for a log
   * that is still being written, that record is not complete yet. `recordsBefore` counts the records
   * returned by this read.
   */
  readonly damage: Option.Option<LogDamage>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Creates a new log at `path` and writes its file header at once. It fails if the file exists: a log
   * is never truncated or reopened. Closing the scope flushes, syncs and closes the file.
   */
  readonly create: (path: string) => Effect.Effect<LogWriter, StorageError, Scope.Scope>
  /** Reads a whole log. */
  readonly read: (path: string) => Effect.Effect<LogContents, StorageError>
  /**
   * Reads the records from the record boundary `offset` on: the `end` of an earlier read, or a record's
   * `offset`. 0 and 7 both mean the start of the file.
   */
  readonly readFrom: (path: string, offset: number) => Effect.Effect<LogContents, StorageError>
  /** Reads a whole log and fails with its damage, if any. */
  readonly readOrFail: (path: string) => Effect.Effect<ReadonlyArray<LogEntry>, StorageError | LogDamage>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class TransactionLog extends Context.Tag("wandb-effect/TransactionLog")<TransactionLog, Service>() {}

// ---------------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------------

const INITIAL_CAPACITY = 64 * 1024

// A buffer that grew for a burst (or one large record) is given back after it drains.
const RETAINED_CAPACITY = 4 * 1024 * 1024

const storageError = (path: string, operation: string) => (error: PlatformError): StorageError =>
  new StorageError({ path, operation, reason: error.message })

const makeWriter = (fs: FileSystem.FileSystem, path: string) =>
  Effect.gen(function*() {
    const file = yield* fs.open(path, { flag: "wx" }).pipe(Effect.mapError(storageError(path, "create")))
    yield* file.writeAll(Uint8Array.from(LogFraming.FILE_HEADER)).pipe(
      Effect.mapError(storageError(path, "write"))
    )

    // Bytes in [flushed, used) are framed but not yet written. Indices stay put while a write is in
    // flight, so appends during a flush only ever add after `used`.
    let buffer = new Uint8Array(INITIAL_CAPACITY)
    let flushed = 0
    let used = 0
    let position = LogFraming.FILE_HEADER_LENGTH
    let closed = false
    const lock = yield* Effect.makeSemaphore(1)

    const reserve = (length: number) => {
      if (used + length <= buffer.length) return
      let capacity = buffer.length * 2
      while (capacity < used + length) capacity *= 2
      const next = new Uint8Array(capacity)
      next.set(buffer.subarray(0, used))
      buffer = next
    }

    const append = (records: ReadonlyArray<Record>): Effect.Effect<void> =>
      Effect.sync(() => {
        if (closed) throw new Error(`TransactionLog.append: the writer of ${path} is closed`)
        for (let i = 0; i < records.length; i++) {
          if (records[i]!.recordType.case === undefined) {
            throw new Error(`TransactionLog.append: record ${i} of the batch has no record type`)
          }
        }

        const usedBefore = used
        const positionBefore = position
        try {
          for (let i = 0; i < records.length; i++) {
            const payload = toBinary(RecordSchema, records[i]!)
            const length = LogFraming.framedLength(position, payload.length)
            reserve(length)
            LogFraming.writeFramed(buffer, used, position, payload)
            used += length
            position += length
          }
        } catch (error) {
          used = usedBefore
          position = positionBefore
          throw error
        }
      })

    const compact = () => {
      if (flushed === used) {
        flushed = 0
        used = 0
        if (buffer.length > RETAINED_CAPACITY) buffer = new Uint8Array(INITIAL_CAPACITY)
      } else if (flushed > 0) {
        buffer.copyWithin(0, flushed, used)
        used -= flushed
        flushed = 0
      }
    }

    // Uninterruptible: a write that completed after an interruption would otherwise be written again.
    const flushNow: Effect.Effect<void, StorageError> = Effect.suspend(() => {
      const until = used
      const loop: Effect.Effect<void, StorageError> = Effect.suspend(() => {
        if (flushed >= until) return Effect.void
        return file.write(buffer.subarray(flushed, until)).pipe(
          Effect.mapError(storageError(path, "write")),
          Effect.flatMap((written) => {
            if (written === BigInt(0)) {
              return Effect.fail(new StorageError({ path, operation: "write", reason: "no bytes were written" }))
            }
            flushed += Number(written)
            return loop
          })
        )
      })
      return Effect.ensuring(loop, Effect.sync(compact))
    }).pipe(Effect.uninterruptible)

    const syncNow = flushNow.pipe(Effect.zipRight(file.sync.pipe(Effect.mapError(storageError(path, "sync")))))

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        return lock.withPermits(1)(syncNow)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning("The transaction log could not be written completely when it was closed").pipe(
            Effect.annotateLogs({ path, reason: error.reason })
          )
        )
      )
    )

    const writer: LogWriter = {
      path,
      append,
      flush: lock.withPermits(1)(flushNow),
      sync: lock.withPermits(1)(syncNow),
      position: Effect.sync(() => position)
    }
    return writer
  }).pipe(Effect.withSpan("TransactionLog.create", { attributes: { path } }))

// ---------------------------------------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------------------------------------

const toDamage = (
  path: string,
  damage: LogFraming.ScanDamage,
  recordsBefore: number
): LogDamage => {
  const fields = { path, offset: damage.offset, reason: damage.reason, recordsBefore }
  return damage.kind === "truncated" ? new TransactionLogTruncated(fields) : new TransactionLogCorrupt(fields)
}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * Decodes the scanned payloads. A payload that is not a Record, or a Record with no record type, is
 * corrupt: the official senders cannot process either.
 */
const decode = (path: string, scanned: LogFraming.ScanResult, start: number): LogContents => {
  const records: Array<LogEntry> = []
  let end = start
  const corrupt = (offset: number, reason: string): LogContents => ({
    records,
    end,
    damage: Option.some(toDamage(path, { kind: "corrupt", offset, reason }, records.length))
  })

  for (const found of scanned.records) {
    let record: Record
    try {
      record = fromBinary(RecordSchema, found.payload)
    } catch (error) {
      return corrupt(found.offset, `the payload is not a Record: ${describe(error)}`)
    }
    if (record.recordType.case === undefined) {
      return corrupt(found.offset, "the record has no record type")
    }
    records.push({ offset: found.offset, bytes: found.bytes, chunks: found.chunks, record })
    end = found.end
  }

  const damage = scanned.damage === undefined
    ? Option.none()
    : Option.some(toDamage(path, scanned.damage, records.length))
  return { records, end: scanned.end, damage }
}

const readWhole = (fs: FileSystem.FileSystem, path: string) =>
  fs.readFile(path).pipe(
    Effect.mapError(storageError(path, "read")),
    Effect.map((bytes) => {
      const scanned = LogFraming.scan(bytes, 0)
      // The scan ends at 0 only when the file header itself is damaged.
      return decode(path, scanned, Math.min(scanned.end, LogFraming.FILE_HEADER_LENGTH))
    })
  )

const readTail = (fs: FileSystem.FileSystem, path: string, offset: number) =>
  Effect.scoped(Effect.gen(function*() {
    const file = yield* fs.open(path, { flag: "r" })
    const size = Number((yield* file.stat).size)
    if (size < offset) {
      const reason = `the file is ${size} bytes long, shorter than the offset`
      const damage = toDamage(path, { kind: "corrupt", offset, reason }, 0)
      return { records: [], end: offset, damage: Option.some(damage) } satisfies LogContents
    }

    // A live log may grow while this reads; only the bytes present at the stat are taken.
    const bytes = new Uint8Array(size - offset)
    yield* file.seek(offset, "start")
    let filled = 0
    while (filled < bytes.length) {
      const read = Number(yield* file.read(bytes.subarray(filled)))
      if (read === 0) break
      filled += read
    }
    return decode(path, LogFraming.scan(bytes.subarray(0, filled), offset), offset)
  })).pipe(Effect.mapError(storageError(path, "read")))

// ---------------------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Service, never, FileSystem.FileSystem> = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem

  const read = (path: string) =>
    readWhole(fs, path).pipe(Effect.withSpan("TransactionLog.read", { attributes: { path } }))

  const readFrom = (path: string, offset: number) =>
    offset <= LogFraming.FILE_HEADER_LENGTH
      ? read(path)
      : readTail(fs, path, offset).pipe(Effect.withSpan("TransactionLog.readFrom", { attributes: { path, offset } }))

  const readOrFail = (path: string) =>
    Effect.flatMap(read(path), (contents) =>
      Option.match(contents.damage, {
        onNone: () => Effect.succeed(contents.records),
        onSome: (damage) => Effect.fail(damage)
      }))

  return TransactionLog.of({ create: (path) => makeWriter(fs, path), read, readFrom, readOrFail })
})

/**
 * The log on the platform's file system.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<TransactionLog, never, FileSystem.FileSystem> = Layer.effect(TransactionLog, make)

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/**
 * The proto field name of a record's type (`"history"`, `"output_raw"`, ...), or `undefined` if it has
 * none.
 *
 * @since 0.1.0
 * @category helpers
 */
export const recordTypeName = (record: Record): string | undefined => {
  const kind = record.recordType.case
  if (kind === undefined) return undefined
  return RecordSchema.field[kind]?.name
}

/**
 * A record in the protobuf JSON mapping with proto field names: 64-bit integers as strings, timestamps
 * as RFC 3339 text, enums by name. This is the shape the official reader prints, and the one in the
 * fixtures' `.expected.jsonl` files (less their added `value` fields).
 *
 * @since 0.1.0
 * @category helpers
 */
export const recordToJson = (record: Record): JsonObject =>
  toJson(RecordSchema, record, { useProtoFieldName: true }) as JsonObject
