// Names for the generated types an app uses most. Everything here comes from the service's
// OpenAPI document (./generated/openapi.ts), except the shape of an event: the stream is
// declared there only as text/event-stream, so NoteEvent is written from the note's schema.
import type { components, paths } from "./generated/openapi.js";

export type { components, paths };
type Schemas = components["schemas"];

export type Note = Schemas["NotePublic"];
export type NoteStatus = Schemas["NoteStatus"];
export type NotePage = Schemas["NotePage"];
export type NoteCreate = Schemas["NoteCreate"];
export type NoteUpdate = Schemas["NoteUpdate"];
export type NoteListQuery = NonNullable<paths["/notes"]["get"]["parameters"]["query"]>;
export type User = Schemas["UserPublic"];
export type Role = Schemas["Role"];
export type TokenPair = Schemas["TokenPair"];
export type SignupRequest = Schemas["SignupRequest"];
export type SignupResponse = Schemas["SignupResponse"];
export type Problem = Schemas["Problem"];
export type FieldError = Schemas["FieldError"];
export type EventType = Schemas["EventType"];
export type Webhook = Schemas["WebhookPublic"];
export type WebhookCreated = Schemas["WebhookCreated"];

/** A note that has finished: its summary is there (`done`) or its error is (`failed`). */
export type FinishedNote = Note & { status: "done" | "failed" };

/** What events carry of a note: everything but its text. */
export type NoteState = Omit<Note, "raw_text">;

/** The `data` of an event: the note's state, or for `note.deleted` only who it was. */
export type EventData<T extends EventType> = T extends "note.deleted"
  ? { id: string; owner_id: string }
  : NoteState;

/** One event of a stream. `id` is the SSE `id:`, what `Last-Event-ID` resumes after. */
export type NoteEvent = {
  [T in EventType]: { id: string; type: T; occurred_at: string; data: EventData<T> };
}[EventType];

/** The body of a webhook delivery. */
export type WebhookPayload = {
  [T in EventType]: { type: T; timestamp: string; data: EventData<T> };
}[EventType];

/** The tokens a signed-in client holds; give them back to `createNotesClient` to resume. */
export interface Tokens {
  accessToken: string;
  refreshToken: string;
}
