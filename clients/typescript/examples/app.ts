// An app using every helper of notes-api-client, type-checked under --strict and run by
// the tests against a live service (test/example.test.ts). Run it yourself with
//   node build/examples/app.js http://127.0.0.1:8000
// against a service started with WEBHOOK_ALLOW_PRIVATE=true (its webhook receiver is local).
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import {
  createNotesClient,
  ProblemError,
  unwrap,
  WaitTimeoutError,
  type NoteEvent,
  type Tokens,
  type WebhookPayload,
} from "notes-api-client";
import { verifyWebhook, WebhookVerificationError } from "notes-api-client/webhooks";

function describe(event: NoteEvent): string {
  switch (event.type) {
    case "note.queued":
    case "note.processing":
    case "note.updated":
      return `${event.type}: "${event.data.title ?? "untitled"}" is ${event.data.status}`;
    case "note.done":
      return `summary ready: ${event.data.summary ?? ""}`;
    case "note.failed":
      return `failed after ${event.data.attempts} attempts: ${event.data.error ?? "?"}`;
    case "note.deleted":
      return `deleted ${event.data.id}`;
    default: {
      const unknown: never = event;
      return `unknown event ${JSON.stringify(unknown)}`;
    }
  }
}

/** A webhook receiver for a Node back end: verifies each delivery before trusting it. */
function webhookReceiver(secret: () => string, onPayload: (p: WebhookPayload) => void) {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      try {
        onPayload(verifyWebhook(secret(), Buffer.concat(chunks), req.headers));
        res.writeHead(204).end();
      } catch (error) {
        res.writeHead(error instanceof WebhookVerificationError ? 400 : 500).end();
      }
    });
  });
}

export async function run(baseUrl: string, say: (line: string) => void = console.log) {
  let saved: Tokens | null = null; // an app would keep these in SecureStore or localStorage
  const notes = createNotesClient({ baseUrl, onTokens: (tokens) => void (saved = tokens) });

  // Sign up with a new organization: you are its admin.
  const email = `example-${randomUUID().slice(0, 8)}@example.com`;
  const account = await notes.signUp({
    email,
    password: "correct horse battery",
    organization_name: `Example ${randomUUID().slice(0, 8)}`,
  });
  say(`signed up ${account.user.email} as ${account.user.role}`);

  // Webhooks to a local receiver, verified with the endpoint's secret.
  let secret = "";
  const delivered: WebhookPayload[] = [];
  const receiver = webhookReceiver(() => secret, (payload) => delivered.push(payload));
  await new Promise<void>((done) => receiver.listen(0, "127.0.0.1", done));
  const address = receiver.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const hook = await unwrap(
    notes.api.POST("/webhooks", {
      body: { url: `http://127.0.0.1:${port}/hooks`, events: ["note.done"] },
    }),
  );
  secret = hook.secret;

  // Watch every note of the organization, then write one and wait for its summary.
  const stream = notes.subscribe();
  await stream.ready;
  const note = await unwrap(
    notes.api.POST("/notes", {
      body: { title: "Acme call", raw_text: "Dana called about the renewal. She wants a quote for 40 seats. Follow up on Monday." },
      headers: { "Idempotency-Key": randomUUID() },
    }),
  );
  say(`created ${note.id}: ${note.status}`);
  try {
    const finished = await notes.waitForSummary(note.id, { timeout: 30 });
    say(finished.status === "done" ? `summary: ${finished.summary}` : `failed: ${finished.error}`);
  } catch (error) {
    if (error instanceof WaitTimeoutError) say(`still ${error.note.status} after 30 s`);
    else throw error;
  }
  for await (const event of stream) {
    if (event.data.id !== note.id) continue;
    say(describe(event));
    if (event.type === "note.done" || event.type === "note.failed") break; // closes the stream
  }

  // Every finished note, page by page.
  for await (const each of notes.listAll({ status: "done", limit: 50 })) {
    say(`listed ${each.id} (${each.title ?? "untitled"})`);
  }

  // Errors are typed problems.
  try {
    await unwrap(notes.api.PATCH("/notes/{note_id}", { params: { path: { note_id: note.id } }, body: { raw_text: "" } }));
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    say(`refused: ${error.status} ${error.detail} ${error.errors.map((e) => e.loc.join(".")).join(", ")}`);
  }

  // Another launch of the app: resume the saved session, with no password.
  const later = createNotesClient({ baseUrl, tokens: saved });
  const me = await unwrap(later.api.GET("/users/me"));
  say(`resumed as ${me.email}`);
  await later.refresh();
  await later.signOut();

  for (let i = 0; i < 100 && delivered.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  receiver.close();
  const payload = delivered[0];
  say(payload ? `webhook verified: ${payload.type} for ${payload.data.id}` : "no webhook yet");
  return { noteId: note.id, delivered };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await run(process.argv[2] ?? "http://127.0.0.1:8000");
}
