// Installs the locked dependencies when they are missing or older than the lockfile, so that `npm start`
// and `npm test` work on a fresh checkout without a separate install step.
import { execSync } from "node:child_process"
import { existsSync, statSync } from "node:fs"

const installed = "node_modules/.package-lock.json"
const stale = !existsSync(installed) || statSync(installed).mtimeMs < statSync("package-lock.json").mtimeMs
if (stale) {
  process.stderr.write("Installing the locked dependencies (npm ci)...\n")
  execSync("npm ci --no-audit --no-fund", { stdio: "inherit" })
}
