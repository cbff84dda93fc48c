import { createParser, type EventSourceMessage } from "eventsource-parser";
import type { Client } from "openapi-fetch";
import type { paths } from "./generated/openapi.js";
import { ProblemError, toProblem } from "./problem.js";
import type { NoteEvent } from "./types.js";

export interface SubscribeOptions {
  /** One note's events; leave out for every note you may see. */
  noteId?: string;
  /** Start after this event (an `id` you saw before): what was missed is replayed first. */
  lastEventId?: string;
  /** Aborting it ends the stream, like `close()`. */
  signal?: AbortSignal;
  /** The longest pause between reconnection attempts, in ms (default 30 000). */
  maxRetryDelay?: number;
}

/**
 * A live event stream: iterate it with `for await`. It reconnects by itself when the
 * connection drops or the service ends it (an expired token: the reconnect refreshes it),
 * sending `Last-Event-ID`, so no event is missed or seen twice. Leaving the loop closes it.
 * A refusal that retrying cannot fix (401 once refreshing failed, 404, 422) ends the
 * iteration with a ProblemError.
 */
export interface EventStream extends AsyncIterable<NoteEvent> {
  /** Resolves once the service has accepted the stream: later changes will be in it. */
  readonly ready: Promise<void>;
  /** The id of the last event received: keep it to resume in a later stream. */
  readonly lastEventId: string | undefined;
  /** How many times the stream has reconnected. */
  readonly reconnects: number;
  close(): void;
}

// Answers worth trying again later: the service is busy or briefly away.
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

class Stream implements EventStream {
  lastEventId: string | undefined;
  reconnects = 0;
  readonly ready: Promise<void>;
  private opened!: () => void;
  private refused!: (error: unknown) => void;
  private readonly queue: NoteEvent[] = [];
  private wake: (() => void) | null = null;
  private finished = false;
  private failure: unknown = undefined;
  private ended = false; // a note's stream after `note.deleted`
  private retryMs = 3000;
  private readonly abort = new AbortController();

  constructor(
    private readonly api: Client<paths>,
    private readonly options: SubscribeOptions,
  ) {
    this.lastEventId = options.lastEventId;
    this.ready = new Promise<void>((resolve, reject) => {
      this.opened = resolve;
      this.refused = reject;
    });
    this.ready.catch(() => undefined); // also reported by the iteration
    const signal = options.signal;
    if (signal?.aborted) this.close();
    signal?.addEventListener("abort", () => this.close(), { once: true });
    void this.run();
  }

  close(): void {
    this.abort.abort();
    this.finish();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<NoteEvent> {
    try {
      for (;;) {
        const event = this.queue.shift();
        if (event !== undefined) {
          yield event;
        } else if (this.finished) {
          if (this.failure !== undefined) throw this.failure;
          return;
        } else {
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
      }
    } finally {
      this.close();
    }
  }

  private get closed(): boolean {
    return this.abort.signal.aborted;
  }

  private finish(error?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = error;
    if (error === undefined) this.opened();
    else this.refused(error);
    this.notify();
  }

  private notify(): void {
    this.wake?.();
    this.wake = null;
  }

  private async connect() {
    const init = {
      parseAs: "stream" as const,
      signal: this.abort.signal,
      headers: {
        Accept: "text/event-stream",
        ...(this.lastEventId !== undefined ? { "Last-Event-ID": this.lastEventId } : {}),
      },
    };
    const noteId = this.options.noteId;
    return noteId === undefined
      ? this.api.GET("/notes/events", init)
      : this.api.GET("/notes/{note_id}/events", { ...init, params: { path: { note_id: noteId } } });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      let pause = this.retryMs;
      try {
        const { data, error, response } = await this.connect();
        if (!response.ok || !data) {
          const problem = new ProblemError(toProblem(error, response), response);
          if (!RETRYABLE.has(response.status)) return this.finish(problem);
          failures += 1;
          pause = problem.retryAfter !== undefined ? problem.retryAfter * 1000 : backoff(failures);
        } else {
          failures = 0;
          await this.read(data);
          if (this.ended) return this.finish();
        }
      } catch {
        // A dropped connection (or our own close): reconnect unless closed.
        failures += 1;
        pause = Math.max(pause, backoff(failures));
      }
      if (this.closed) break;
      this.reconnects += 1;
      await sleep(Math.min(pause, this.options.maxRetryDelay ?? 30_000), this.abort.signal);
    }
    this.finish();
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = createParser({
      onEvent: (message) => this.deliver(message),
      onRetry: (ms) => {
        this.retryMs = ms;
        this.opened();
      },
      onComment: () => this.opened(),
    });
    try {
      while (!this.ended) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } finally {
      reader.cancel().catch(() => undefined);
    }
  }

  private deliver(message: EventSourceMessage): void {
    this.opened();
    let body: Omit<NoteEvent, "id"> & { id?: unknown };
    try {
      body = JSON.parse(message.data) as typeof body;
    } catch {
      return; // not an event of this service's shape
    }
    const id = message.id ?? (body.id === undefined ? undefined : String(body.id));
    if (id !== undefined) this.lastEventId = id;
    this.queue.push({ ...body, id: id ?? "" } as NoteEvent);
    this.notify();
    if (this.options.noteId !== undefined && body.type === "note.deleted") this.ended = true;
  }
}

function backoff(failures: number): number {
  const ceiling = Math.min(30_000, 500 * 2 ** Math.min(failures, 10));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

export function subscribe(api: Client<paths>, options: SubscribeOptions = {}): EventStream {
  return new Stream(api, options);
}
