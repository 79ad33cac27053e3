/**
 * The byte layout of a W&B transaction log (`run-<id>.wandb`), without any I/O.
 *
 * A log is a 7-byte file header followed by LevelDB-style chunks in 32 KiB blocks. Each record payload
 * travels in one FULL chunk, or in a FIRST, any number of MIDDLE and a LAST chunk when it does not fit
 * in what is left of the current block. A chunk never crosses a block boundary; fewer than 7 bytes left
 * in a block are zero padding. The block arithmetic always uses absolute file offsets, so the header
 * counts against the first block.
 *
 * The framer reproduces the official writers byte for byte. The scanner classifies damage the way
 * `wandb sync` needs it: `truncated` when the bytes stop inside a record (a writer died, or a live log is
 * still being written), `corrupt` when bytes are wrong.
 *
 * @since 0.1.0
 */

/**
 * The file header: ASCII `:W&B`, the magic `0xBEE1` as uint16 little-endian, and store version 0.
 *
 * @since 0.1.0
 * @category constants
 */
export const FILE_HEADER: ReadonlyArray<number> = Object.freeze([0x3a, 0x57, 0x26, 0x42, 0xe1, 0xbe, 0x00])

/**
 * @since 0.1.0
 * @category constants
 */
export const FILE_HEADER_LENGTH = 7

/**
 * @since 0.1.0
 * @category constants
 */
export const BLOCK_SIZE = 32768

/**
 * @since 0.1.0
 * @category constants
 */
export const CHUNK_HEADER_LENGTH = 7

/**
 * The largest payload one chunk can carry: a whole block minus its chunk header.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_CHUNK_PAYLOAD = BLOCK_SIZE - CHUNK_HEADER_LENGTH

/**
 * @since 0.1.0
 * @category models
 */
export type ChunkType = 1 | 2 | 3 | 4

/**
 * @since 0.1.0
 * @category constants
 */
export const ChunkType = {
  FULL: 1,
  FIRST: 2,
  MIDDLE: 3,
  LAST: 4
} as const satisfies { readonly [name: string]: ChunkType }

// ---------------------------------------------------------------------------------------------------------
// CRC-32
// ---------------------------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    }
    table[n] = c >>> 0
  }
  return table
})()

/**
 * CRC-32 (IEEE 802.3, the zlib `crc32`) of `bytes[start, end)`. Passing the CRC of earlier bytes as
 * `crc` continues it, as zlib's running value does.
 *
 * @since 0.1.0
 * @category checksums
 */
export const crc32 = (bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number => {
  let c = ~crc
  for (let i = start; i < end; i++) {
    c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  }
  return ~c >>> 0
}

// The checksum covers the type byte and then the payload, so each type's one-byte CRC is a ready seed.
const TYPE_SEED = [0, 1, 2, 3, 4].map((type) => crc32(Uint8Array.of(type)))

/**
 * The checksum stored in a chunk header: CRC-32 over the type byte followed by the payload bytes
 * `payload[start, end)`. Unlike LevelDB it is neither CRC-32C nor masked.
 *
 * @since 0.1.0
 * @category checksums
 */
export const chunkChecksum = (type: ChunkType, payload: Uint8Array, start = 0, end = payload.length): number =>
  crc32(payload, start, end, TYPE_SEED[type]!)

// ---------------------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------------------

/**
 * How many bytes framing a payload of `length` bytes appends when the next chunk would start at the
 * absolute file offset `position`: block padding if needed, chunk headers and the payload.
 *
 * @since 0.1.0
 * @category framing
 */
export const framedLength = (position: number, length: number): number => {
  let left = BLOCK_SIZE - (position % BLOCK_SIZE)
  let padding = 0
  if (left < CHUNK_HEADER_LENGTH) {
    padding = left
    left = BLOCK_SIZE
  }
  if (length + CHUNK_HEADER_LENGTH <= left) {
    return padding + CHUNK_HEADER_LENGTH + length
  }

  // The FIRST chunk fills the block; what remains goes into whole-block MIDDLE chunks and one LAST chunk.
  const rest = length - (left - CHUNK_HEADER_LENGTH)
  const fullBlocks = Math.ceil(rest / MAX_CHUNK_PAYLOAD) - 1
  const lastLength = rest - fullBlocks * MAX_CHUNK_PAYLOAD
  return padding + left + fullBlocks * BLOCK_SIZE + CHUNK_HEADER_LENGTH + lastLength
}

const writeChunk = (
  target: Uint8Array,
  at: number,
  type: ChunkType,
  payload: Uint8Array,
  start: number,
  end: number
): number => {
  const crc = chunkChecksum(type, payload, start, end)
  const length = end - start
  target[at] = crc & 0xff
  target[at + 1] = (crc >>> 8) & 0xff
  target[at + 2] = (crc >>> 16) & 0xff
  target[at + 3] = crc >>> 24
  target[at + 4] = length & 0xff
  target[at + 5] = length >>> 8
  target[at + 6] = type
  target.set(payload.subarray(start, end), at + CHUNK_HEADER_LENGTH)
  return at + CHUNK_HEADER_LENGTH + length
}

/**
 * Writes the framed form of `payload` into `target` at index `at`, for a next chunk at the absolute file
 * offset `position`, and returns the number of bytes written, which is always
 * `framedLength(position, payload.length)`. `target` must have that much room; padding is written
 * explicitly, so `target` may hold old bytes.
 *
 * @since 0.1.0
 * @category framing
 */
export const writeFramed = (target: Uint8Array, at: number, position: number, payload: Uint8Array): number => {
  const begin = at
  let left = BLOCK_SIZE - (position % BLOCK_SIZE)
  if (left < CHUNK_HEADER_LENGTH) {
    target.fill(0, at, at + left)
    at += left
    left = BLOCK_SIZE
  }

  const length = payload.length
  if (length + CHUNK_HEADER_LENGTH <= left) {
    return writeChunk(target, at, ChunkType.FULL, payload, 0, length) - begin
  }

  // When exactly a chunk header's worth is left, this FIRST chunk is empty; the writers do emit it.
  let sent = left - CHUNK_HEADER_LENGTH
  at = writeChunk(target, at, ChunkType.FIRST, payload, 0, sent)
  while (length - sent > MAX_CHUNK_PAYLOAD) {
    at = writeChunk(target, at, ChunkType.MIDDLE, payload, sent, sent + MAX_CHUNK_PAYLOAD)
    sent += MAX_CHUNK_PAYLOAD
  }
  return writeChunk(target, at, ChunkType.LAST, payload, sent, length) - begin
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Framed {
  /** The bytes to append to the file. */
  readonly bytes: Uint8Array
  /** The absolute file offset after them, where the next record's framing starts. */
  readonly next: number
}

/**
 * The exact bytes that appending `payload` adds to a log whose next chunk would start at the absolute
 * file offset `position`. It allocates; `writeFramed` into a reused buffer does not.
 *
 * @since 0.1.0
 * @category framing
 */
export const frame = (position: number, payload: Uint8Array): Framed => {
  const bytes = new Uint8Array(framedLength(position, payload.length))
  writeFramed(bytes, 0, position, payload)
  return { bytes, next: position + bytes.length }
}

// ---------------------------------------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------------------------------------

/**
 * One complete record found by `scan`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScannedRecord {
  /** Absolute offset of the record's first chunk header (after any block padding). */
  readonly offset: number
  /** Absolute offset just after the record's last chunk. */
  readonly end: number
  /** Payload length in bytes. */
  readonly bytes: number
  /** 1 for a FULL chunk, otherwise FIRST + MIDDLEs + LAST. */
  readonly chunks: number
  /** The serialized record. For a one-chunk record it is a view into the scanned bytes. */
  readonly payload: Uint8Array
}

/**
 * Why a scan stopped before a clean end. `truncated`: the bytes end inside the file header or a record,
 * and `offset` is where that incomplete part starts. `corrupt`: bytes are wrong, and `offset` points at
 * the offending header field, padding byte or chunk header.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScanDamage {
  readonly kind: "truncated" | "corrupt"
  readonly offset: number
  readonly reason: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ScanResult {
  readonly records: Array<ScannedRecord>
  /** Absolute offset after the last complete record (or where the scan started, if there is none). */
  readonly end: number
  readonly damage: ScanDamage | undefined
}

const checkFileHeader = (data: Uint8Array): ScanDamage | undefined => {
  if (data.length === 0) {
    return { kind: "truncated", offset: 0, reason: "the file is empty" }
  }

  const present = Math.min(data.length, FILE_HEADER_LENGTH)
  for (let i = 0; i < present; i++) {
    if (data[i] !== FILE_HEADER[i]) {
      const field = i < 4 ? "ident" : i < 6 ? "magic" : "store version"
      const at = i < 4 ? 0 : i < 6 ? 4 : 6
      return { kind: "corrupt", offset: at, reason: `bad file header ${field}` }
    }
  }

  if (data.length < FILE_HEADER_LENGTH) {
    return { kind: "truncated", offset: 0, reason: `the file ends inside its ${FILE_HEADER_LENGTH}-byte header` }
  }
  return undefined
}

// The index of the first non-zero byte in `data[start, end)`, or -1.
const firstNonZero = (data: Uint8Array, start: number, end: number): number => {
  for (let i = start; i < end; i++) {
    if (data[i] !== 0) return i
  }
  return -1
}

const concat = (parts: Array<Uint8Array>, length: number): Uint8Array => {
  const out = new Uint8Array(length)
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

const chunkTypeName = (type: number): string =>
  type === 1 ? "FULL" : type === 2 ? "FIRST" : type === 3 ? "MIDDLE" : "LAST"

/**
 * Reads every complete record out of `data`.
 *
 * `data[0]` is the byte at the absolute file offset `start`. With `start` 0, `data` is a whole file and its
 * header is checked first; otherwise `start` must be a record boundary (the `end` of an earlier scan, or a
 * record's `offset`), and only the records from there on are read.
 *
 * The scan stops at the first damage and reports it; every record before it is returned. A file may end
 * 1 to 6 bytes before a block boundary without padding (the writers pad only before another record), and
 * padding that reaches the block end with nothing after it is accepted; padding cut off by the end of the
 * file is truncated, like any record the writer had begun. Zero bytes where a chunk header should start
 * are corrupt, whether 7 or more (a zeroed chunk header) or fewer at the end of the file: no writer leaves
 * them, and the official Python reader rejects them.
 *
 * @since 0.1.0
 * @category scanning
 */
export const scan = (data: Uint8Array, start = 0): ScanResult => {
  if (start !== 0 && start < FILE_HEADER_LENGTH) {
    throw new RangeError(`LogFraming.scan: ${start} is inside the file header, not a record boundary`)
  }
  const records: Array<ScannedRecord> = []
  const limit = start + data.length
  let pos = start

  if (start === 0) {
    const damage = checkFileHeader(data)
    if (damage !== undefined) return { records, end: 0, damage }
    pos = FILE_HEADER_LENGTH
  }

  let end = pos
  const stop = (kind: ScanDamage["kind"], offset: number, reason: string): ScanResult => ({
    records,
    end,
    damage: { kind, offset, reason }
  })

  // State of a record split over several chunks.
  let recordOffset = -1
  let parts: Array<Uint8Array> = []
  let partsLength = 0

  while (true) {
    const inRecord = recordOffset >= 0
    if (pos === limit) {
      if (inRecord) return stop("truncated", recordOffset, "the file ends before the record's LAST chunk")
      return { records, end, damage: undefined }
    }

    const left = BLOCK_SIZE - (pos % BLOCK_SIZE)
    if (left < CHUNK_HEADER_LENGTH) {
      const available = Math.min(left, limit - pos)
      const nonZero = firstNonZero(data, pos - start, pos - start + available)
      if (nonZero >= 0) return stop("corrupt", nonZero + start, "non-zero bytes in block padding")
      if (available < left) {
        return stop("truncated", inRecord ? recordOffset : pos, "the file ends inside block padding")
      }
      pos += left
      continue
    }

    const at = pos - start
    const remaining = limit - pos
    if (remaining < CHUNK_HEADER_LENGTH) {
      if (!inRecord && firstNonZero(data, at, at + remaining) < 0) {
        return stop("corrupt", pos, "zero bytes after the last record")
      }
      return stop("truncated", inRecord ? recordOffset : pos, "the file ends inside a chunk header")
    }

    const checksum = (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0
    const length = data[at + 4]! | (data[at + 5]! << 8)
    const type = data[at + 6]!

    if (checksum === 0 && length === 0 && type === 0) {
      return stop("corrupt", pos, "zeroed chunk header")
    }
    if (type < ChunkType.FULL || type > ChunkType.LAST) {
      return stop("corrupt", pos, `bad chunk type ${type}`)
    }
    if (CHUNK_HEADER_LENGTH + length > left) {
      return stop("corrupt", pos, `chunk of ${length} bytes crosses the block boundary`)
    }
    if (CHUNK_HEADER_LENGTH + length > remaining) {
      return stop("truncated", inRecord ? recordOffset : pos, "the file ends inside a chunk payload")
    }

    const payloadStart = at + CHUNK_HEADER_LENGTH
    const payloadEnd = payloadStart + length
    if (chunkChecksum(type as ChunkType, data, payloadStart, payloadEnd) !== checksum) {
      return stop("corrupt", pos, "chunk checksum mismatch")
    }

    const chunkEnd = pos + CHUNK_HEADER_LENGTH + length
    const payload = data.subarray(payloadStart, payloadEnd)

    if (!inRecord) {
      if (type === ChunkType.FULL) {
        records.push({ offset: pos, end: chunkEnd, bytes: length, chunks: 1, payload })
        end = chunkEnd
      } else if (type === ChunkType.FIRST) {
        recordOffset = pos
        parts = [payload]
        partsLength = length
      } else {
        return stop("corrupt", pos, `a record starts with a ${chunkTypeName(type)} chunk`)
      }
    } else {
      if (type === ChunkType.FULL || type === ChunkType.FIRST) {
        return stop("corrupt", pos, `a ${chunkTypeName(type)} chunk inside a record that is not finished`)
      }
      parts.push(payload)
      partsLength += length
      if (type === ChunkType.LAST) {
        records.push({
          offset: recordOffset,
          end: chunkEnd,
          bytes: partsLength,
          chunks: parts.length,
          payload: concat(parts, partsLength)
        })
        end = chunkEnd
        recordOffset = -1
        parts = []
        partsLength = 0
      }
    }
    pos = chunkEnd
  }
}
