// `npm test`: one service for every test file (starting one takes seconds), then node's
// test runner on the compiled files, then the service stopped whatever happened.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startService } from "./service.js";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".test.js"))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort()
  .map((f) => join(here, f));

const service = await startService();
let code = 1;
try {
  // A file whose tests are over exits even if a failed test left a stream open; the tests
  // that wait on the service set their own timeouts, and the whole run has one too.
  const args = ["--test", "--test-concurrency=2", "--test-force-exit"];
  const runner = spawn(process.execPath, [...args, ...files], {
    stdio: "inherit",
    env: { ...process.env, NOTES_API_URL: service.url },
  });
  const stop = () => runner.kill("SIGTERM");
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const watchdog = setTimeout(() => {
    console.error("test run: still running after 5 minutes; stopping it");
    stop();
  }, 300_000);
  code = await new Promise<number>((done) => runner.once("exit", (c) => done(c ?? 1)));
  clearTimeout(watchdog);
} finally {
  await service.stop();
}
process.exit(code);
