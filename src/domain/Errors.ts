/**
 * The errors of wandb-effect. Every failure a user can meet is one of these classes: each has a `_tag`
 * equal to its class name, fields naming what went wrong, and a message a user can act on. The same
 * classes reach Promise users as rejections, so `instanceof` and `_tag` both work.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * One rule that a setting broke: which setting, from which source, and why.
 *
 * @since 0.1.0
 * @category models
 */
export class SettingViolation extends Schema.Class<SettingViolation>("SettingViolation")({
  setting: Schema.String,
  source: Schema.String,
  reason: Schema.String
}) {}

/**
 * Every violation found while resolving settings and init options, reported at once.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidSettings extends Schema.TaggedError<InvalidSettings>("wandb-effect/InvalidSettings")(
  "InvalidSettings",
  { violations: Schema.Array(SettingViolation) }
) {
  override get message(): string {
    const lines = this.violations.map((v) => `  - ${v.setting} (from ${v.source}): ${v.reason}`)
    return `Invalid settings (${this.violations.length}):\n${lines.join("\n")}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class CredentialsMissing extends Schema.TaggedError<CredentialsMissing>("wandb-effect/CredentialsMissing")(
  "CredentialsMissing",
  { baseUrl: Schema.String }
) {
  override get message(): string {
    return `No API key configured for ${this.baseUrl}. Set WANDB_API_KEY, or add a netrc entry for the host ` +
      `(~/.netrc or $NETRC).`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class CredentialsRejected extends Schema.TaggedError<CredentialsRejected>("wandb-effect/CredentialsRejected")(
  "CredentialsRejected",
  { baseUrl: Schema.String, status: Schema.Number, reason: Schema.optional(Schema.String) }
) {
  override get message(): string {
    const why = this.reason === undefined ? "" : `: ${this.reason}`
    return `The server at ${this.baseUrl} rejected the API key (HTTP ${this.status})${why}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class ResumeError extends Schema.TaggedError<ResumeError>("wandb-effect/ResumeError")(
  "ResumeError",
  {
    reason: Schema.Literal("not-found", "exists", "another-run-active", "unreadable"),
    runId: Schema.String,
    entity: Schema.String,
    project: Schema.String
  }
) {
  override get message(): string {
    const where = `${this.entity || "<default entity>"}/${this.project}/${this.runId}`
    switch (this.reason) {
      case "not-found":
        return `resume: "must" needs an existing run, and ${where} was never started. ` +
          `Omit resume or use "allow".`
      case "exists":
        return `resume: "never" refuses the existing run ${where}. Choose another id or use "allow".`
      case "another-run-active":
        return `Cannot resume ${where} while another run is active; finish it or use reinit: "create_new".`
      case "unreadable":
        return `The server's data for ${where} could not be read, and resume is "must".`
    }
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class RunIdInUse extends Schema.TaggedError<RunIdInUse>("wandb-effect/RunIdInUse")(
  "RunIdInUse",
  { runId: Schema.String }
) {
  override get message(): string {
    return `Run id ${this.runId} is in use by a run of this process that has not finished.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class ConfigValueChanged extends Schema.TaggedError<ConfigValueChanged>("wandb-effect/ConfigValueChanged")(
  "ConfigValueChanged",
  { key: Schema.String, oldValue: Schema.Unknown, newValue: Schema.Unknown }
) {
  override get message(): string {
    return `Config key "${this.key}" would change from ${show(this.oldValue)} to ${show(this.newValue)}. ` +
      `Pass { allowValChange: true } to config.update to allow it.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class ConfigFileError extends Schema.TaggedError<ConfigFileError>("wandb-effect/ConfigFileError")(
  "ConfigFileError",
  { path: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `Config file ${this.path}: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class DirectoryNotWritable extends Schema.TaggedError<DirectoryNotWritable>(
  "wandb-effect/DirectoryNotWritable"
)(
  "DirectoryNotWritable",
  { path: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `Cannot write runs under ${this.path}: ${this.reason}. Pass a writable dir to init.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class InitTimeout extends Schema.TaggedError<InitTimeout>("wandb-effect/InitTimeout")(
  "InitTimeout",
  { phase: Schema.String, timeoutMillis: Schema.Number, lastError: Schema.optional(Schema.String) }
) {
  override get message(): string {
    const last = this.lastError === undefined ? "" : ` (last error: ${this.lastError})`
    return `init timed out after ${this.timeoutMillis} ms during ${this.phase}${last}. ` +
      `Raise settings.initTimeout or check the server.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Schema.TaggedError<ServerError>("wandb-effect/ServerError")(
  "ServerError",
  { operation: Schema.String, status: Schema.Number, body: Schema.optional(Schema.String) }
) {
  override get message(): string {
    const body = this.body === undefined || this.body === "" ? "" : `: ${this.body.slice(0, 500)}`
    return `${this.operation} failed with HTTP ${this.status}${body}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class NetworkError extends Schema.TaggedError<NetworkError>("wandb-effect/NetworkError")(
  "NetworkError",
  { operation: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `${this.operation} could not reach the server: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class RunFinished extends Schema.TaggedError<RunFinished>("wandb-effect/RunFinished")(
  "RunFinished",
  { runId: Schema.String, method: Schema.String }
) {
  override get message(): string {
    return `Run ${this.runId} is finished; the call to ${this.method} was ignored.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class FinishTimeout extends Schema.TaggedError<FinishTimeout>("wandb-effect/FinishTimeout")(
  "FinishTimeout",
  { runId: Schema.String, timeoutMillis: Schema.Number, pending: Schema.String, runDir: Schema.String }
) {
  override get message(): string {
    return `Finishing run ${this.runId} took longer than ${this.timeoutMillis} ms; still pending: ${this.pending}. ` +
      `Everything is on disk in ${this.runDir}; run \`wandb-effect sync ${this.runDir}\` later.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class TransactionLogCorrupt extends Schema.TaggedError<TransactionLogCorrupt>(
  "wandb-effect/TransactionLogCorrupt"
)(
  "TransactionLogCorrupt",
  { path: Schema.String, offset: Schema.Number, reason: Schema.String, recordsBefore: Schema.Number }
) {
  override get message(): string {
    return `${this.path} is corrupt at byte ${this.offset} (${this.reason}); ` +
      `${this.recordsBefore} records before it are intact.`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class TransactionLogTruncated extends Schema.TaggedError<TransactionLogTruncated>(
  "wandb-effect/TransactionLogTruncated"
)(
  "TransactionLogTruncated",
  { path: Schema.String, offset: Schema.Number, reason: Schema.String, recordsBefore: Schema.Number }
) {
  override get message(): string {
    return `${this.path} ends inside a record at byte ${this.offset} (${this.reason}); ` +
      `${this.recordsBefore} records before it are intact.`
  }
}

/**
 * A failure of the run's own storage while it was live: the disk filled up, the directory vanished.
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageError extends Schema.TaggedError<StorageError>("wandb-effect/StorageError")(
  "StorageError",
  { path: Schema.String, operation: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `${this.operation} on ${this.path} failed: ${this.reason}`
  }
}

/**
 * A value a user passed that no rule can accept, such as `log` given something that is not an object.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>("wandb-effect/InvalidArgument")(
  "InvalidArgument",
  { method: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `${this.method}: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export type InitError =
  | InvalidSettings
  | CredentialsMissing
  | CredentialsRejected
  | ResumeError
  | RunIdInUse
  | ConfigFileError
  | ConfigValueChanged
  | DirectoryNotWritable
  | InitTimeout
  | ServerError
  | NetworkError
  | StorageError

const show = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
