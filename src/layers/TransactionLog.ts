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
import * as NodeFs from "node:fs"
import type { Record } from "../internal/proto/wandb_internal_pb.js"
import { RecordSchema } from "../internal/proto/wandb_internal_pb.js"

// ---------------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------------

/**
 * Told where each appended record lies: from `start` (the file length before it, padding included) to
 * `end`. A reader that reached `start` can take the record from here instead of the file.
 *
 * @since 0.1.0
 * @category models
 */
export type OnFramed = (record: Record, start: number, end: number) => void

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
  readonly append: (records: ReadonlyArray<Record>, onFramed?: OnFramed) => Effect.Effect<void>
  /** Writes everything buffered with one write call. */
  readonly flush: Effect.Effect<void, StorageError>
  /** Flushes, then asks the operating system to put the file on stable storage. */
  readonly sync: Effect.Effect<void, StorageError>
  /** The file's length once everything appended so far is written, header included. */
  readonly position: Effect.Effect<number>
  /**
   * Appends and writes at once, without a fiber: for draining a backlog from inside a synchronous
   * training loop. Returns the write's error, if any; the bytes then stay buffered for the next flush.
   */
  readonly appendAndFlushSync: (records: ReadonlyArray<Record>, onFramed?: OnFramed) => StorageError | undefined
  /** Bytes on disk so far: a reader of the live log finds only whole records below this offset. */
  readonly written: () => number
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
  /** False when a bounded read (`maxBytes`) stopped before the end of the bytes on disk. */
  readonly reachedEnd: boolean
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
  readonly readFrom: (
    path: string,
    offset: number,
    options?: { readonly maxBytes?: number | undefined; readonly until?: number | undefined }
  ) => Effect.Effect<LogContents, StorageError>
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

const nodeError = (path: string, operation: string, error: unknown): StorageError =>
  new StorageError({ path, operation, reason: error instanceof Error ? error.message : String(error) })

// The writer writes synchronously, straight from the calling fiber. A training loop that never yields to
// the event loop must still be able to push its rows to disk (see `flushNow`) or memory would grow with
// every row; and one thread writing in order can never leave a hole or a torn record between flushes.
// Writes go to the page cache, so they cost about as much as the encoding before them.
const makeWriter = (path: string) =>
  Effect.gen(function*() {
    const fd = yield* Effect.try({
      try: () => NodeFs.openSync(path, "wx"),
      catch: (error) => nodeError(path, "create", error)
    })
    const header = Uint8Array.from(LogFraming.FILE_HEADER)
    yield* Effect.try({
      try: () => NodeFs.writeSync(fd, header),
      catch: (error) => nodeError(path, "write", error)
    })

    // Bytes in [flushed, used) are framed but not yet written.
    let buffer = new Uint8Array(INITIAL_CAPACITY)
    let flushed = 0
    let used = 0
    let position = LogFraming.FILE_HEADER_LENGTH
    let written = LogFraming.FILE_HEADER_LENGTH
    let closed = false

    const reserve = (length: number) => {
      if (used + length <= buffer.length) return
      let capacity = buffer.length * 2
      while (capacity < used + length) capacity *= 2
      const next = new Uint8Array(capacity)
      next.set(buffer.subarray(0, used))
      buffer = next
    }

    const appendNow = (records: ReadonlyArray<Record>, onFramed?: OnFramed): void => {
      if (closed) throw new Error(`TransactionLog.append: the writer of ${path} is closed`)
      for (let i = 0; i < records.length; i++) {
        if (records[i]!.recordType.case === undefined) {
          throw new Error(`TransactionLog.append: record ${i} of the batch has no record type`)
        }
      }

      const usedBefore = used
      const positionBefore = position
      const ends: Array<number> = onFramed === undefined ? [] : new Array(records.length)
      try {
        for (let i = 0; i < records.length; i++) {
          const payload = toBinary(RecordSchema, records[i]!)
          const length = LogFraming.framedLength(position, payload.length)
          reserve(length)
          LogFraming.writeFramed(buffer, used, position, payload)
          used += length
          position += length
          if (onFramed !== undefined) ends[i] = position
        }
        if (onFramed !== undefined) {
          let at = positionBefore
          for (let i = 0; i < records.length; i++) {
            const end = ends[i]!
            onFramed(records[i]!, at, end)
            at = end
          }
        }
      } catch (error) {
        used = usedBefore
        position = positionBefore
        throw error
      }
    }

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

    // Bytes a failed write did not take stay buffered, so the next flush writes them again: nothing that
    // was appended is dropped, and nothing is written twice.
    const flushNow = (): StorageError | undefined => {
      try {
        while (flushed < used) {
          const count = NodeFs.writeSync(fd, buffer, flushed, used - flushed)
          if (count === 0) return new StorageError({ path, operation: "write", reason: "no bytes were written" })
          flushed += count
          written += count
        }
        return undefined
      } catch (error) {
        return nodeError(path, "write", error)
      } finally {
        compact()
      }
    }

    const fromResult = (error: StorageError | undefined) => (error === undefined ? Effect.void : Effect.fail(error))

    const syncNow = Effect.suspend(() => fromResult(flushNow())).pipe(
      Effect.zipRight(Effect.try({ try: () => NodeFs.fsyncSync(fd), catch: (error) => nodeError(path, "sync", error) }))
    )

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        if (closed) return Effect.void
        closed = true
        return syncNow.pipe(
          Effect.catchAll((error) =>
            Effect.logWarning("The transaction log could not be written completely when it was closed").pipe(
              Effect.annotateLogs({ path, reason: error.reason })
            )
          ),
          Effect.ensuring(Effect.sync(() => NodeFs.closeSync(fd)))
        )
      })
    )

    const writer: LogWriter = {
      path,
      append: (records, onFramed) => Effect.sync(() => appendNow(records, onFramed)),
      flush: Effect.suspend(() => fromResult(flushNow())),
      sync: syncNow,
      position: Effect.sync(() => position),
      appendAndFlushSync: (records, onFramed) => {
        appendNow(records, onFramed)
        return flushNow()
      },
      written: () => written
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
    damage: Option.some(toDamage(path, { kind: "corrupt", offset, reason }, records.length)),
    reachedEnd: true
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
  return { records, end: scanned.end, damage, reachedEnd: true }
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

const readTail = (fs: FileSystem.FileSystem, path: string, offset: number, maxBytes: number, until: number) =>
  Effect.scoped(Effect.gen(function*() {
    const file = yield* fs.open(path, { flag: "r" })
    const size = Math.min(Number((yield* file.stat).size), until)
    if (size < offset) {
      const reason = `the file is ${size} bytes long, shorter than the offset`
      const damage = toDamage(path, { kind: "corrupt", offset, reason }, 0)
      return { records: [], end: offset, damage: Option.some(damage), reachedEnd: true } satisfies LogContents
    }

    // A live log may grow while this reads; only the bytes present at the stat are taken. A bounded read
    // that cuts a record in two is not damage: the record is read whole next time, and a record larger
    // than the bound is read by widening the window until it fits.
    let window = Math.max(1, maxBytes)
    yield* file.seek(offset, "start")
    for (;;) {
      const length = Math.min(size - offset, window)
      const bytes = new Uint8Array(length)
      let filled = 0
      while (filled < length) {
        const read = Number(yield* file.read(bytes.subarray(filled)))
        if (read === 0) break
        filled += read
      }
      const contents = decode(path, LogFraming.scan(bytes.subarray(0, filled), offset), offset)
      const cut = offset + filled < size
      if (!cut) return contents
      const cutInsideRecord = Option.isSome(contents.damage) && contents.damage.value._tag === "TransactionLogTruncated"
      if (cutInsideRecord && contents.records.length === 0) {
        window *= 2
        yield* file.seek(offset, "start")
        continue
      }
      return { ...contents, damage: cutInsideRecord ? Option.none() : contents.damage, reachedEnd: false }
    }
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

  const readFrom = (
    path: string,
    offset: number,
    options?: { readonly maxBytes?: number | undefined; readonly until?: number | undefined }
  ) =>
    offset <= LogFraming.FILE_HEADER_LENGTH && options?.maxBytes === undefined && options?.until === undefined
      ? read(path)
      : readTail(
        fs,
        path,
        Math.max(offset, LogFraming.FILE_HEADER_LENGTH),
        options?.maxBytes ?? Number.MAX_SAFE_INTEGER,
        options?.until ?? Number.MAX_SAFE_INTEGER
      ).pipe(Effect.withSpan("TransactionLog.readFrom", { attributes: { path, offset } }))

  const readOrFail = (path: string) =>
    Effect.flatMap(read(path), (contents) =>
      Option.match(contents.damage, {
        onNone: () => Effect.succeed(contents.records),
        onSome: (damage) => Effect.fail(damage)
      }))

  return TransactionLog.of({ create: makeWriter, read, readFrom, readOrFail })
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
