import { defaultServerConditions } from "vite"
import { defineConfig } from "vitest/config"

// Tests import the package by name; the "source" export condition resolves it to src/ without a build.
const conditions = ["source", ...defaultServerConditions]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/support/setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
