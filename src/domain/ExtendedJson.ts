/**
 * The JSON dialect W&B speaks: standard JSON plus the bare tokens `NaN`, `Infinity` and `-Infinity`.
 * `JSON.stringify` turns all three into `null`, which would silently lose a diverged loss; these
 * functions keep them distinct on disk and on the wire.
 *
 * @since 0.1.0
 */

/**
 * Serialises a value. Non-finite numbers become bare tokens; `undefined` members are left out as
 * `JSON.stringify` does; `bigint` becomes a number when it is exact, else a string.
 *
 * @since 0.1.0
 * @category encoding
 */
export const stringify = (value: unknown): string => {
  // Metric values are nearly always finite numbers; they skip the general writer.
  if (typeof value === "number" && Number.isFinite(value)) return Object.is(value, -0) ? "0" : String(value)
  const out: Array<string> = []
  write(value, out, false, new Set())
  return out.join("")
}

/**
 * Serialises with object keys sorted at every level: two values are the same config value exactly when
 * their canonical forms are equal (`3` and `3.0`, `{0: x}` and `{"0": x}` compare equal).
 *
 * @since 0.1.0
 * @category encoding
 */
export const canonical = (value: unknown): string => {
  const out: Array<string> = []
  write(value, out, true, new Set())
  return out.join("")
}

const writeNumber = (n: number, out: Array<string>): void => {
  if (Number.isFinite(n)) out.push(Object.is(n, -0) ? "0" : String(n))
  else if (Number.isNaN(n)) out.push("NaN")
  else out.push(n > 0 ? "Infinity" : "-Infinity")
}

// Total: whatever a program logs is written as something. A value met again inside itself becomes
// "<circular>", and a `toJSON` that throws gives "<unserialisable: …>", so one odd value can never stop the
// writer that serialises a whole batch.
const write = (value: unknown, out: Array<string>, sortKeys: boolean, seen: Set<object>): void => {
  switch (typeof value) {
    case "number":
      return writeNumber(value, out)
    case "string":
      out.push(JSON.stringify(value))
      return
    case "boolean":
      out.push(value ? "true" : "false")
      return
    case "bigint":
      if (value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)) {
        out.push(value.toString())
      } else {
        out.push(JSON.stringify(value.toString()))
      }
      return
    case "undefined":
    case "function":
    case "symbol":
      out.push("null")
      return
  }

  if (value === null) {
    out.push("null")
    return
  }
  if (seen.has(value as object)) {
    out.push(JSON.stringify("<circular>"))
    return
  }
  seen.add(value as object)
  try {
    writeObject(value as object, out, sortKeys, seen)
  } finally {
    seen.delete(value as object)
  }
}

const writeObject = (value: object, out: Array<string>, sortKeys: boolean, seen: Set<object>): void => {
  if (Array.isArray(value)) {
    out.push("[")
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(",")
      write(value[i], out, sortKeys, seen)
    }
    out.push("]")
    return
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    write(Array.from(value as unknown as ArrayLike<number>), out, sortKeys, seen)
    return
  }
  if (value instanceof Date) {
    out.push(JSON.stringify(Number.isNaN(value.getTime()) ? null : value.toISOString()))
    return
  }

  const object = value as Record<string, unknown>
  if (typeof object.toJSON === "function") {
    let json: unknown
    try {
      json = (object.toJSON as () => unknown).call(object)
    } catch (error) {
      json = `<unserialisable: ${error instanceof Error ? error.message : String(error)}>`
    }
    write(json, out, sortKeys, seen)
    return
  }
  const keys = Object.keys(object)
  if (sortKeys) keys.sort()
  out.push("{")
  let first = true
  for (const key of keys) {
    const member = object[key]
    if (member === undefined || typeof member === "function" || typeof member === "symbol") continue
    if (!first) out.push(",")
    first = false
    out.push(JSON.stringify(key), ":")
    write(member, out, sortKeys, seen)
  }
  out.push("}")
}

// Placeholders are strings that cannot come out of JSON.parse for real input: they carry a NUL byte,
// which JSON text can only spell as an escape, and we only insert them outside string literals.
const NAN = "\u0000NaN"
const POS_INF = "\u0000+Inf"
const NEG_INF = "\u0000-Inf"

/**
 * Parses extended JSON text. Throws a `SyntaxError` on malformed input, like `JSON.parse`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const parse = (text: string): unknown => {
  if (!/NaN|Infinity/.test(text)) return JSON.parse(text)

  let rewritten = ""
  let inString = false
  let last = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
      continue
    }
    if (c === 34) {
      inString = true
      continue
    }
    const token = text.startsWith("-Infinity", i)
      ? ["-Infinity", NEG_INF]
      : text.startsWith("Infinity", i)
      ? ["Infinity", POS_INF]
      : text.startsWith("NaN", i)
      ? ["NaN", NAN]
      : undefined
    if (token !== undefined) {
      rewritten += text.slice(last, i) + JSON.stringify(token[1])
      i += token[0].length - 1
      last = i + 1
    }
  }
  rewritten += text.slice(last)
  return JSON.parse(rewritten, (_key, value) =>
    value === NAN ? NaN : value === POS_INF ? Infinity : value === NEG_INF ? -Infinity : value)
}
