/**
 * The `.netrc` format, as far as W&B credentials need it: `machine`, `default`, `login`, `password` and
 * `account` tokens separated by any whitespace (an entry may span lines), `macdef` bodies skipped, `#`
 * comments, and double-quoted tokens. The API key of a W&B server is the `password` of the entry whose
 * machine is the base URL's host, with `:port` when the URL names one.
 *
 * @since 0.1.0
 */

/**
 * One `machine` entry, or the `default` entry when `machine` is `undefined`.
 *
 * @since 0.1.0
 * @category models
 */
export interface NetrcEntry {
  readonly machine: string | undefined
  readonly login: string | undefined
  readonly password: string | undefined
  readonly account: string | undefined
}

interface Token {
  readonly text: string
  readonly line: number
  readonly quoted: boolean
}

const tokenize = (text: string): Array<Token> => {
  const tokens: Array<Token> = []
  let line = 0
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (c === "\n") {
      line++
      i++
    } else if (/\s/.test(c)) {
      i++
    } else if (c === "\"") {
      let value = ""
      i++
      while (i < text.length && text[i] !== "\"") {
        if (text[i] === "\\" && i + 1 < text.length) i++
        if (text[i] === "\n") line++
        value += text[i]
        i++
      }
      i++
      tokens.push({ text: value, line, quoted: true })
    } else {
      const start = i
      while (i < text.length && !/\s/.test(text[i]!)) i++
      tokens.push({ text: text.slice(start, i), line, quoted: false })
    }
  }
  return tokens
}

/**
 * Reads every entry, in file order. Unknown tokens are skipped rather than refused, so one odd line does
 * not hide the entries around it.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (text: string): Array<NetrcEntry> => {
  const lines = text.split("\n")
  const tokens = tokenize(text)
  const entries: Array<NetrcEntry> = []
  let current: { -readonly [K in keyof NetrcEntry]: NetrcEntry[K] } | undefined

  let i = 0
  const skipThrough = (line: number) => {
    while (i < tokens.length && tokens[i]!.line <= line) i++
  }
  while (i < tokens.length) {
    const token = tokens[i]!
    const keyword = token.quoted ? "" : token.text
    const value = tokens[i + 1]?.text

    if (keyword.startsWith("#")) {
      skipThrough(token.line)
      continue
    }
    switch (keyword) {
      case "machine":
      case "default": {
        const machine = keyword === "machine" ? value : undefined
        current = { machine, login: undefined, password: undefined, account: undefined }
        entries.push(current)
        i += keyword === "machine" ? 2 : 1
        continue
      }
      case "login":
      case "password":
      case "account": {
        if (current !== undefined && value !== undefined) current[keyword] = value
        i += 2
        continue
      }
      case "macdef": {
        // A macro's body runs from the next line to the first empty line.
        const blank = lines.findIndex((l, n) => n > token.line && l.trim() === "")
        skipThrough(blank === -1 ? Number.POSITIVE_INFINITY : blank)
        continue
      }
      default:
        i++
    }
  }
  return entries
}

/**
 * The entry for `machine` (compared without regard to case; the last of several wins), else the `default`
 * entry.
 *
 * @since 0.1.0
 * @category accessors
 */
export const lookup = (entries: ReadonlyArray<NetrcEntry>, machine: string): NetrcEntry | undefined => {
  const wanted = machine.toLowerCase()
  const named = entries.filter((entry) => entry.machine?.toLowerCase() === wanted).at(-1)
  return named ?? entries.find((entry) => entry.machine === undefined)
}

/**
 * The netrc machine name of a base URL: its host, plus `:port` when the URL spells one out
 * (`http://localhost:8080/wandb` → `localhost:8080`). `undefined` when it is not an absolute URL.
 *
 * @since 0.1.0
 * @category accessors
 */
export const machineOf = (baseUrl: string): string | undefined => {
  // The text is read as written rather than through URL, which would drop a default port the user typed.
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(baseUrl.trim())?.[1]
  if (authority === undefined) return undefined
  const host = authority.slice(authority.lastIndexOf("@") + 1)
  return host === "" ? undefined : host
}
