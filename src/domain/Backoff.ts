/**
 * The retry rules of the W&B channels (protocol §3): which statuses each channel retries, how long to
 * wait before the next attempt, and how a `Retry-After` header replaces the computed wait. Pure functions;
 * the HTTP client supplies the clock and the random numbers.
 *
 * @since 0.1.0
 */

/**
 * How many times to retry and how long to wait in between, in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface BackoffPolicy {
  /** Retries after the first attempt: `retryMax + 1` attempts in all. */
  readonly retryMax: number
  readonly waitMinMillis: number
  readonly waitMaxMillis: number
}

/**
 * Which statuses a channel gives up on at once.
 *
 * - `most-failures`: GraphQL and file_stream; 400, 401, 403, 404, 409, 410, 413, 422 and 501 are final.
 * - `upsert-bucket`: as `most-failures`, except that 409 is retried, because concurrent upserts of one run
 *   conflict for a moment.
 * - `upload`: signed-URL uploads; every 4xx but 429 is final, and 501.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryRule = "most-failures" | "upsert-bucket" | "upload"

/**
 * What to do with an answer: hand it to the caller, or try again.
 *
 * @since 0.1.0
 * @category models
 */
export type StatusVerdict = "final" | "retry"

const FINAL_STATUSES = new Set([400, 401, 403, 404, 409, 410, 413, 422, 501])

/**
 * Whether a status is worth another attempt. 2xx and 3xx are final: they are answers, good or bad, that
 * the operation reads itself.
 *
 * @since 0.1.0
 * @category rules
 */
export const verdict = (rule: RetryRule, status: number): StatusVerdict => {
  if (status === 429) return "retry"
  if (status >= 200 && status < 400) return "final"
  if (status === 501) return "final"
  switch (rule) {
    case "upload":
      return status >= 400 && status < 500 ? "final" : "retry"
    case "upsert-bucket":
      return status !== 409 && FINAL_STATUSES.has(status) ? "final" : "retry"
    case "most-failures":
      return FINAL_STATUSES.has(status) ? "final" : "retry"
  }
}

/**
 * The wait before retry `n` (0 for the first retry): `min(waitMax, waitMin · 2^n · (1 + 0.25 · random))`,
 * with `random` in [0, 1) and the exponent capped at 32 so long runs of failures cannot overflow.
 *
 * @since 0.1.0
 * @category rules
 */
export const backoffMillis = (policy: BackoffPolicy, n: number, random: number): number => {
  const exponent = Math.min(Math.max(n, 0), 32)
  const jitter = 1 + 0.25 * Math.min(Math.max(random, 0), 1)
  return Math.min(policy.waitMaxMillis, policy.waitMinMillis * 2 ** exponent * jitter)
}

/**
 * The wait a `Retry-After` value asks for, in milliseconds: a number of seconds (fractions allowed) or an
 * HTTP date, counted from `nowMillis` and never negative. `undefined` when the value is absent or neither
 * form; a value holding several headers joined by commas is neither, so the computed backoff applies.
 *
 * @since 0.1.0
 * @category rules
 */
export const retryAfterMillis = (value: string | undefined, nowMillis: number): number | undefined => {
  if (value === undefined) return undefined
  const text = value.trim()
  if (text === "") return undefined
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000
  // Every HTTP date form starts with the weekday ("Wed, 21 Oct 2015 07:28:00 GMT"); requiring it keeps a
  // list such as "1, 2" from being read as a date by the lenient Date parser.
  if (!/^[A-Za-z]{3,9},?\s/.test(text)) return undefined
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMillis)
}

/**
 * The wait before retry `n`: the server's `Retry-After` when it gave a usable one, else the backoff.
 *
 * @since 0.1.0
 * @category rules
 */
export const waitMillis = (
  policy: BackoffPolicy,
  n: number,
  random: number,
  retryAfter: string | undefined,
  nowMillis: number
): number => retryAfterMillis(retryAfter, nowMillis) ?? backoffMillis(policy, n, random)
