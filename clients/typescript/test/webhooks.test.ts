import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { test } from "node:test";
import { unwrap } from "notes-api-client";
import { verifyWebhook, WebhookVerificationError } from "notes-api-client/webhooks";
import { NOTE_TEXT, signedInAdmin, useService } from "./service.js";

const url = useService();

interface Delivery {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A local receiver that keeps every delivery; `next(match)` waits for one. */
async function receiver() {
  const deliveries: Delivery[] = [];
  let arrived: (() => void) | null = null;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
      arrived?.();
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  async function next(match: (d: Delivery) => boolean, seconds = 20): Promise<Delivery> {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
      const found = deliveries.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error("no matching delivery arrived");
      await new Promise<void>((r) => {
        arrived = r;
        setTimeout(r, 200);
      });
    }
  }
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    next,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}

const about = (noteId: string) => (d: Delivery) => d.body.toString().includes(noteId);

test("a delivery to a local receiver verifies, and a forged or re-signed one does not", async () => {
  const hooks = await receiver();
  const { admin, agent } = await signedInAdmin(url());
  const endpoint = await unwrap(
    admin.api.POST("/webhooks", { body: { url: hooks.url, events: ["note.done"] } }),
  );
  try {
    assert.match(endpoint.secret, /^whsec_/);
    const client = await agent("webhooks");
    const note = await unwrap(client.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
    const delivery = await hooks.next(about(note.id));

    const payload = verifyWebhook(endpoint.secret, delivery.body, delivery.headers);
    assert.equal(payload.type, "note.done");
    assert.ok(payload.type === "note.done" && payload.data.status === "done");
    assert.equal(payload.data.id, note.id);
    assert.ok(payload.data.summary);
    // A fetch Headers and a string body (what a fetch-style server hands over) work too.
    const headers = new Headers();
    for (const [k, v] of Object.entries(delivery.headers)) if (typeof v === "string") headers.set(k, v);
    assert.equal(verifyWebhook(endpoint.secret, delivery.body.toString(), headers).type, "note.done");
    const capitalized = Object.fromEntries(
      ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"].map((k) => [k, headers.get(k) ?? ""]),
    );
    assert.equal(verifyWebhook(endpoint.secret, delivery.body, capitalized).data.id, note.id);

    const tampered = delivery.body.toString().replace('"done"', '"failed"');
    assert.throws(() => verifyWebhook(endpoint.secret, tampered, delivery.headers), WebhookVerificationError);
    const other = "whsec_" + Buffer.alloc(32, 7).toString("base64");
    assert.throws(() => verifyWebhook(other, delivery.body, delivery.headers), WebhookVerificationError);
    const unsigned = { ...delivery.headers, "webhook-signature": undefined };
    assert.throws(() => verifyWebhook(endpoint.secret, delivery.body, unsigned), WebhookVerificationError);
  } finally {
    await admin.api.DELETE("/webhooks/{webhook_id}", {
      params: { path: { webhook_id: endpoint.id } },
    });
    await hooks.close();
  }
});

test("after a secret rotation a delivery verifies with the old secret and with the new", async () => {
  const hooks = await receiver();
  const { admin, agent } = await signedInAdmin(url());
  const endpoint = await unwrap(
    admin.api.POST("/webhooks", { body: { url: hooks.url, events: ["note.done"] } }),
  );
  try {
    const rotated = await unwrap(
      admin.api.POST("/webhooks/{webhook_id}/rotate-secret", {
        params: { path: { webhook_id: endpoint.id } },
      }),
    );
    assert.notEqual(rotated.secret, endpoint.secret);
    const client = await agent("rotation");
    const note = await unwrap(client.api.POST("/notes", { body: { raw_text: NOTE_TEXT } }));
    const delivery = await hooks.next(about(note.id));
    for (const secrets of [endpoint.secret, rotated.secret, [endpoint.secret, rotated.secret]]) {
      assert.equal(verifyWebhook(secrets, delivery.body, delivery.headers).data.id, note.id);
    }
  } finally {
    await admin.api.DELETE("/webhooks/{webhook_id}", {
      params: { path: { webhook_id: endpoint.id } },
    });
    await hooks.close();
  }
});
