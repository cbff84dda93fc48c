import createClient, { type Client } from "openapi-fetch";
import { subscribe, type EventStream, type SubscribeOptions } from "./events.js";
import type { paths } from "./generated/openapi.js";
import { ProblemError, unwrap } from "./problem.js";
import { Session } from "./session.js";
import type {
  FinishedNote,
  Note,
  NoteListQuery,
  NotePage,
  SignupRequest,
  SignupResponse,
  Tokens,
} from "./types.js";

export interface NotesClientOptions {
  /** Where the service answers, e.g. `https://notes.example.com`. */
  baseUrl: string;
  /** Tokens saved from an earlier session, to resume it without signing in. */
  tokens?: Tokens | null;
  /** Called whenever the tokens change (sign-in, each refresh, sign-out or a session that
   * ended: `null`). Save them here (SecureStore, localStorage...); awaited before use. */
  onTokens?: (tokens: Tokens | null) => void | Promise<void>;
  /** A fetch to use instead of the global one (Expo's `expo/fetch` for streaming, tests). */
  fetch?: (request: Request) => Promise<Response>;
}

export interface WaitOptions {
  /** Give up after this many seconds (default 120): a WaitTimeoutError. */
  timeout?: number;
  signal?: AbortSignal;
}

/** The note did not finish in time; `note` is how it stood at the last answer. */
export class WaitTimeoutError extends Error {
  override readonly name = "WaitTimeoutError";
  constructor(readonly note: Note) {
    super(`note ${note.id} is still ${note.status}`);
  }
}

const MAX_WAIT = 30; // seconds: the most `?wait=` the service accepts

export interface NotesClient {
  /** Every operation of the service, typed from its OpenAPI document (openapi-fetch),
   * sending the bearer token and refreshing it on a 401. Pass a call to `unwrap` to get
   * its data or a thrown ProblemError. */
  readonly api: Client<paths>;
  /** The tokens held now, or null when signed out. */
  readonly tokens: Tokens | null;
  signUp(body: SignupRequest): Promise<SignupResponse>;
  signIn(email: string, password: string): Promise<Tokens>;
  /** Revokes the refresh token on the service and forgets the tokens. */
  signOut(): Promise<void>;
  /** A new token pair now; concurrent calls share one refresh. Rarely needed: every call
   * refreshes by itself on a 401. */
  refresh(): Promise<Tokens>;
  /** The note once it is `done` or `failed`, long-polling `GET /notes/{id}?wait=`. */
  waitForSummary(noteId: string, options?: WaitOptions): Promise<FinishedNote>;
  /** Every note matching `query`, newest first, following `next_cursor` page by page. */
  listAll(query?: Omit<NoteListQuery, "cursor">, signal?: AbortSignal): AsyncGenerator<Note>;
  /** Live events of one note (`noteId`) or of every note you may see, over SSE, resuming
   * after a disconnect with `Last-Event-ID`. */
  subscribe(options?: SubscribeOptions): EventStream;
}

export function createNotesClient(options: NotesClientOptions): NotesClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const session = new Session({
    baseUrl,
    fetch: send,
    tokens: options.tokens,
    onTokens: options.onTokens,
  });
  const api = createClient<paths>({ baseUrl, fetch: session.fetch });

  async function waitForSummary(noteId: string, wait: WaitOptions = {}): Promise<FinishedNote> {
    const deadline = Date.now() + (wait.timeout ?? 120) * 1000;
    for (;;) {
      const left = Math.max(0, (deadline - Date.now()) / 1000);
      const note = await unwrap(
        api.GET("/notes/{note_id}", {
          params: { path: { note_id: noteId }, query: { wait: Math.min(MAX_WAIT, left) } },
          ...(wait.signal ? { signal: wait.signal } : {}),
        }),
      );
      if (note.status === "done" || note.status === "failed") return note as FinishedNote;
      if (Date.now() >= deadline) throw new WaitTimeoutError(note);
    }
  }

  async function* listAll(
    query: Omit<NoteListQuery, "cursor"> = {},
    signal?: AbortSignal,
  ): AsyncGenerator<Note> {
    let cursor: string | null = null;
    do {
      const page: NotePage = await unwrap(
        api.GET("/notes", {
          params: { query: cursor === null ? query : { ...query, cursor } },
          ...(signal ? { signal } : {}),
        }),
      );
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor !== null);
  }

  return {
    api,
    get tokens() {
      return session.tokens;
    },
    async signUp(body) {
      const created = await unwrap(api.POST("/auth/signup", { body }));
      await session.setPair(created);
      return created;
    },
    async signIn(email, password) {
      return session.setPair(
        await unwrap(api.POST("/auth/login", { body: { email, password } })),
      );
    },
    async signOut() {
      const tokens = session.tokens;
      if (tokens === null) return;
      try {
        await unwrap(api.POST("/auth/logout", { body: { refresh_token: tokens.refreshToken } }));
      } catch (error) {
        // Already over on the service's side: signed out all the same.
        if (!(error instanceof ProblemError && error.status === 401)) throw error;
      } finally {
        await session.set(null);
      }
    },
    refresh: () => session.refresh(),
    waitForSummary,
    listAll,
    subscribe: (subscribeOptions = {}) => subscribe(api, subscribeOptions),
  };
}
