export { createNotesClient, WaitTimeoutError } from "./client.js";
export type { NotesClient, NotesClientOptions, WaitOptions } from "./client.js";
export type { EventStream, SubscribeOptions } from "./events.js";
export { ProblemError, unwrap } from "./problem.js";
export type * from "./types.js";
