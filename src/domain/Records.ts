/**
 * Builds the transaction log's protobuf records from what a run did: the header, the run record, history
 * rows, summary and config changes, preemption, the exit and the closing final/footer pair. Numbering is
 * left to the writer, which knows the order records reach the file in.
 *
 * @since 0.1.0
 */
import { create } from "@bufbuild/protobuf"
import { timestampFromMs } from "@bufbuild/protobuf/wkt"
import {
  type ConfigItem,
  ConfigItemSchema,
  ConfigRecordSchema,
  ControlSchema,
  FinalRecordSchema,
  FooterRecordSchema,
  HeaderRecordSchema,
  type HistoryItem,
  HistoryItemSchema,
  OutputRawRecord_OutputType,
  OutputRawRecordSchema,
  type Record as LogRecord,
  type _RecordInfo,
  _RecordInfoSchema,
  RecordSchema,
  RunExitRecordSchema,
  RunPreemptingRecordSchema,
  RunRecordSchema,
  StatsRecord_StatsType,
  StatsRecordSchema,
  type SummaryItem,
  SummaryItemSchema,
  SummaryRecordSchema,
  TelemetryRecordSchema,
  VersionInfoSchema
} from "../internal/proto/wandb_internal_pb.js"
import * as ExtendedJson from "./ExtendedJson.js"
import { type FlatRow, type HistoryRow, PATH_SEPARATOR, splitPath } from "./History.js"

/**
 * The version of this SDK, written as the producer of every log.
 *
 * @since 0.1.0
 * @category constants
 */
export const SDK_VERSION = "0.1.0"

/**
 * Servers older than this cannot read what we write; the same floor wandb-core declares.
 *
 * @since 0.1.0
 * @category constants
 */
export const MIN_CONSUMER = "0.70.0"

/**
 * What the run record says about a run.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunInfo {
  readonly runId: string
  readonly entity: string | undefined
  readonly project: string | undefined
  readonly displayName: string | undefined
  readonly group: string | undefined
  readonly jobType: string | undefined
  readonly notes: string | undefined
  readonly tags: ReadonlyArray<string>
  readonly host: string | undefined
  readonly startTime: Date
  readonly config: Record<string, unknown>
  readonly startingStep: number
  readonly resumed: boolean
  readonly gitRemoteUrl: string | undefined
  readonly gitCommit: string | undefined
}

const infos = new Map<string, _RecordInfo>()
const streamInfo = (runId: string): _RecordInfo => {
  let info = infos.get(runId)
  if (info === undefined) {
    info = create(_RecordInfoSchema, { streamId: runId })
    infos.set(runId, info)
  }
  return info
}

const envelope = (runId: string, fill: Partial<LogRecord>): LogRecord =>
  create(RecordSchema, { ...fill, Info: { streamId: runId } } as Parameters<typeof create<typeof RecordSchema>>[1])

/**
 * @since 0.1.0
 * @category constructors
 */
export const header = (runId: string): LogRecord =>
  envelope(runId, {
    recordType: {
      case: "header",
      value: create(HeaderRecordSchema, {
        versionInfo: create(VersionInfoSchema, { producer: `wandb-effect/${SDK_VERSION}`, minConsumer: MIN_CONSUMER })
      })
    }
  })

const configItems = (values: Record<string, unknown>): Array<ConfigItem> =>
  Object.keys(values).map((key) => create(ConfigItemSchema, { key, valueJson: ExtendedJson.stringify(values[key]) }))

/**
 * The run record. Its config always carries `_wandb`, as the official client's does, so the server can
 * tell a started run from a pre-created one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (info: RunInfo): LogRecord =>
  envelope(info.runId, {
    recordType: {
      case: "run",
      value: create(RunRecordSchema, {
        runId: info.runId,
        entity: info.entity ?? "",
        project: info.project ?? "",
        config: create(ConfigRecordSchema, { update: configItems({ ...info.config, _wandb: {} }) }),
        runGroup: info.group ?? "",
        jobType: info.jobType ?? "",
        displayName: info.displayName ?? "",
        notes: info.notes ?? "",
        tags: [...info.tags],
        host: info.host ?? "",
        startingStep: BigInt(info.startingStep),
        startTime: timestampFromMs(info.startTime.getTime()),
        resumed: info.resumed,
        telemetry: create(TelemetryRecordSchema, { cliVersion: SDK_VERSION }),
        ...(info.gitRemoteUrl !== undefined || info.gitCommit !== undefined
          ? { git: { remoteUrl: info.gitRemoteUrl ?? "", commit: info.gitCommit ?? "" } }
          : {})
      })
    }
  })

const pathItem = <A extends HistoryItem | SummaryItem>(
  schema: typeof HistoryItemSchema | typeof SummaryItemSchema,
  key: string,
  value: unknown
): A => create(schema, { nestedKey: splitPath(key), valueJson: ExtendedJson.stringify(value) }) as A

// Not yet: at 1M rows peak memory is far above the 150 MB target; these per-row messages are most of the garbage.
// History items are the bulk of every log. They are built as complete message literals (every field set,
// as `create` would) because `create` costs as much as the encoding itself on this path.
const historyItem = (key: string, valueJson: string): HistoryItem => ({
  $typeName: "wandb_internal.HistoryItem",
  key: "",
  nestedKey: key.includes(PATH_SEPARATOR) ? splitPath(key) : [key],
  valueJson
})

/**
 * One history row: the user's values, then `_step`, `_runtime` and `_timestamp`, every item addressed
 * by `nested_key` as wandb-core writes them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const history = (runId: string, row: HistoryRow, runtime: number): LogRecord => {
  const items: Array<HistoryItem> = []
  for (const key in row.values) {
    if (key === "_timestamp" || key === "_runtime") continue
    items.push(historyItem(key, ExtendedJson.stringify(row.values[key])))
  }
  items.push(historyItem("_step", String(row.step)))
  items.push(historyItem("_runtime", ExtendedJson.stringify(runtime)))
  items.push(historyItem("_timestamp", ExtendedJson.stringify(row.timestamp)))
  return {
    $typeName: "wandb_internal.Record",
    num: 0n,
    uuid: "",
    recordType: {
      case: "history",
      value: {
        $typeName: "wandb_internal.HistoryRecord",
        item: items,
        step: { $typeName: "wandb_internal.HistoryStep", num: BigInt(row.step) }
      }
    },
    Info: streamInfo(runId)
  }
}

/**
 * A summary change: leaves set and leaves removed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const summary = (runId: string, set: FlatRow, removed: ReadonlyArray<string> = []): LogRecord =>
  envelope(runId, {
    recordType: {
      case: "summary",
      value: create(SummaryRecordSchema, {
        update: Object.keys(set).map((key) => pathItem<SummaryItem>(SummaryItemSchema, key, set[key])),
        remove: removed.map((key) => create(SummaryItemSchema, { nestedKey: splitPath(key) }))
      })
    }
  })

/**
 * A config change, one item per top-level key.
 *
 * @since 0.1.0
 * @category constructors
 */
export const config = (runId: string, changed: Record<string, unknown>): LogRecord =>
  envelope(runId, {
    recordType: { case: "config", value: create(ConfigRecordSchema, { update: configItems(changed) }) }
  })

/**
 * A system metrics sample, sent even offline (`always_send`) like wandb-core's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const stats = (
  runId: string,
  timestampSeconds: number,
  metrics: ReadonlyArray<readonly [string, number]>
): LogRecord =>
  envelope(runId, {
    control: create(ControlSchema, { alwaysSend: true }),
    recordType: {
      case: "stats",
      value: create(StatsRecordSchema, {
        statsType: StatsRecord_StatsType.SYSTEM,
        timestamp: timestampFromMs(Math.round(timestampSeconds * 1000)),
        item: metrics.map(([key, value]) => ({ key, valueJson: ExtendedJson.stringify(value) }))
      })
    }
  })

/**
 * Console text as it was written: a piece of a line, a line, or several.
 *
 * @since 0.1.0
 * @category constructors
 */
export const outputRaw = (
  runId: string,
  stream: "stdout" | "stderr",
  text: string,
  timestampSeconds: number
): LogRecord =>
  envelope(runId, {
    recordType: {
      case: "outputRaw",
      value: create(OutputRawRecordSchema, {
        outputType: stream === "stdout" ? OutputRawRecord_OutputType.STDOUT : OutputRawRecord_OutputType.STDERR,
        timestamp: timestampFromMs(Math.round(timestampSeconds * 1000)),
        line: text
      })
    }
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const preempting = (runId: string): LogRecord =>
  envelope(runId, { recordType: { case: "preempting", value: create(RunPreemptingRecordSchema, {}) } })

/**
 * The exit record, sent even offline (`always_send`) like wandb-core's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const exit = (runId: string, exitCode: number, runtimeSeconds: number): LogRecord =>
  envelope(runId, {
    control: create(ControlSchema, { alwaysSend: true }),
    recordType: {
      case: "exit",
      value: create(RunExitRecordSchema, { exitCode, runtime: Math.floor(runtimeSeconds) })
    }
  })

/**
 * `final` and `footer` close the log. wandb-core no longer writes them, but the legacy sync only sends
 * the exit once it sees `final`, and the Go sync treats both as no-ops.
 *
 * @since 0.1.0
 * @category constructors
 */
export const closing = (runId: string): ReadonlyArray<LogRecord> => [
  envelope(runId, { recordType: { case: "final", value: create(FinalRecordSchema, {}) } }),
  envelope(runId, { recordType: { case: "footer", value: create(FooterRecordSchema, {}) } })
]
