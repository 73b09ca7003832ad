// Starts the real imserver for the SDK's tests: loopback ports picked free
// (fixed across restarts, so clients reconnect to the same address), a
// temporary data dir, tokens minted with the test secret. Stops only the
// process it started, by pid.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeFrame, decodeFrame, HEADER_BYTES, Cmd, ImClient, im } from "../../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const IMSERVER = process.env.IM_SERVER_BINARY ?? join(here, "..", "..", "..", "..", "build", "imserver");
const SECRET = "js-sdk-test-secret-of-at-least-32-bytes";

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function b64url(data) {
  return Buffer.from(data).toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

/** An HS256 JWT for `uid` (exp in seconds from now; none when 0). */
export function token(uid, expiresInS = 3600) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = { sub: uid };
  if (expiresInS) claims.exp = Math.floor(Date.now() / 1000) + expiresInS;
  const payload = b64url(JSON.stringify(claims));
  const sig = b64url(createHmac("sha256", SECRET).update(`${header}.${payload}`).digest());
  return `${header}.${payload}.${sig}`;
}

export class Server {
  constructor(extra = {}) {
    this.extra = extra;
    this.dir = mkdtempSync(join(tmpdir(), "imjs-"));
    this.proc = undefined;
  }

  async start() {
    // Ports found free can be taken by another process (tests run in
    // parallel) before imserver binds them: a first start picks again
    // (at most 5 tries); a restart keeps its ports, which clients reconnect to.
    const first = !this.tcpPort;
    for (let attempt = 1; ; attempt++) {
      if (!this.tcpPort) {
        this.tcpPort = await freePort();
        this.wsPort = await freePort();
      }
      try {
        return await this.spawn();
      } catch (e) {
        if (!first || attempt >= 5 || !String(e.message).includes("Address already in use")) throw e;
        this.tcpPort = undefined;
      }
    }
  }

  async spawn() {
    const values = {
      'server.listen': `"127.0.0.1:${this.tcpPort}"`,
      'server.ws_listen': `"127.0.0.1:${this.wsPort}"`,
      'admin.listen': `""`,
      'storage.data_dir': `"${join(this.dir, `data${this.generation ?? ''}`)}"`,
      'auth.mode': `"jwt"`,
      'auth.jwt_secret': `"${SECRET}"`,
      'server.io_threads': '2',
      'sharding.shards': '2',
      ...this.extra,
    };
    const sections = {};
    for (const [k, v] of Object.entries(values)) {
      const [section, key] = [k.slice(0, k.indexOf(".")), k.slice(k.indexOf(".") + 1)];
      (sections[section] ??= []).push(`${key} = ${v}`);
    }
    const toml = Object.entries(sections).map(([s, lines]) => `[${s}]\n${lines.join("\n")}\n`).join("");
    writeFileSync(join(this.dir, "im.toml"), toml);
    const log = openSync(join(this.dir, "server.log"), "a");
    this.proc = spawn(IMSERVER, ["--config", join(this.dir, "im.toml")], { stdio: ["ignore", "pipe", log] });
    closeSync(log);
    await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`imserver did not start: ${out}`)), 30_000);
      this.proc.stdout.on("data", (chunk) => {
        out += chunk;
        if (out.includes("listening tcp") && out.includes("listening ws")) {
          clearTimeout(timer);
          resolve();
        }
      });
      this.proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`imserver exited with ${code}: ${out}${readFileSync(join(this.dir, "server.log"), "utf8")}`));
      });
    });
    this.proc.stdout.resume();
  }

  get url() {
    return `ws://127.0.0.1:${this.wsPort}/ws`;
  }

  /** Stops the process it started: SIGTERM (graceful) or SIGKILL. */
  async stop(signal = "SIGTERM") {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((resolve) => p.once("exit", resolve));
    p.kill(signal);
    const timer = setTimeout(() => p.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
    this.proc = undefined;
  }

  /** The next start uses a new, empty data dir (a wiped or replaced store). */
  freshData() {
    this.generation = (this.generation ?? 0) + 1;
  }

  async kill9() {
    await this.stop("SIGKILL");
  }

  async restart() {
    await this.start();
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** An SDK client of `server` for `uid`, with short reconnect delays for the tests. */
export function client(server, uid, extra = {}) {
  return new ImClient({ url: server.url, uid, token: () => token(uid), backoff: { baseMs: 50, maxMs: 400 }, ...extra });
}

/** A server of its own and a logged-in client of `uid` for `body(server, client)`; both stopped after. */
export async function withClient(serverExtra, uid, body) {
  const server = new Server(serverExtra);
  await server.start();
  const c = client(server, uid);
  try {
    await c.connect();
    await body(server, c);
  } finally {
    await c.close();
    await server.dispose();
  }
}

/** A bare TCP client (PROTOCOL frames straight on TCP), for the cross-transport tests. */
export class TcpClient {
  static async login(port, uid) {
    const c = new TcpClient();
    await new Promise((resolve, reject) => {
      c.sock = connect(port, "127.0.0.1", resolve);
      c.sock.once("error", reject);
    });
    c.buf = Buffer.alloc(0);
    c.waiting = new Map();
    c.pushes = [];
    c.pushWaiters = [];
    c.seq = 1;
    c.sock.on("data", (d) => c.onData(d));
    const resp = await c.call(Cmd.LOGIN, im.v1.LoginReq.encode({ uid, token: token(uid), deviceType: im.v1.DeviceType.DESKTOP }).finish());
    if (resp.header.status !== 0) throw new Error(`TCP login refused: ${resp.header.status}`);
    return c;
  }

  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= HEADER_BYTES) {
      const len = this.buf.readUInt32BE(12);
      if (this.buf.length < HEADER_BYTES + len) return;
      const frame = decodeFrame(new Uint8Array(this.buf.subarray(0, HEADER_BYTES + len)));
      this.buf = this.buf.subarray(HEADER_BYTES + len);
      if (frame.header.flags & 1) {
        this.waiting.get(frame.header.seq)?.(frame);
        this.waiting.delete(frame.header.seq);
      } else if (frame.header.cmd === Cmd.PUSH) {
        for (const m of im.v1.MessagePush.decode(frame.body).messages) this.pushes.push(m);
        for (const w of this.pushWaiters.splice(0)) w();
      }
    }
  }

  call(cmd, body) {
    const seq = this.seq++;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      this.sock.write(encodeFrame({ flags: 0, cmd, status: 0, seq }, body));
    });
  }

  async send(to, text, convType = im.v1.ConvType.C2C) {
    const f = await this.call(Cmd.SEND, im.v1.SendReq.encode({ clientMsgId: `tcp-${Date.now()}-${this.seq}`, convType, to, body: new TextEncoder().encode(text) }).finish());
    if (f.header.status !== 0) throw new Error(`TCP send refused: ${f.header.status}`);
    return im.v1.SendResp.decode(f.body);
  }

  /** Waits (at most `ms`) until `n` messages were pushed; all of them. */
  async pushed(n, ms = 10_000) {
    const deadline = Date.now() + ms;
    while (this.pushes.length < n && Date.now() < deadline)
      await new Promise((r) => {
        this.pushWaiters.push(r);
        setTimeout(r, 100);
      });
    return this.pushes;
  }

  close() {
    this.sock.destroy();
  }
}

/** Resolves when `cond()` holds (polled), rejects after `ms`. */
export async function until(cond, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
