/**
 * Imported first by every measured child: refuses any TCP or TLS connection whose host is not the loopback
 * interface, and records every connection attempt so the runner can show where each SDK's traffic went.
 * This is a safety net under the environment the runner sets (`WANDB_BASE_URL` pointing at the loopback
 * server); it is not how either SDK is configured.
 */
import * as net from "node:net"

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"])

export interface ConnectionAttempt {
  readonly host: string
  readonly port: number | string
  readonly allowed: boolean
}

export const connectionAttempts: Array<ConnectionAttempt> = []

interface Target {
  readonly host?: unknown
  readonly port?: unknown
  readonly path?: unknown
}

// `Socket#connect` takes `(options, cb)`, `(port, host?, cb?)`, `(path, cb?)`, or, from `net.connect` and
// `tls.connect`, an already normalised `[options, cb]` array.
const targetOf = (args: ReadonlyArray<unknown>): Target => {
  const first = args[0]
  if (Array.isArray(first)) return (first[0] ?? {}) as Target
  if (typeof first === "object" && first !== null) return first as Target
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    return { port: first, host: typeof args[1] === "string" ? args[1] : undefined }
  }
  return { path: first }
}

const original = net.Socket.prototype.connect

net.Socket.prototype.connect = function(this: net.Socket, ...args: Array<unknown>) {
  const target = targetOf(args)
  // Like `net` itself: a truthy `path` means a local socket file, whatever host and port say.
  if (target.path) return (original as (...a: Array<unknown>) => net.Socket).apply(this, args)
  const host = typeof target.host === "string" && target.host !== "" ? target.host : "localhost"
  const port = typeof target.port === "number" || typeof target.port === "string" ? target.port : "?"
  const allowed = LOOPBACK.has(host)
  connectionAttempts.push({ host, port, allowed })
  if (!allowed) {
    const error = new Error(`the benchmark allows loopback connections only; refused ${host}:${port}`)
    process.nextTick(() => this.destroy(error))
    return this
  }
  return (original as (...a: Array<unknown>) => net.Socket).apply(this, args)
} as typeof net.Socket.prototype.connect
