import assert from "node:assert/strict";
import { test } from "node:test";
import { run } from "../examples/app.js";
import { useService } from "./service.js";

const url = useService();

test("the example app runs from sign-up to a verified webhook", { timeout: 60_000 }, async () => {
  const lines: string[] = [];
  const { noteId, delivered } = await run(url(), (line) => lines.push(line));
  assert.ok(lines.some((l) => l.startsWith("summary: ")), lines.join("\n"));
  assert.ok(lines.some((l) => /^refused: 422 .* body\.raw_text$/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => l.startsWith("resumed as ")));
  assert.deepEqual(delivered.map((p) => [p.type, p.data.id]), [["note.done", noteId]]);
});
