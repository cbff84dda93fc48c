import assert from "node:assert/strict";
import { test } from "node:test";
import { createNotesClient, unwrap, type Note, type Tokens } from "notes-api-client";
import { NOTE_TEXT, signedInAdmin, uniqueEmail, useService } from "./service.js";

const url = useService();

test("sign up stores the tokens and reports them to onTokens", async () => {
  const saved: (Tokens | null)[] = [];
  const client = createNotesClient({ baseUrl: url(), onTokens: (t) => void saved.push(t) });
  const email = uniqueEmail("signup");
  const created = await client.signUp({ email, password: "correct horse battery" });
  assert.equal(created.user.email, email);
  assert.equal(created.user.role, "AGENT");
  assert.equal(client.tokens?.accessToken, created.access_token);
  assert.deepEqual(saved, [{ accessToken: created.access_token, refreshToken: created.refresh_token }]);
  const me = await unwrap(client.api.GET("/users/me"));
  assert.equal(me.id, created.user.id);

  await client.signOut();
  assert.equal(client.tokens, null);
  assert.equal(saved.at(-1), null);
  // The refresh token was revoked on the service, not just forgotten here.
  const reuse = await client.api.POST("/auth/refresh", {
    body: { refresh_token: created.refresh_token },
  });
  assert.equal(reuse.response.status, 401);
});

test("create answers queued at once; waitForSummary returns it done with its summary", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("create");
  const { data, response } = await client.api.POST("/notes", {
    body: { raw_text: NOTE_TEXT, title: "Acme call" },
    headers: { "Idempotency-Key": crypto.randomUUID() },
  });
  assert.equal(response.status, 202);
  assert.ok(data);
  assert.equal(data.status, "queued");
  assert.equal(data.summary, null);
  assert.equal(response.headers.get("Location"), `/notes/${data.id}`);

  const done = await client.waitForSummary(data.id, { timeout: 30 });
  assert.equal(done.status, "done");
  assert.equal(done.id, data.id);
  assert.ok(done.summary && done.summary.length > 0, "a done note has its summary");
  assert.ok(NOTE_TEXT.includes(done.summary.split(".")[0] ?? "-"), "extractive: its sentences");
});

test("listing follows next_cursor page by page, newest first, each note once", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("list");
  const created: Note[] = [];
  for (let i = 0; i < 5; i++) {
    created.push(await unwrap(client.api.POST("/notes", { body: { raw_text: `${NOTE_TEXT} (${i})` } })));
  }
  const newestFirst = created.map((n) => n.id).reverse();

  const pages: string[][] = [];
  let cursor: string | null | undefined;
  do {
    const page = await unwrap(
      client.api.GET("/notes", { params: { query: { limit: 2, ...(cursor ? { cursor } : {}) } } }),
    );
    pages.push(page.items.map((n) => n.id));
    cursor = page.next_cursor;
  } while (cursor);
  assert.deepEqual(pages, [newestFirst.slice(0, 2), newestFirst.slice(2, 4), newestFirst.slice(4)]);

  const all: string[] = [];
  for await (const note of client.listAll({ limit: 2 })) all.push(note.id);
  assert.deepEqual(all, newestFirst);

  const some: string[] = [];
  for await (const note of client.listAll({ q: "(3)" })) some.push(note.id);
  assert.deepEqual(some, [created[3]?.id]);
});
