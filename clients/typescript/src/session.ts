import { problemFrom, ProblemError } from "./problem.js";
import type { TokenPair, Tokens } from "./types.js";

type Fetch = (request: Request) => Promise<Response>;

// Paths that take no bearer token and whose 401 means "wrong credentials", never "refresh".
const ANONYMOUS = ["/auth/signup", "/auth/login", "/auth/token", "/auth/refresh"];

export interface SessionOptions {
  baseUrl: string;
  fetch: Fetch;
  tokens?: Tokens | null | undefined;
  onTokens?: ((tokens: Tokens | null) => void | Promise<void>) | undefined;
}

/**
 * The signed-in state: the current tokens, and the one refresh that may be running.
 *
 * Refresh tokens rotate: each works once, and presenting a spent one signs the whole session
 * out (the service treats it as theft). So when many calls get 401 together, exactly one of
 * them refreshes and the others wait for its result; a call whose 401 came back for a token
 * that has already been replaced just retries with the new one.
 */
export class Session {
  private current: Tokens | null;
  private refreshing: Promise<Tokens> | null = null;
  private readonly baseUrl: string;
  private readonly send: Fetch;
  private readonly onTokens: SessionOptions["onTokens"];

  constructor(options: SessionOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.send = options.fetch;
    this.current = options.tokens ?? null;
    this.onTokens = options.onTokens;
  }

  get tokens(): Tokens | null {
    return this.current;
  }

  async set(tokens: Tokens | null): Promise<void> {
    this.current = tokens;
    await this.onTokens?.(tokens);
  }

  async setPair(pair: TokenPair): Promise<Tokens> {
    const tokens = { accessToken: pair.access_token, refreshToken: pair.refresh_token };
    await this.set(tokens);
    return tokens;
  }

  /** Trade the refresh token for a new pair; concurrent callers share one request. */
  refresh(): Promise<Tokens> {
    this.refreshing ??= this.rotate().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async rotate(): Promise<Tokens> {
    const spent = this.current;
    if (spent === null) {
      throw new ProblemError({
        type: "about:blank",
        title: "Unauthorized",
        status: 401,
        detail: "Not signed in",
      });
    }
    const response = await this.send(
      new Request(`${this.baseUrl}/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: spent.refreshToken }),
      }),
    );
    if (!response.ok) {
      const problem = await problemFrom(response);
      // The session is over (token spent, revoked or expired): forget it, unless someone
      // signed in again meanwhile.
      if (problem.status === 401 && this.current === spent) await this.set(null);
      throw problem;
    }
    return this.setPair((await response.json()) as TokenPair);
  }

  /** A token newer than `stale`: the one another call already got, or a refreshed one. */
  private async renewed(stale: string): Promise<string | null> {
    const now = this.current;
    if (now !== null && now.accessToken !== stale) return now.accessToken;
    if (now === null) return null;
    try {
      return (await this.refresh()).accessToken;
    } catch (error) {
      if (error instanceof ProblemError && error.status === 401) return null;
      throw error;
    }
  }

  /** `fetch` with the bearer token, refreshing once on a 401. */
  readonly fetch = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    const token = this.current?.accessToken;
    if (token === undefined || ANONYMOUS.some((p) => path.endsWith(p))) {
      return this.send(request);
    }
    const again = request.clone(); // the body can be sent only once
    const response = await this.send(withBearer(request, token));
    if (response.status !== 401) return response;
    const fresh = await this.renewed(token);
    if (fresh === null) return response; // signed out: the caller gets this 401
    await response.body?.cancel();
    return this.send(withBearer(again, fresh));
  };
}

function withBearer(request: Request, token: string): Request {
  const authorized = new Request(request);
  authorized.headers.set("Authorization", `Bearer ${token}`);
  return authorized;
}
