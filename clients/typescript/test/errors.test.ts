import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { createNotesClient, ProblemError, unwrap } from "notes-api-client";
import { AGENT_PASSWORD, NOTE_TEXT, signedInAdmin, uniqueEmail, useService } from "./service.js";

const url = useService();

/** The ProblemError a call is refused with (and the test fails if it is not refused). */
async function refused(call: Promise<unknown>): Promise<ProblemError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof ProblemError, `not a ProblemError: ${String(error)}`);
    assert.equal(error.type, "about:blank");
    assert.equal(error.problem.status, error.status);
    assert.equal(error.response?.headers.get("Content-Type"), "application/problem+json");
    assert.ok(error.detail.length > 0);
    return error;
  }
  assert.fail("the call was not refused");
}

const missing = "00000000-0000-4000-8000-000000000000";

test("400: a body that is not JSON", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("e400");
  const problem = await refused(
    unwrap(client.api.POST("/notes", { body: { raw_text: "x" }, bodySerializer: () => "{oops" })),
  );
  assert.equal(problem.status, 400);
  assert.equal(problem.title, "Malformed request");
});

test("401: wrong password, and a call without signing in", async () => {
  const { agent } = await signedInAdmin(url());
  const someone = await agent("e401");
  const me = await unwrap(someone.api.GET("/users/me"));
  const client = createNotesClient({ baseUrl: url() });
  const wrong = await refused(client.signIn(me.email, "not the password"));
  assert.equal(wrong.status, 401);
  assert.equal(client.tokens, null);
  const anonymous = await refused(unwrap(client.api.GET("/notes")));
  assert.equal(anonymous.status, 401);
});

test("403: an agent asks for an admin's resource", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("e403");
  const problem = await refused(unwrap(client.api.GET("/webhooks")));
  assert.equal(problem.status, 403);
});

test("404: a missing note, another agent's note, and a stream of either", async (t) => {
  const { agent } = await signedInAdmin(url());
  const owner = await agent("e404-owner");
  const stranger = await agent("e404-stranger");
  const note = await unwrap(owner.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
  for (const id of [missing, note.id]) {
    const problem = await refused(
      unwrap(stranger.api.GET("/notes/{note_id}", { params: { path: { note_id: id } } })),
    );
    assert.equal(problem.status, 404);
    assert.match(problem.detail, /not found/i);
    await refused(stranger.waitForSummary(id));

    const stream = stranger.subscribe({ noteId: id, signal: t.signal });
    await assert.rejects(stream.ready, (e) => e instanceof ProblemError && e.status === 404);
    const iteration = (async () => {
      for await (const event of stream) assert.fail(`unexpected event ${event.type}`);
    })();
    assert.equal((await refused(iteration)).status, 404);
  }
});

test("409: an email already taken, and a retry of a note that has not failed", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("e409");
  const me = await unwrap(client.api.GET("/users/me"));
  const anonymous = createNotesClient({ baseUrl: url() });
  const taken = await refused(anonymous.signUp({ email: me.email, password: AGENT_PASSWORD }));
  assert.equal(taken.status, 409);

  const note = await unwrap(client.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
  await client.waitForSummary(note.id);
  const retry = await refused(
    unwrap(client.api.POST("/notes/{note_id}/retry", { params: { path: { note_id: note.id } } })),
  );
  assert.equal(retry.status, 409);
});

test("413 and 415: a body too large, and a body that does not say it is JSON", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("e413");
  const large = await refused(
    unwrap(client.api.POST("/notes", { body: { raw_text: "a".repeat(1_100_000) } })),
  );
  assert.equal(large.status, 413);
  const plain = await refused(
    unwrap(
      client.api.POST("/notes", {
        body: { raw_text: NOTE_TEXT },
        headers: { "Content-Type": "text/plain" },
      }),
    ),
  );
  assert.equal(plain.status, 415);
});

test("422: invalid fields come with the list of what was refused", async () => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("e422");
  const blank = await refused(unwrap(client.api.POST("/notes", { body: { raw_text: "   " } })));
  assert.equal(blank.status, 422);
  assert.deepEqual(blank.errors.map((e) => e.loc), [["body", "raw_text"]]);
  assert.ok(blank.errors[0]?.msg);

  const wait = await refused(
    unwrap(
      client.api.GET("/notes/{note_id}", {
        params: { path: { note_id: missing }, query: { wait: 31 } },
      }),
    ),
  );
  assert.equal(wait.status, 422);
  assert.deepEqual(wait.errors.map((e) => e.loc), [["query", "wait"]]);
});

test("429: repeated failed logins, with Retry-After", async () => {
  const { agent } = await signedInAdmin(url());
  const target = await agent("e429");
  const { email } = await unwrap(target.api.GET("/users/me"));
  const anonymous = createNotesClient({ baseUrl: url() });
  // Its own client address (the service believes a local proxy), so that the other tests'
  // logins from 127.0.0.1 are not slowed down by this one.
  const headers = { "X-Forwarded-For": "203.0.113.29" };
  let problem: ProblemError | undefined;
  for (let i = 0; i < 30 && problem?.status !== 429; i++) {
    problem = await refused(
      unwrap(anonymous.api.POST("/auth/login", { body: { email, password: "wrong" }, headers })),
    );
    assert.ok([401, 429].includes(problem.status));
  }
  assert.equal(problem?.status, 429);
  assert.ok(problem.retryAfter !== undefined && problem.retryAfter > 0);
});

test("an error answer that is not problem+json (a proxy's 502 page) is still a ProblemError", async () => {
  const gateway = createServer((_req, res) => {
    res.writeHead(502, { "Content-Type": "text/html" }).end("<h1>502 Bad Gateway</h1>");
  });
  await new Promise<void>((done) => gateway.listen(0, "127.0.0.1", done));
  const address = gateway.address();
  const port = typeof address === "object" && address ? address.port : 0;
  try {
    const client = createNotesClient({ baseUrl: `http://127.0.0.1:${port}` });
    const error = await client.signIn(uniqueEmail("gw"), "whatever").catch((e: unknown) => e);
    assert.ok(error instanceof ProblemError);
    assert.equal(error.status, 502);
    assert.equal(error.title, "Bad Gateway");
    assert.equal(error.detail, "<h1>502 Bad Gateway</h1>");
  } finally {
    await new Promise<void>((done) => gateway.close(() => done()));
  }
});
