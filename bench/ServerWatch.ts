/**
 * What the loopback server saw of one child: when every history row of its run was stored, the request
 * bodies it sent, and what the stored history holds.
 */
import type { RequestRecord, TestServer } from "../test/support/WandbTestServer.js"

const HISTORY = "wandb-history.jsonl"

/**
 * Polls the server's request log every `intervalMs` and marks the history lines that answered file_stream
 * requests of the run stored (the server stores each `content[i]` at line `offset + i` before it answers).
 * `allStoredAt` is the first poll at which lines `0 … rows-1` are all marked. Reading the request log is
 * cheap; building the server's run view is not (it copies and sorts every line), so the stored history
 * itself is read once, after the child is gone, by `storedHistory`.
 */
export class ArrivalWatch {
  allStoredAt: number | undefined
  private readonly stored: Uint8Array
  private storedCount = 0
  private readonly seen = new Set<number>()
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly server: TestServer,
    private readonly runId: string,
    private readonly rows: number,
    intervalMs = 2
  ) {
    this.stored = new Uint8Array(rows)
    this.timer = setInterval(() => this.poll(), intervalMs)
  }

  poll(): void {
    if (this.allStoredAt !== undefined) return
    for (const request of this.server.requests({ channel: "file_stream" })) {
      if (this.seen.has(request.n) || request.status === null) continue
      this.seen.add(request.n)
      if (request.status !== 200 || !request.path.endsWith(`/${this.runId}/file_stream`)) continue
      const history = historyOf(request.body)
      if (history === undefined) continue
      const end = Math.min(this.rows, history.offset + history.lines)
      for (let line = Math.max(0, history.offset); line < end; line++) {
        if (this.stored[line] === 0) {
          this.stored[line] = 1
          this.storedCount++
        }
      }
    }
    if (this.storedCount === this.rows) this.allStoredAt = performance.timeOrigin + performance.now()
  }

  stop(): void {
    clearInterval(this.timer)
    this.poll()
  }
}

const historyOf = (body: unknown): { offset: number; lines: number } | undefined => {
  if (typeof body !== "object" || body === null) return undefined
  const files = (body as { files?: Record<string, { offset?: unknown; content?: unknown }> }).files
  const history = files?.[HISTORY]
  if (history === undefined || typeof history.offset !== "number" || !Array.isArray(history.content)) return undefined
  return { offset: history.offset, lines: history.content.length }
}

// ---------------------------------------------------------------------------------------------------------------

export interface ChannelTraffic {
  readonly requests: number
  /** Sum of `bodyBytes`: request bodies as received on the wire (after HTTP framing, before any gunzip). */
  readonly bodyBytes: number
}

export interface Traffic {
  readonly requests: number
  readonly byChannel: Readonly<Record<string, ChannelTraffic>>
  /** GraphQL operations by name. */
  readonly operations: Readonly<Record<string, number>>
  /** `channel status` → count; anything but 200 is worth a look. */
  readonly statuses: Readonly<Record<string, number>>
  readonly userAgents: ReadonlyArray<string>
  /** Requests to GraphQL or file_stream that did not carry the key the runner handed out. */
  readonly foreignKeys: number
  readonly firstAt: number | null
  readonly lastAt: number | null
}

export const summarizeTraffic = (records: ReadonlyArray<RequestRecord>, apiKey: string): Traffic => {
  const byChannel: Record<string, { requests: number; bodyBytes: number }> = {}
  const operations: Record<string, number> = {}
  const statuses: Record<string, number> = {}
  const userAgents = new Set<string>()
  let foreignKeys = 0
  for (const record of records) {
    const channel = (byChannel[record.channel] ??= { requests: 0, bodyBytes: 0 })
    channel.requests++
    channel.bodyBytes += record.bodyBytes
    if (record.operation !== null) operations[record.operation] = (operations[record.operation] ?? 0) + 1
    const status = `${record.channel} ${record.status ?? record.outcome}`
    statuses[status] = (statuses[status] ?? 0) + 1
    if (record.userAgent !== null) userAgents.add(record.userAgent)
    if ((record.channel === "graphql" || record.channel === "file_stream") && record.apiKey !== apiKey) foreignKeys++
  }
  return {
    requests: records.length,
    byChannel,
    operations,
    statuses,
    userAgents: [...userAgents],
    foreignKeys,
    firstAt: records[0]?.receivedAt ?? null,
    lastAt: records.at(-1)?.receivedAt ?? null
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface StoredHistory {
  readonly runFound: boolean
  /** Lines `0 … rows-1` the server holds. */
  readonly storedRows: number
  /** Lines at or past `rows`: rows the client never logged. */
  readonly extraLines: number
  /** Line numbers below the highest one that were never written. */
  readonly missingLines: number
  /** The server's count of lines written again after it had acknowledged them. */
  readonly duplicateWrites: number
  /** Stored lines whose `_step` an earlier line already had. */
  readonly repeatedSteps: number
  /** Stored lines whose `_step` is not their line number. */
  readonly misplacedSteps: number
  readonly state: string | null
  readonly completeCount: number
  readonly fileStreamRequests: number
  readonly summaryLength: number
}

const STEP = /"_step":(\d+)/

export const storedHistory = (server: TestServer, runId: string, rows: number): StoredHistory => {
  const run = server.findRun(runId)
  if (run === undefined) {
    return {
      runFound: false,
      storedRows: 0,
      extraLines: 0,
      missingLines: 0,
      duplicateWrites: 0,
      repeatedSteps: 0,
      misplacedSteps: 0,
      state: null,
      completeCount: 0,
      fileStreamRequests: 0,
      summaryLength: 0
    }
  }
  const lines = run.files[HISTORY]?.lines ?? []
  const steps = new Uint8Array(Math.max(rows, lines.length))
  let storedRows = 0
  let extraLines = 0
  let repeatedSteps = 0
  let misplacedSteps = 0
  lines.forEach((text, index) => {
    if (text === null) return
    if (index < rows) storedRows++
    else extraLines++
    const step = Number(STEP.exec(text)?.[1] ?? Number.NaN)
    if (step !== index) misplacedSteps++
    if (Number.isInteger(step) && step < steps.length) {
      if (steps[step] === 1) repeatedSteps++
      steps[step] = 1
    }
  })
  return {
    runFound: true,
    storedRows,
    extraLines,
    missingLines: run.files[HISTORY]?.missing.length ?? 0,
    duplicateWrites: run.historyDuplicates.length,
    repeatedSteps,
    misplacedSteps,
    state: run.state,
    completeCount: run.completeCount,
    fileStreamRequests: run.fileStreamRequests,
    summaryLength: run.files["wandb-summary.json"]?.lines.at(-1)?.length ?? 0
  }
}
