// Starts the real service for a test file: `notes-api serve` on SQLite in a temporary
// directory, a free port, the worker embedded. Nothing is mocked.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";

// build/test/service.js -> the package -> the repository
const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const repo = resolve(pkg, "../..");
export const packageDir = pkg;

export const JWT_SECRET = "client-tests-jwt-secret-0123456789abcdef";
export const ADMIN = { email: "admin@client-tests.example.com", password: "admin password 1" };

export interface Service {
  url: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once("exit", () => done());
  });
}

export async function startService(env: Record<string, string> = {}): Promise<Service> {
  const dir = mkdtempSync(join(tmpdir(), "notes-client-test-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const bin = process.env.NOTES_API_BIN ?? join(repo, ".venv", "bin", "notes-api");
  // Only what is written here: no .env (cwd is the temporary directory), no settings from
  // the shell that runs the tests.
  const child = spawn(bin, ["serve"], {
    cwd: dir,
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? dir,
      APP_ENV: "development",
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_URL: `sqlite:///${join(dir, "notes.db")}`,
      WORKER_EMBEDDED: "true",
      WEBHOOK_ALLOW_PRIVATE: "true",
      // The test client stands for a proxy: errors.test.ts gives its failed logins their own
      // address with X-Forwarded-For, so they lock out no one else's.
      FORWARDED_ALLOW_IPS: "127.0.0.1",
      JWT_SECRET,
      BOOTSTRAP_ADMIN_EMAIL: ADMIN.email,
      BOOTSTRAP_ADMIN_PASSWORD: ADMIN.password,
      // Cheap password hashes: the tests sign in often; production parameters are the
      // service's own tests' business.
      ARGON2_MEMORY_KIB: "1024",
      ARGON2_TIME_COST: "1",
      JOB_POLL_INTERVAL: "0.2",
      EVENT_RETRY_MS: "200",
      LOG_LEVEL: "WARNING",
      LOG_FORMAT: "console",
      ...env,
    },
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const stop = async () => {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited(child);
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`notes-api serve exited with ${child.exitCode}:\n${stderr}`);
    }
    try {
      const ready = await fetch(`${url}/readyz`);
      if (ready.ok) return { url, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`notes-api serve did not become ready in 60 s:\n${stderr}`);
}

export function uniqueEmail(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}@client-tests.example.com`;
}

/** The same access token, expiring `seconds` from now (negative: already expired), signed
 * with the test service's secret: what a client holds after a quarter of an hour. */
export function expiringIn(accessToken: string, seconds: number): string {
  const [header, payload] = accessToken.split(".");
  const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as object;
  const now = Math.floor(Date.now() / 1000);
  const body = Buffer.from(JSON.stringify({ ...claims, iat: now - 1000, exp: now + seconds }));
  const signed = `${header}.${body.toString("base64url")}`;
  const signature = createHmac("sha256", JWT_SECRET).update(signed).digest("base64url");
  return `${signed}.${signature}`;
}

export const NOTE_TEXT =
  "Dana from Acme called about the renewal. They want the CRM export by Friday. " +
  "They also asked for a quote for 40 seats. Follow up on Monday with the pricing sheet. " +
  "Mention the annual discount. Send the security questionnaire back by Wednesday.";

export const AGENT_PASSWORD = "agent password 1";

/** The bootstrap admin, signed in, and a function that provisions agents through it
 * (`POST /users`), so the tests spend no sign-ups (which the service limits per address). */
export async function signedInAdmin(url: string) {
  const { createNotesClient, unwrap } = await import("notes-api-client");
  const admin = createNotesClient({ baseUrl: url });
  await admin.signIn(ADMIN.email, ADMIN.password);
  async function agent(label: string, options: { fetch?: (r: Request) => Promise<Response> } = {}) {
    const email = uniqueEmail(label);
    await unwrap(admin.api.POST("/users", { body: { email, password: AGENT_PASSWORD, role: "AGENT" } }));
    const client = createNotesClient({ baseUrl: url, ...options });
    await client.signIn(email, AGENT_PASSWORD);
    return client;
  }
  return { admin, agent };
}

/**
 * The service a test file talks to: the one `test/run.ts` started for every file
 * (NOTES_API_URL), or, when a file runs alone, one of its own. Call at the top of a file.
 */
export function useService(): () => string {
  let url = process.env.NOTES_API_URL;
  let own: Service | undefined;
  before(async () => {
    if (url === undefined) {
      own = await startService();
      url = own.url;
    }
  });
  after(async () => {
    await own?.stop();
  });
  return () => {
    if (url === undefined) throw new Error("the service is not started yet");
    return url;
  };
}
