import type { FieldError, Problem } from "./types.js";

/** An error answer of the service, as its RFC 9457 problem+json body says it. */
export class ProblemError extends Error {
  override readonly name = "ProblemError";
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly type: string;
  /** For 422: which fields were refused and why. */
  readonly errors: FieldError[];
  /** Seconds to wait before trying again (429, 503), from `Retry-After`. */
  readonly retryAfter: number | undefined;
  readonly problem: Problem;
  readonly response: Response | undefined;

  constructor(problem: Problem, response?: Response) {
    super(`${problem.status} ${problem.title}: ${problem.detail}`);
    this.problem = problem;
    this.status = problem.status;
    this.title = problem.title;
    this.detail = problem.detail;
    this.type = problem.type;
    this.errors = problem.errors ?? [];
    this.response = response;
    this.retryAfter = retryAfterSeconds(response?.headers.get("Retry-After") ?? null);
  }
}

function retryAfterSeconds(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

function isProblem(body: unknown): body is Problem {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.status === "number" && typeof b.title === "string";
}

/** A problem from any error answer: the service's own problem+json, or one made up from the
 * status when something in between (a proxy, a gateway) answered with something else. */
export function toProblem(body: unknown, response: Response): Problem {
  if (isProblem(body)) {
    // A problem from some other server may leave these out.
    return { ...body, type: body.type ?? "about:blank", detail: body.detail ?? "" };
  }
  const text = typeof body === "string" ? body.slice(0, 500) : "";
  return {
    type: "about:blank",
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
    detail: text,
  };
}

/** Reads an error response's body into a ProblemError. */
export async function problemFrom(response: Response): Promise<ProblemError> {
  const text = await response.text().catch(() => "");
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: toProblem keeps the text as the detail
  }
  return new ProblemError(toProblem(body, response), response);
}

type Outcome = { data?: unknown; error?: unknown; response: Response };
/** The success half of an `openapi-fetch` answer's type: its data. */
type Data<R extends Outcome> = Extract<R, { error?: never }>["data"];

/**
 * The data of an `openapi-fetch` call, or a thrown ProblemError:
 * `const note = await unwrap(client.api.POST("/notes", { body }))`.
 */
export async function unwrap<R extends Outcome>(call: Promise<R>): Promise<Data<R>> {
  const outcome = await call;
  if (outcome.error !== undefined || !outcome.response.ok) {
    throw new ProblemError(toProblem(outcome.error, outcome.response), outcome.response);
  }
  return outcome.data as Data<R>;
}
