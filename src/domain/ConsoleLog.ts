/**
 * Turns captured stdout and stderr text into the numbered lines of a run's `output.log`, through a small
 * terminal emulation: a carriage return goes back to the start of the line, so a progress bar is one line
 * that changes instead of one line per update. A changed line is reported again under its number, which
 * the server overwrites.
 *
 * @since 0.1.0
 */

/**
 * The stream a piece of console text was written to.
 *
 * @since 0.1.0
 * @category models
 */
export type OutputStream = "stdout" | "stderr"

/**
 * One line of `output.log`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsoleLine {
  readonly lineNumber: number
  readonly stream: OutputStream
  /** Unix seconds at which the line was created; a line that changes keeps it. */
  readonly timestamp: number
  readonly text: string
}

// Characters (code points) kept of a line; the rest is dropped.
const maxLineLength = 4096

// How many of the newest line numbers can still change; older lines are final.
const editableLines = 32

// An unfinished escape sequence is carried over to the next write, but not without bound.
const maxPending = 4096

/** The line a stream is writing and where its cursor is. */
interface Cursor {
  cells: Array<string>
  column: number
  lineNumber: number | undefined
  timestamp: number
  reported: string | undefined
  pending: string
}

const emptyCursor = (): Cursor => ({
  cells: [],
  column: 0,
  lineNumber: undefined,
  timestamp: 0,
  reported: undefined,
  pending: ""
})

const endLine = (cursor: Cursor): void => {
  cursor.cells = []
  cursor.column = 0
  cursor.lineNumber = undefined
  cursor.reported = undefined
}

// Characters that do not print as themselves: C0 controls other than tab, and DEL.
const controls = /[\u0000-\u0008\u000a-\u001f\u007f]/g

const within = (code: number, low: number, high: number) => code >= low && code <= high

/**
 * The index just past the escape sequence that starts at `start`, or "incomplete" when the text ends
 * inside it. A malformed sequence ends where it stops making sense, and only what was read is dropped.
 */
const escapeEnd = (text: string, start: number): number | "incomplete" => {
  if (start + 1 >= text.length) return "incomplete"
  const kind = text.charCodeAt(start + 1)
  if (kind === 0x5b) {
    // CSI: parameter bytes, then intermediate bytes, then one final byte.
    let i = start + 2
    while (i < text.length && within(text.charCodeAt(i), 0x30, 0x3f)) i++
    while (i < text.length && within(text.charCodeAt(i), 0x20, 0x2f)) i++
    if (i === text.length) return "incomplete"
    return within(text.charCodeAt(i), 0x40, 0x7e) ? i + 1 : i
  }
  if (kind === 0x5d) {
    // OSC (window titles, hyperlinks): ends with BEL or ESC \.
    for (let i = start + 2; i < text.length; i++) {
      const code = text.charCodeAt(i)
      if (code === 0x07) return i + 1
      if (code === 0x1b) {
        if (i + 1 === text.length) return "incomplete"
        return text.charCodeAt(i + 1) === 0x5c ? i + 2 : i
      }
    }
    return "incomplete"
  }
  // Two-character escapes (ESC 7, ESC M, ...); an ESC before a control character is dropped alone.
  return kind < 0x20 ? start + 1 : start + 2
}

const put = (cursor: Cursor, text: string): void => {
  for (const char of text) {
    if (cursor.column >= maxLineLength) return
    while (cursor.cells.length < cursor.column) cursor.cells.push(" ")
    cursor.cells[cursor.column++] = char
  }
}

/**
 * Most escape sequences (colours, cursor visibility) are dropped. Moving to a column and erasing in the
 * line are applied, because Node's `cursorTo` and `clearLine`, which progress bars use, write them.
 */
const applyCsi = (cursor: Cursor, sequence: string): void => {
  const parameter = sequence.slice(2, -1)
  if (!/^\d*$/.test(parameter)) return
  const n = parameter === "" ? undefined : Number(parameter)
  switch (sequence[sequence.length - 1]) {
    case "G": {
      cursor.column = Math.min(Math.max(1, n ?? 1) - 1, maxLineLength)
      return
    }
    case "K": {
      if (n === undefined || n === 0) {
        if (cursor.column < cursor.cells.length) cursor.cells.length = cursor.column
      } else if (n === 1) {
        for (let i = 0; i <= cursor.column && i < cursor.cells.length; i++) cursor.cells[i] = " "
      } else if (n === 2) {
        cursor.cells.length = 0
      }
      return
    }
  }
}

/**
 * The lines of `output.log`, built from the text written to stdout and stderr. Each stream has its own
 * current line and cursor; line numbers are shared and given in the order lines appear.
 *
 * @since 0.1.0
 * @category models
 */
export class ConsoleLog {
  private readonly cursors: Record<OutputStream, Cursor> = { stdout: emptyCursor(), stderr: emptyCursor() }
  private nextLineNumber: number

  constructor(firstLineNumber = 0) {
    this.nextLineNumber = firstLineNumber
  }

  /**
   * Feeds text written to a stream at a time; returns the lines created or changed by it (a changed line
   * keeps its number).
   */
  write(stream: OutputStream, text: string, timestamp: number): ReadonlyArray<ConsoleLine> {
    const cursor = this.cursors[stream]
    const input = cursor.pending + text
    cursor.pending = ""
    const lines: Array<ConsoleLine> = []
    let i = 0
    while (i < input.length) {
      controls.lastIndex = i
      const found = controls.exec(input)
      const stop = found === null ? input.length : found.index
      if (stop > i) put(cursor, input.slice(i, stop))
      if (found === null) break
      i = stop + 1
      switch (input.charCodeAt(stop)) {
        case 0x0a: {
          this.settle(stream, cursor, timestamp, true, lines)
          endLine(cursor)
          break
        }
        case 0x0d: {
          cursor.column = 0
          break
        }
        case 0x08: {
          cursor.column = Math.max(0, cursor.column - 1)
          break
        }
        case 0x1b: {
          const end = escapeEnd(input, stop)
          if (end === "incomplete") {
            if (input.length - stop <= maxPending) {
              cursor.pending = input.slice(stop)
              i = input.length
            }
            break
          }
          if (input.charCodeAt(stop + 1) === 0x5b) applyCsi(cursor, input.slice(stop, end))
          i = end
          break
        }
      }
    }
    this.settle(stream, cursor, timestamp, false, lines)
    return lines
  }

  /** The line being written on each stream, if it has text and no newline yet, as a final line. */
  flush(): ReadonlyArray<ConsoleLine> {
    const lines: Array<ConsoleLine> = []
    for (const stream of ["stdout", "stderr"] as const) {
      const cursor = this.cursors[stream]
      if (cursor.lineNumber !== undefined && cursor.cells.length > 0) {
        lines.push({ lineNumber: cursor.lineNumber, stream, timestamp: cursor.timestamp, text: cursor.cells.join("") })
      }
      endLine(cursor)
      cursor.pending = ""
    }
    return lines.sort((a, b) => a.lineNumber - b.lineNumber)
  }

  /**
   * Reports the stream's current line if it is new or its text changed. A line that is no longer among
   * the editable ones cannot change, so its new text becomes a new line.
   */
  private settle(
    stream: OutputStream,
    cursor: Cursor,
    timestamp: number,
    ending: boolean,
    lines: Array<ConsoleLine>
  ): void {
    const text = cursor.cells.join("")
    if (cursor.lineNumber === undefined) {
      // A newline on an empty line still makes a line, so blank lines survive as they would on screen.
      if (text === "" && !ending) return
      cursor.lineNumber = this.nextLineNumber++
      cursor.timestamp = timestamp
    } else if (text === cursor.reported) {
      return
    } else if (cursor.lineNumber < this.nextLineNumber - editableLines) {
      cursor.lineNumber = this.nextLineNumber++
      cursor.timestamp = timestamp
    }
    cursor.reported = text
    lines.push({ lineNumber: cursor.lineNumber, stream, timestamp: cursor.timestamp, text })
  }
}

const formatTimestamp = (seconds: number): string => {
  const micros = Math.round(seconds * 1_000_000)
  const fraction = ((micros % 1_000_000) + 1_000_000) % 1_000_000
  const wholeMillis = (micros - fraction) / 1000
  return `${new Date(wholeMillis).toISOString().slice(0, 19)}.${String(fraction).padStart(6, "0")}`
}

/**
 * A line as `output.log` holds it in the plain format: `ERROR ` for stderr, the creation time in UTC with
 * microseconds and no zone, one space, the text. No newline at the end.
 *
 * @since 0.1.0
 * @category formatting
 */
export const fileStreamLine = (line: ConsoleLine): string =>
  `${line.stream === "stderr" ? "ERROR " : ""}${formatTimestamp(line.timestamp)} ${line.text}`
