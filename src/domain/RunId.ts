/**
 * Run ids: generated ones and the rules a given one must follow.
 *
 * @since 0.1.0
 */

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

/**
 * Characters the W&B server cannot route in a run id.
 *
 * @since 0.1.0
 * @category validation
 */
export const FORBIDDEN_ID_CHARACTERS = [":", ";", ",", "#", "?", "/", "'"] as const

/**
 * A random id of `length` characters from `[a-z0-9]`, drawn from the platform's cryptographic source.
 * Bytes of 252 and above are redrawn so every character is equally likely (252 = 7 × 36).
 *
 * @since 0.1.0
 * @category constructors
 */
export const generate = (length = 8): string => {
  let id = ""
  const bytes = new Uint8Array(length * 2)
  while (id.length < length) {
    crypto.getRandomValues(bytes)
    for (const byte of bytes) {
      if (byte >= 252) continue
      id += ALPHABET[byte % 36]
      if (id.length === length) break
    }
  }
  return id
}

/**
 * The reasons a run id is refused, empty when it is acceptable.
 *
 * @since 0.1.0
 * @category validation
 */
export const problems = (id: string): Array<string> => {
  if (id.length === 0) return ["must not be empty"]
  const out: Array<string> = []
  if (id.trim() !== id) out.push("must not start or end with whitespace")
  const found = FORBIDDEN_ID_CHARACTERS.filter((c) => id.includes(c))
  if (found.length > 0) {
    out.push(`must not contain ${found.map((c) => JSON.stringify(c)).join(" ")} (forbidden: : ; , # ? / ')`)
  }
  if (id.length > 128) out.push(`must be at most 128 characters, has ${id.length}`)
  return out
}
