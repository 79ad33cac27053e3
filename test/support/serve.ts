/**
 * Runs the test server by hand, e.g. to point an example program at it:
 *
 *   npx tsx test/support/serve.ts [--port N]
 *
 * Prints the base URL and a sample API key (any well-formed key is accepted), then serves until SIGINT or
 * SIGTERM, when it prints a JSON summary of every run it received and exits.
 */
import { sampleApiKey, startTestServer, stringifyExtendedJson } from "./WandbTestServer.js"

const usage = "usage: npx tsx test/support/serve.ts [--port N]"

const parsePort = (args: ReadonlyArray<string>): number => {
  const inline = args.find((arg) => arg.startsWith("--port="))
  const index = args.indexOf("--port")
  const text = inline?.slice("--port=".length) ?? (index === -1 ? "0" : args[index + 1])
  const port = Number(text)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`invalid port ${JSON.stringify(text)}\n${usage}\n`)
    process.exit(2)
  }
  return port
}

const server = await startTestServer({ port: parsePort(process.argv.slice(2)) })
const apiKey = sampleApiKey()

process.stdout.write(
  [
    `W&B test server listening on ${server.url}`,
    `sample API key: ${apiKey}`,
    `  WANDB_BASE_URL=${server.url} WANDB_API_KEY=${apiKey} <command>`,
    "Ctrl-C prints what the server received and stops it.",
    ""
  ].join("\n")
)

const shutdown = (signal: NodeJS.Signals): void => {
  // the extended writer keeps NaN and ±Infinity visible where JSON.stringify would print null
  const state = stringifyExtendedJson(server.snapshot(), 2)
  process.stdout.write(`\n${signal}: state of the test server\n${state}\n`)
  server.close().then(() => process.exit(0), (error: unknown) => {
    process.stderr.write(`closing failed: ${String(error)}\n`)
    process.exit(1)
  })
}

process.once("SIGINT", shutdown)
process.once("SIGTERM", shutdown)
