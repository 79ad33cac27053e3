import { describe, expect, it } from "@effect/vitest"
import { type ConsoleLine, ConsoleLog, fileStreamLine } from "../src/domain/ConsoleLog.js"

const texts = (lines: ReadonlyArray<ConsoleLine>) => lines.map((line) => [line.lineNumber, line.text])

/** Every line as it stands after all the reports, the way the server keeps `output.log`. */
const replay = (log: ConsoleLog, writes: ReadonlyArray<readonly ["stdout" | "stderr", string]>) => {
  const file = new Map<number, string>()
  writes.forEach(([stream, text], i) => {
    for (const line of log.write(stream, text, i)) file.set(line.lineNumber, line.text)
  })
  for (const line of log.flush()) file.set(line.lineNumber, line.text)
  return [...file.entries()].sort(([a], [b]) => a - b).map(([, text]) => text)
}

describe("ConsoleLog", () => {
  it("a newline ends a line, and so does a carriage return before it", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "one\ntwo\r\nthree\n", 1))).toEqual([[0, "one"], [1, "two"], [2, "three"]])
  })

  it("a newline written alone still makes a line", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "a\n\nb\n", 1))).toEqual([[0, "a"], [1, ""], [2, "b"]])
  })

  it("a carriage return goes back to the start of the line and later text overwrites it", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "10%\r20%\r30%\n", 1))).toEqual([[0, "30%"]])
    // Shorter text overwrites only as many characters as it has, as on a terminal.
    expect(texts(log.write("stdout", "100%\r5%\n", 2))).toEqual([[1, "5%0%"]])
  })

  it("a carriage return at the end of one write and a newline at the start of the next end the line", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "done\r", 1))).toEqual([[0, "done"]])
    expect(texts(log.write("stdout", "\nnext\n", 2))).toEqual([[1, "next"]])
  })

  it("a line is reported when it first gets text and again only when its text changes, under its number", () => {
    const log = new ConsoleLog()
    expect(log.write("stdout", "", 1)).toEqual([])
    expect(log.write("stdout", "\r", 1)).toEqual([])
    expect(log.write("stdout", "loss 0.5", 2)).toEqual([
      { lineNumber: 0, stream: "stdout", timestamp: 2, text: "loss 0.5" }
    ])
    expect(log.write("stdout", "\rloss 0.5", 3)).toEqual([])
    // The line keeps the time it was created at.
    expect(log.write("stdout", "\rloss 0.4", 4)).toEqual([
      { lineNumber: 0, stream: "stdout", timestamp: 2, text: "loss 0.4" }
    ])
    expect(log.write("stdout", "\n", 5)).toEqual([])
    expect(log.write("stdout", "x", 6)).toEqual([{ lineNumber: 1, stream: "stdout", timestamp: 6, text: "x" }])
  })

  it("each stream has its own current line, and line numbers are shared in order of appearance", () => {
    const log = new ConsoleLog()
    expect(log.write("stdout", "epoch 1: ", 1)).toEqual([
      { lineNumber: 0, stream: "stdout", timestamp: 1, text: "epoch 1: " }
    ])
    expect(log.write("stderr", "warning\nsecond", 2)).toEqual([
      { lineNumber: 1, stream: "stderr", timestamp: 2, text: "warning" },
      { lineNumber: 2, stream: "stderr", timestamp: 2, text: "second" }
    ])
    expect(log.write("stdout", "ok\n", 3)).toEqual([
      { lineNumber: 0, stream: "stdout", timestamp: 1, text: "epoch 1: ok" }
    ])
    // A carriage return on stdout does not touch stderr's line.
    expect(log.write("stdout", "a\rb", 4)).toEqual([{ lineNumber: 3, stream: "stdout", timestamp: 4, text: "b" }])
    expect(log.write("stderr", " line\n", 5)).toEqual([
      { lineNumber: 2, stream: "stderr", timestamp: 2, text: "second line" }
    ])
  })

  it("numbers start where the constructor says", () => {
    const log = new ConsoleLog(120)
    expect(texts(log.write("stderr", "a\nb\n", 1))).toEqual([[120, "a"], [121, "b"]])
  })

  it("lines are cut at 4096 characters, and text beyond the cut changes nothing", () => {
    const log = new ConsoleLog()
    const [line] = log.write("stdout", "x".repeat(5000), 1)
    expect(line!.text).toBe("x".repeat(4096))
    expect(log.write("stdout", "more", 2)).toEqual([])
    expect(texts(log.write("stdout", "\ry\n", 3))).toEqual([[0, "y" + "x".repeat(4095)]])
  })

  it("counts characters, not UTF-16 units, when overwriting and cutting", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "😀x\r😃\n", 1))).toEqual([[0, "😃x"]])
    const [long] = log.write("stdout", "é".repeat(10) + "😀".repeat(5000), 2)
    expect([...long!.text].length).toBe(4096)
    expect(long!.text.endsWith("😀")).toBe(true)
  })

  it("strips colour and other escape sequences, also when split across writes", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "\u001b[1;31mred\u001b[0m plain\u001b[?25l\n", 1))).toEqual([[0, "red plain"]])
    expect(texts(log.write("stdout", "a\u001b[3", 2))).toEqual([[1, "a"]])
    expect(log.write("stdout", "2", 3)).toEqual([])
    expect(texts(log.write("stdout", "mb\u001b", 4))).toEqual([[1, "ab"]])
    expect(texts(log.write("stdout", "[0mc\n", 5))).toEqual([[1, "abc"]])
    // A hyperlink (OSC 8) keeps only its visible text.
    expect(texts(log.write("stdout", "\u001b]8;;http://127.0.0.1/\u0007link\u001b]8;;\u001b\\\n", 6))).toEqual([
      [2, "link"]
    ])
  })

  it("a malformed escape sequence loses only itself", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "a\u001b[31\nb\n", 1))).toEqual([[0, "a"], [1, "b"]])
  })

  it("applies the column moves and line erases that Node's cursorTo and clearLine write", () => {
    const log = new ConsoleLog()
    // What a progress bar drawing with cursorTo(0), write(bar), clearLine(1) sends, twice.
    log.write("stdout", "\u001b[1G[#####     ] 50%\u001b[0K", 1)
    expect(texts(log.write("stdout", "\u001b[1G[##########] 100%\u001b[0K", 2))).toEqual([[0, "[##########] 100%"]])
    expect(texts(log.write("stdout", "\u001b[1Gdone\u001b[K", 3))).toEqual([[0, "done"]])
    expect(texts(log.write("stdout", "\u001b[2K", 4))).toEqual([[0, ""]])
    expect(texts(log.write("stdout", "\u001b[3Gx\u001b[1K!\n", 5))).toEqual([[0, "   !"]])
  })

  it("control characters other than tab do not print; backspace moves back one", () => {
    const log = new ConsoleLog()
    expect(texts(log.write("stdout", "a\tb\u0007c\u0000\n", 1))).toEqual([[0, "a\tbc"]])
    expect(texts(log.write("stdout", "ab\bc\n", 2))).toEqual([[1, "ac"]])
  })

  it("only the newest 32 lines can change; an older line's new text becomes a new line", () => {
    const lines = (others: number) => {
      const log = new ConsoleLog()
      log.write("stdout", "step 1", 1)
      log.write("stderr", "noise\n".repeat(others), 2)
      return log.write("stdout", "\rstep 2", 3)
    }
    // Line 0 and 31 others: line 0 is still among the newest 32.
    expect(lines(31)).toEqual([{ lineNumber: 0, stream: "stdout", timestamp: 1, text: "step 2" }])
    expect(lines(32)).toEqual([{ lineNumber: 33, stream: "stdout", timestamp: 3, text: "step 2" }])
  })

  it("a final line that does not change is not reported again", () => {
    const log = new ConsoleLog()
    log.write("stdout", "kept", 1)
    log.write("stderr", "noise\n".repeat(40), 2)
    expect(log.write("stdout", "\rkept\n", 3)).toEqual([])
    expect(texts(log.write("stdout", "after\n", 4))).toEqual([[41, "after"]])
  })

  it("flush gives the unfinished line of each stream as final and starts afresh", () => {
    const log = new ConsoleLog()
    log.write("stderr", "err", 1)
    log.write("stdout", "done\nhalf", 2)
    log.write("stdout", "\u001b[", 3)
    expect(log.flush()).toEqual([
      { lineNumber: 0, stream: "stderr", timestamp: 1, text: "err" },
      { lineNumber: 2, stream: "stdout", timestamp: 2, text: "half" }
    ])
    expect(log.flush()).toEqual([])
    // The unfinished escape sequence went with the flushed line.
    expect(texts(log.write("stdout", "31mnew", 4))).toEqual([[3, "31mnew"]])
  })

  it("flush leaves out a line without text", () => {
    const log = new ConsoleLog()
    log.write("stdout", "line\n\r", 1)
    log.write("stderr", "gone\u001b[2K", 2)
    expect(log.flush()).toEqual([])
  })

  it("the lines as the server keeps them match what a terminal shows", () => {
    const log = new ConsoleLog()
    expect(
      replay(log, [
        ["stdout", "Training\n"],
        ["stdout", "  0%|          |\r"],
        ["stderr", "a warning\n"],
        ["stdout", " 50%|#####     |\r"],
        ["stdout", "100%|##########|\n"],
        ["stdout", "loss: 0.1"]
      ])
    ).toEqual(["Training", "100%|##########|", "a warning", "loss: 0.1"])
  })
})

describe("fileStreamLine", () => {
  it("writes the UTC creation time with microseconds, then the text; stderr lines start with ERROR", () => {
    const line = { lineNumber: 7, timestamp: 1724000000.123456, text: "hello world" }
    expect(fileStreamLine({ ...line, stream: "stdout" })).toBe("2024-08-18T16:53:20.123456 hello world")
    expect(fileStreamLine({ ...line, stream: "stderr" })).toBe("ERROR 2024-08-18T16:53:20.123456 hello world")
  })

  it("pads the fraction and carries a rounded microsecond into the second", () => {
    expect(fileStreamLine({ lineNumber: 0, stream: "stdout", timestamp: 1e9 + 0.000001, text: "" })).toBe(
      "2001-09-09T01:46:40.000001 "
    )
    expect(fileStreamLine({ lineNumber: 0, stream: "stdout", timestamp: 1e9 + 0.9999996, text: "x" })).toBe(
      "2001-09-09T01:46:41.000000 x"
    )
  })
})
