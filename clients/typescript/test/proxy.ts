// A TCP proxy in front of the service, to drop connections the way a flaky network does.
import { connect, createServer, type Server, type Socket } from "node:net";

export class Proxy {
  private readonly open = new Set<Socket>();
  private held: Socket[] = [];
  private holding = false;
  connections = 0;

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<Proxy> {
    const { hostname, port } = new URL(target);
    let proxy: Proxy | undefined;
    const server = createServer((client) => proxy?.accept(client, hostname, Number(port)));
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const address = server.address();
    const own = typeof address === "object" && address ? address.port : 0;
    proxy = new Proxy(server, `http://127.0.0.1:${own}`);
    return proxy;
  }

  private accept(client: Socket, host: string, port: number): void {
    this.open.add(client);
    client.on("close", () => this.open.delete(client));
    client.on("error", () => client.destroy());
    if (this.holding) {
      this.held.push(Object.assign(client, { target: { host, port } }));
      return;
    }
    this.pipe(client, host, port);
  }

  private pipe(client: Socket, host: string, port: number): void {
    this.connections += 1;
    const upstream = connect(port, host);
    upstream.on("error", () => client.destroy());
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  }

  /** Drops every open connection, and holds new ones (unanswered) until `resume()`. */
  cut(): void {
    this.holding = true;
    for (const socket of this.open) socket.destroy();
  }

  resume(): void {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const socket of held) {
      const { host, port } = (socket as Socket & { target: { host: string; port: number } }).target;
      if (!socket.destroyed) this.pipe(socket, host, port);
    }
  }

  async stop(): Promise<void> {
    for (const socket of this.open) socket.destroy();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}
