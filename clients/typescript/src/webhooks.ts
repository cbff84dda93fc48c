// Webhook verification for Node back ends: `import { verifyWebhook } from
// "notes-api-client/webhooks"`. Deliveries are signed the Standard Webhooks way, so this is
// the `standardwebhooks` package with the payload typed.
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import type { WebhookPayload } from "./types.js";

export { WebhookVerificationError };
export type { WebhookPayload };

type HeaderBag = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string {
  if (headers instanceof Headers) return headers.get(name) ?? "";
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : headers[key];
  return Array.isArray(value) ? value.join(" ") : (value ?? "");
}

/**
 * The delivery's payload once its signature checks out; else a WebhookVerificationError.
 *
 * `body` must be the raw body as received (a string or the bytes: parsing and re-serializing
 * JSON changes it). `headers` may be Node's `req.headers` or a fetch `Headers`. `secrets`: the
 * endpoint's `whsec_...` secret, or while rotating both the new one and the old one. Deliveries
 * older or newer than five minutes are refused (replays).
 */
export function verifyWebhook(
  secrets: string | readonly string[],
  body: string | Uint8Array,
  headers: HeaderBag,
): WebhookPayload {
  const wanted = {
    "webhook-id": header(headers, "webhook-id"),
    "webhook-timestamp": header(headers, "webhook-timestamp"),
    "webhook-signature": header(headers, "webhook-signature"),
  };
  let last: unknown = new WebhookVerificationError("No secret given");
  for (const secret of typeof secrets === "string" ? [secrets] : secrets) {
    try {
      return new Webhook(secret).verify(body, wanted) as WebhookPayload;
    } catch (error) {
      last = error;
    }
  }
  throw last;
}
