/**
 * Fault injection for the test server: what a rule sees about a request, what it may answer instead of
 * the normal reply, and ready-made rules. A rule is a plain function, so tests can also write their own.
 */

/** The three W&B channels of protocol §1, plus anything the server does not know. */
export type Channel = "graphql" | "file_stream" | "upload" | "other"

/** What a fault rule knows about a request when it decides. Counters start at 1 and restart on `reset()`. */
export interface FaultRequest {
  /** Position of this request among all requests the server received. */
  readonly n: number
  /** Position among the requests of the same channel. */
  readonly channelN: number
  /** Position among GraphQL requests with the same operation name; equals `channelN` elsewhere. */
  readonly operationN: number
  readonly channel: Channel
  readonly method: string
  /** URL path without the query string and without the server's path prefix. */
  readonly path: string
  /** GraphQL operation name (from `operationName` or the query text), `null` on other channels. */
  readonly operation: string | null
}

/**
 * What the server does with a request instead of (or besides) answering it normally.
 *
 * - `pass`: answer normally.
 * - `status`: answer `status` without touching any state. The body is the spec's error format for the
 *   channel (§3.4, §9.2 E19) unless `body` is given; `retryAfter` sets the `Retry-After` header.
 * - `drop`: destroy the socket without an answer, so the client sees a network error. With `applied` the
 *   request changes the state first, the way a server that crashes after committing would behave.
 * - `hang`: never answer; the request stays open until the client gives up or the server stops.
 */
export type FaultAction =
  | { readonly kind: "pass" }
  | {
    readonly kind: "status"
    readonly status: number
    readonly retryAfter?: number | string | undefined
    readonly body?: unknown
    readonly headers?: Readonly<Record<string, string>> | undefined
  }
  | { readonly kind: "drop"; readonly applied?: boolean | undefined }
  | { readonly kind: "hang" }

/** Decides a request's fate; `undefined` means answer normally. */
export type FaultRule = (request: FaultRequest) => FaultAction | undefined

/** Extra time before the server looks at a request: fixed milliseconds, or chosen per request. */
export type Latency = number | ((request: FaultRequest) => number)

/** The fault settings of a running server; see `TestServer.setFaults`. */
export interface FaultSettings {
  readonly latency?: Latency | undefined
  readonly rule?: FaultRule | undefined
}

/** A number stands for `Faults.status(number)`. */
export type ActionInput = FaultAction | number

const toAction = (input: ActionInput): FaultAction =>
  typeof input === "number" ? { kind: "status", status: input } : input

/**
 * Ready-made actions and rules. Rules compose: `onChannel` and `onOperation` count requests within what
 * they select, so `Faults.onChannel("file_stream", Faults.everyNth(3, 500))` fails every third file_stream
 * request whatever happens on the other channels.
 *
 * @example
 * server.setFaults({ rule: Faults.onChannel("file_stream", Faults.firstN(2, Faults.status(429, { retryAfter: 1 }))) })
 */
export const Faults = {
  pass: { kind: "pass" } as FaultAction,

  hang: { kind: "hang" } as FaultAction,

  status: (
    status: number,
    options?: {
      readonly retryAfter?: number | string | undefined
      readonly body?: unknown
      readonly headers?: Readonly<Record<string, string>> | undefined
    }
  ): FaultAction => ({ kind: "status", status, ...options }),

  drop: (options?: { readonly applied?: boolean | undefined }): FaultAction => ({ kind: "drop", ...options }),

  /** Every request gets `action`. */
  always: (action: ActionInput): FaultRule => {
    const resolved = toAction(action)
    return () => resolved
  },

  /** Requests k, 2k, 3k, … get `action`. */
  everyNth: (k: number, action: ActionInput): FaultRule => {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`everyNth needs a positive integer, got ${k}`)
    const resolved = toAction(action)
    return (request) => (request.n % k === 0 ? resolved : undefined)
  },

  /** Requests 1 … count get `action`, later ones pass. */
  firstN: (count: number, action: ActionInput): FaultRule => {
    const resolved = toAction(action)
    return (request) => (request.n <= count ? resolved : undefined)
  },

  /** Applies `rule` to one channel only, numbering that channel's requests from 1. */
  onChannel: (channel: Channel, rule: FaultRule): FaultRule => (request) =>
    request.channel === channel ? rule({ ...request, n: request.channelN }) : undefined,

  /** Applies `rule` to one GraphQL operation only, numbering its requests from 1. */
  onOperation: (operation: string, rule: FaultRule): FaultRule => (request) =>
    request.operation === operation ? rule({ ...request, n: request.operationN }) : undefined,

  /** The first rule that returns an action decides. */
  firstOf: (...rules: ReadonlyArray<FaultRule>): FaultRule => (request) => {
    for (const rule of rules) {
      const action = rule(request)
      if (action !== undefined) return action
    }
    return undefined
  }
} as const
