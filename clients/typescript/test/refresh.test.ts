import assert from "node:assert/strict";
import { test } from "node:test";
import { createNotesClient, ProblemError, unwrap, type Tokens } from "notes-api-client";
import { expiringIn, NOTE_TEXT, signedInAdmin, useService } from "./service.js";

const url = useService();

/** A fetch that counts the refreshes a client makes. */
function counting() {
  const counts = { refresh: 0, requests: 0 };
  const fetch = (request: Request) => {
    counts.requests += 1;
    if (new URL(request.url).pathname === "/auth/refresh") counts.refresh += 1;
    return globalThis.fetch(request);
  };
  return { counts, fetch };
}

test("twelve calls that meet an expired token share one refresh, and all succeed", async () => {
  const { agent } = await signedInAdmin(url());
  const signedIn = await agent("refresh");
  const start = signedIn.tokens;
  assert.ok(start);
  const saved: (Tokens | null)[] = [];
  const { counts, fetch } = counting();
  const client = createNotesClient({
    baseUrl: url(),
    fetch,
    tokens: { ...start, accessToken: expiringIn(start.accessToken, -60) },
    onTokens: (t) => void saved.push(t),
  });

  const reads = Array.from({ length: 10 }, () => unwrap(client.api.GET("/users/me")));
  // Calls with a body are sent again after the refresh, body included.
  const writes = [0, 1].map((i) =>
    unwrap(client.api.POST("/notes", { body: { raw_text: `${NOTE_TEXT} #${i}`, title: `w${i}` } })),
  );
  const [mes, notes] = await Promise.all([Promise.all(reads), Promise.all(writes)]);

  assert.equal(counts.refresh, 1, "one refresh for all of them");
  assert.ok(mes.every((me) => me.email === mes[0]?.email));
  assert.deepEqual(
    notes.map((n) => [n.title, n.raw_text]),
    [0, 1].map((i) => [`w${i}`, `${NOTE_TEXT} #${i}`]),
  );
  assert.equal(saved.length, 1);
  assert.deepEqual(client.tokens, saved[0]);
  assert.notEqual(client.tokens?.refreshToken, start.refreshToken, "the refresh token rotated");

  // Afterwards the new token is used at once: no 401, no refresh.
  const before = counts.requests;
  await unwrap(client.api.GET("/users/me"));
  assert.equal(counts.requests - before, 1);
  assert.equal(counts.refresh, 1);
});

test("an explicit refresh() during calls that need one is still a single refresh", async () => {
  const { agent } = await signedInAdmin(url());
  const signedIn = await agent("refresh-explicit");
  const start = signedIn.tokens;
  assert.ok(start);
  const { counts, fetch } = counting();
  const client = createNotesClient({
    baseUrl: url(),
    fetch,
    tokens: { ...start, accessToken: expiringIn(start.accessToken, -60) },
  });
  const [a, b, tokens] = await Promise.all([
    unwrap(client.api.GET("/users/me")),
    unwrap(client.api.GET("/notes")),
    client.refresh(),
  ]);
  assert.equal(counts.refresh, 1);
  assert.ok(a.id && Array.isArray(b.items));
  assert.deepEqual(client.tokens, tokens);
});

test("when the refresh is refused the session ends: tokens forgotten, the call's 401 thrown", async () => {
  const { agent } = await signedInAdmin(url());
  const signedIn = await agent("refresh-refused");
  const start = signedIn.tokens;
  assert.ok(start);
  await signedIn.signOut(); // the refresh token no longer works
  const saved: (Tokens | null)[] = [];
  const { counts, fetch } = counting();
  const client = createNotesClient({
    baseUrl: url(),
    fetch,
    tokens: { ...start, accessToken: expiringIn(start.accessToken, -60) },
    onTokens: (t) => void saved.push(t),
  });
  const calls = await Promise.allSettled([
    unwrap(client.api.GET("/users/me")),
    unwrap(client.api.GET("/notes")),
  ]);
  for (const call of calls) {
    assert.equal(call.status, "rejected");
    assert.ok(call.reason instanceof ProblemError);
    assert.equal(call.reason.status, 401);
  }
  assert.equal(counts.refresh, 1);
  assert.equal(client.tokens, null);
  assert.deepEqual(saved, [null]);
});
