/**
 * The JSON dialect of W&B history, summary, events and config: standard JSON plus the bare tokens `NaN`,
 * `Infinity` and `-Infinity` (protocol §5.3.1, §4.6.2). The test server parses what clients send with this
 * parser instead of `JSON.parse`, so a non-finite metric arrives in a test as the number it stands for.
 *
 * Kept separate from any parser in `src/` on purpose: the server is the oracle the SDK is checked against,
 * so it must not share the code under test.
 */

/** Raised with the position of the first character that does not fit the grammar. */
export class ExtendedJsonError extends Error {
  constructor(readonly text: string, readonly position: number, reason: string) {
    const shown = text.length > 200 ? text.slice(0, 200) + "…" : text
    super(`${reason} at position ${position} in ${JSON.stringify(shown)}`)
    this.name = "ExtendedJsonError"
  }
}

/**
 * Parses one JSON text that may contain `NaN`, `Infinity` and `-Infinity` outside strings.
 * Duplicate keys keep the last value, as `JSON.parse` does.
 */
export const parseExtendedJson = (text: string): unknown => {
  let i = 0

  const fail = (reason: string): never => {
    throw new ExtendedJsonError(text, i, reason)
  }

  const skipSpace = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i)
      // space, tab, line feed, carriage return: the only whitespace JSON allows
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++
      else break
    }
  }

  const expectWord = (word: string): void => {
    if (text.startsWith(word, i)) i += word.length
    else fail(`expected ${word}`)
  }

  const parseString = (): string => {
    const start = i
    i++
    while (i < text.length) {
      const c = text[i]
      if (c === "\"") {
        i++
        // JSON.parse already knows every escape rule; the scan above only found where the string ends.
        return JSON.parse(text.slice(start, i)) as string
      }
      if (c === "\\") i += 2
      else if (text.charCodeAt(i) < 0x20) fail("control character in string")
      else i++
    }
    return fail("unterminated string")
  }

  const numberPattern = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y

  const parseNumber = (): number => {
    numberPattern.lastIndex = i
    const match = numberPattern.exec(text)
    if (match === null) return fail("invalid number")
    i += match[0].length
    return Number(match[0])
  }

  const parseValue = (): unknown => {
    skipSpace()
    const c = text[i]
    switch (c) {
      case "{": {
        i++
        const object: Record<string, unknown> = {}
        skipSpace()
        if (text[i] === "}") {
          i++
          return object
        }
        for (;;) {
          skipSpace()
          if (text[i] !== "\"") fail("expected a string key")
          const key = parseString()
          skipSpace()
          if (text[i] !== ":") fail("expected ':'")
          i++
          // defineProperty, so that a key such as "__proto__" stays an ordinary key
          const item = parseValue()
          Object.defineProperty(object, key, { value: item, enumerable: true, writable: true, configurable: true })
          skipSpace()
          if (text[i] === ",") i++
          else if (text[i] === "}") {
            i++
            return object
          } else fail("expected ',' or '}'")
        }
      }
      case "[": {
        i++
        const array: Array<unknown> = []
        skipSpace()
        if (text[i] === "]") {
          i++
          return array
        }
        for (;;) {
          array.push(parseValue())
          skipSpace()
          if (text[i] === ",") i++
          else if (text[i] === "]") {
            i++
            return array
          } else fail("expected ',' or ']'")
        }
      }
      case "\"":
        return parseString()
      case "t":
        expectWord("true")
        return true
      case "f":
        expectWord("false")
        return false
      case "n":
        expectWord("null")
        return null
      case "N":
        expectWord("NaN")
        return Number.NaN
      case "I":
        expectWord("Infinity")
        return Number.POSITIVE_INFINITY
      case "-":
        if (text.startsWith("-Infinity", i)) {
          i += "-Infinity".length
          return Number.NEGATIVE_INFINITY
        }
        return parseNumber()
      default:
        if (c !== undefined && c >= "0" && c <= "9") return parseNumber()
        return fail(c === undefined ? "unexpected end of text" : `unexpected character ${JSON.stringify(c)}`)
    }
  }

  const value = parseValue()
  skipSpace()
  if (i < text.length) fail("unexpected text after the value")
  return value
}

/**
 * Serialises a value in the same dialect: like `JSON.stringify`, but non-finite numbers become the bare
 * tokens instead of `null`. Used where the server echoes part of a stored document (`wandbConfig`) and for
 * dumps, where `indent` spaces per level make it readable.
 */
export const stringifyExtendedJson = (value: unknown, indent = 0): string => {
  const write = (item: unknown, depth: number): string => {
    if (typeof item === "number") {
      if (Number.isNaN(item)) return "NaN"
      if (item === Number.POSITIVE_INFINITY) return "Infinity"
      if (item === Number.NEGATIVE_INFINITY) return "-Infinity"
      return JSON.stringify(item)
    }
    const open = indent === 0 ? "" : "\n" + " ".repeat(indent * (depth + 1))
    const close = indent === 0 ? "" : "\n" + " ".repeat(indent * depth)
    const colon = indent === 0 ? ":" : ": "
    if (Array.isArray(item)) {
      if (item.length === 0) return "[]"
      return `[${open}${item.map((element) => write(element ?? null, depth + 1)).join(`,${open}`)}${close}]`
    }
    if (item !== null && typeof item === "object") {
      const entries = Object.entries(item).filter(([, element]) => element !== undefined)
      if (entries.length === 0) return "{}"
      const members = entries.map(([key, element]) => `${JSON.stringify(key)}${colon}${write(element, depth + 1)}`)
      return `{${open}${members.join(`,${open}`)}${close}}`
    }
    return JSON.stringify(item) ?? "null"
  }
  return write(value, 0)
}
