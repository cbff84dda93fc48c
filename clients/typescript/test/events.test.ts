import assert from "node:assert/strict";
import { test } from "node:test";
import {
  createNotesClient,
  unwrap,
  type EventStream,
  type NoteEvent,
  type NotesClient,
} from "notes-api-client";
import { Proxy } from "./proxy.js";
import {
  AGENT_PASSWORD,
  expiringIn,
  NOTE_TEXT,
  signedInAdmin,
  useService,
} from "./service.js";

const url = useService();
const TIMEOUT = { timeout: 30_000 };

/** Events of `noteId` from `stream` until `until` says stop (the stream stays open). */
async function collect(
  stream: EventStream,
  noteId: string,
  until: (seen: NoteEvent[]) => boolean,
): Promise<NoteEvent[]> {
  const seen: NoteEvent[] = [];
  const iterator = stream[Symbol.asyncIterator]();
  while (!until(seen)) {
    const next = await iterator.next();
    if (next.done) break;
    if (next.value.data.id === noteId) seen.push(next.value);
  }
  return seen;
}

const types = (events: NoteEvent[]) => events.map((e) => e.type);
const lastIs = (type: NoteEvent["type"]) => (seen: NoteEvent[]) => seen.at(-1)?.type === type;

/** Records the Last-Event-ID of each stream request a client makes. */
function recording() {
  const resumedFrom: (string | null)[] = [];
  const fetch = (request: Request) => {
    if (new URL(request.url).pathname.endsWith("/events")) {
      resumedFrom.push(request.headers.get("Last-Event-ID"));
    }
    return globalThis.fetch(request);
  };
  return { resumedFrom, fetch };
}

test("a stream of every note sees queued, processing, done in order", TIMEOUT, async (t) => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("stream-all");
  const stream = client.subscribe({ signal: t.signal });
  await stream.ready;
  const note = await unwrap(client.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
  const seen = await collect(stream, note.id, lastIs("note.done"));
  stream.close();
  assert.deepEqual(types(seen), ["note.queued", "note.processing", "note.done"]);
  assert.deepEqual(
    seen.map((e) => e.data.id === note.id && "status" in e.data && e.data.status),
    ["queued", "processing", "done"],
  );
  assert.equal(new Set(seen.map((e) => e.id)).size, 3, "each its own id");
  assert.equal(stream.lastEventId, seen.at(-1)?.id);
});

test("after a dropped connection the stream resumes with Last-Event-ID: nothing missed, nothing twice", TIMEOUT, async (t) => {
  const { agent } = await signedInAdmin(url());
  const direct = await agent("resume");
  const me = await unwrap(direct.api.GET("/users/me"));
  const proxy = await Proxy.start(url());
  const { resumedFrom, fetch } = recording();
  // The same user, a second session, over the proxy.
  const client = createNotesClient({ baseUrl: proxy.url, fetch });
  await client.signIn(me.email, AGENT_PASSWORD);
  try {
    const stream = client.subscribe({ signal: t.signal });
    await stream.ready;
    const note = await unwrap(direct.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
    const before = await collect(stream, note.id, lastIs("note.done"));
    assert.deepEqual(types(before), ["note.queued", "note.processing", "note.done"]);

    proxy.cut(); // the connection drops; reconnecting hangs until resume()
    const edit = `${NOTE_TEXT} Edited while the client was offline.`;
    await unwrap(
      direct.api.PATCH("/notes/{note_id}", {
        params: { path: { note_id: note.id } },
        body: { raw_text: edit },
      }),
    );
    await direct.waitForSummary(note.id, { timeout: 20 });
    proxy.resume();

    const after = await collect(stream, note.id, lastIs("note.done"));
    stream.close();
    assert.deepEqual(types(after), ["note.queued", "note.processing", "note.done"]);
    assert.ok(stream.reconnects >= 1);
    assert.deepEqual(resumedFrom.slice(0, 2), [null, before.at(-1)?.id]);
    const ids = [...before, ...after].map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, "no event twice");
  } finally {
    await proxy.stop();
  }
});

test("a note's stream follows an edit to done and ends by itself after the delete", TIMEOUT, async (t) => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("stream-one");
  const note = await unwrap(client.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
  await client.waitForSummary(note.id);
  const stream = client.subscribe({ noteId: note.id, signal: t.signal });
  await stream.ready;
  await unwrap(
    client.api.PATCH("/notes/{note_id}", {
      params: { path: { note_id: note.id } },
      body: { raw_text: `${NOTE_TEXT} Second version.` },
    }),
  );
  const seen: NoteEvent[] = [];
  for await (const event of stream) {
    seen.push(event);
    if (event.type === "note.done" && types(seen).includes("note.queued")) {
      await unwrap(
        client.api.DELETE("/notes/{note_id}", { params: { path: { note_id: note.id } } }),
      );
    }
  }
  // The stream may open with the note's current state; what follows is the edit's course.
  const fromEdit = types(seen).slice(types(seen).indexOf("note.queued"));
  assert.deepEqual(fromEdit, ["note.queued", "note.processing", "note.done", "note.deleted"]);
  assert.ok(seen.every((e) => e.data.id === note.id));
  const deleted = seen.at(-1);
  assert.ok(deleted?.type === "note.deleted");
  assert.deepEqual(Object.keys(deleted.data).sort(), ["id", "owner_id"]);
});

test("a later stream started with lastEventId replays what happened in between", TIMEOUT, async (t) => {
  const { agent } = await signedInAdmin(url());
  const client = await agent("replay");
  const first = client.subscribe({ signal: t.signal });
  await first.ready;
  const note = await unwrap(client.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
  await collect(first, note.id, lastIs("note.done"));
  first.close();
  const saved = first.lastEventId;
  assert.ok(saved);

  // While no stream is open: the title changes, then the note is deleted.
  await unwrap(
    client.api.PATCH("/notes/{note_id}", {
      params: { path: { note_id: note.id } },
      body: { title: "Renamed offline" },
    }),
  );
  await unwrap(client.api.DELETE("/notes/{note_id}", { params: { path: { note_id: note.id } } }));

  const later = client.subscribe({ lastEventId: saved, signal: t.signal });
  const missed = await collect(later, note.id, lastIs("note.deleted"));
  later.close();
  assert.deepEqual(types(missed), ["note.updated", "note.deleted"]);
  const updated = missed[0];
  assert.ok(updated?.type === "note.updated");
  assert.equal(updated.data.title, "Renamed offline");
});

test("a stream whose token expires reconnects with a refreshed token and misses nothing", TIMEOUT, async (t) => {
  const { agent } = await signedInAdmin(url());
  const signedIn = await agent("expiry");
  const tokens = signedIn.tokens;
  assert.ok(tokens);
  const { resumedFrom, fetch } = recording();
  // The same session, holding an access token that runs out in two seconds.
  const client: NotesClient = createNotesClient({
    baseUrl: url(),
    fetch,
    tokens: { ...tokens, accessToken: expiringIn(tokens.accessToken, 2) },
  });
  const stream = client.subscribe({ signal: t.signal });
  await stream.ready;
  const note = await unwrap(signedIn.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
  const before = await collect(stream, note.id, lastIs("note.done"));
  await new Promise((r) => setTimeout(r, 2500)); // the token has expired
  // This change wakes the stream, which then finds its token expired and ends.
  await unwrap(
    signedIn.api.PATCH("/notes/{note_id}", {
      params: { path: { note_id: note.id } },
      body: { title: "After expiry" },
    }),
  );
  const after = await collect(stream, note.id, lastIs("note.updated"));
  stream.close();
  assert.deepEqual(types(before), ["note.queued", "note.processing", "note.done"]);
  assert.deepEqual(types(after), ["note.updated"]);
  assert.notEqual(client.tokens?.accessToken, tokens.accessToken, "refreshed");
  assert.equal(resumedFrom.length >= 2, true);
  assert.equal(resumedFrom.at(-1), before.at(-1)?.id);
});
