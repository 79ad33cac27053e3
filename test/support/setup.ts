import { afterAll } from "vitest"
import { removeTempDirs } from "./runFiles.js"

afterAll(removeTempDirs)
