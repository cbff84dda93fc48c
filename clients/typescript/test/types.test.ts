import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { packageDir } from "./service.js";

test("the checked-in types are what the service's OpenAPI document generates now", () => {
  const run = spawnSync(process.execPath, [join(packageDir, "scripts", "generate-types.mjs"), "--check"], {
    encoding: "utf8",
  });
  assert.equal(run.status, 0, `${run.stderr}\n${run.stdout}`);
});
