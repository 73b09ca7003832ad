// A scripted WebSocket server for the cases a real imserver does not make
// on demand: an answer lost on the way, a PUSH above a gap, a body that does
// not decode, a login refused for good, a huge reconnect delay. It decodes
// each frame and hands it to `script[cmd]` (by command name), which answers
// through the helpers; LOGIN, PULL and CONV_LIST have defaults. Loopback
// only, a free port.
import { WebSocketServer } from "ws";
import { Cmd, decodeFrame, encodeFrame, im } from "../../dist/index.js";

const v1 = im.v1;

export class FakeServer {
  constructor(script = {}) {
    this.script = script;
    this.connections = 0;
    this.frames = []; // every frame received: { cmd, body }
    this.inbox = []; // the rows PULL answers from (v1.IMessage with inboxSeq)
    this.sockets = new Set();
  }

  async start() {
    this.wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((resolve) => this.wss.on("listening", resolve));
    this.wss.on("connection", (ws) => {
      this.connections += 1;
      this.sockets.add(ws);
      ws.on("close", () => this.sockets.delete(ws));
      ws.on("message", (data) => {
        const f = decodeFrame(new Uint8Array(data));
        this.frames.push({ cmd: f.header.cmd, body: f.body });
        const name = Object.keys(Cmd).find((k) => Cmd[k] === f.header.cmd);
        const handler = this.script[name] ?? defaults[name];
        if (handler) handler(this.link(ws, f), f);
      });
    });
  }

  get url() {
    return `ws://127.0.0.1:${this.wss.address().port}/ws`;
  }

  link(ws, f) {
    return {
      server: this,
      answer: (message, type, status = 0) =>
        ws.send(encodeFrame({ flags: 1, cmd: f.header.cmd, status, seq: f.header.seq }, message ? type.encode(message).finish() : new Uint8Array(0))),
      error: (status, message = "", retryAfterMs = 0) =>
        ws.send(encodeFrame({ flags: 1, cmd: f.header.cmd, status, seq: f.header.seq }, v1.Error.encode({ message, retryAfterMs }).finish())),
      push: (cmd, body) => ws.send(encodeFrame({ flags: 0, cmd, status: 0, seq: 0 }, body)),
      close: () => ws.terminate(),
    };
  }

  sent(cmd) {
    return this.frames.filter((f) => f.cmd === cmd);
  }

  async stop() {
    for (const ws of this.sockets) ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

const defaults = {
  LOGIN: (l) => l.answer({ heartbeatIntervalS: 30, inboxMaxSeq: l.server.inbox.length }, v1.LoginResp),
  PULL: (l, f) => {
    const after = Number(v1.PullReq.decode(f.body).afterSeq);
    const messages = l.server.inbox.filter((m) => m.inboxSeq > after);
    l.answer({ messages, hasMore: false, inboxMaxSeq: l.server.inbox.length, oldestSeq: 1 }, v1.PullResp);
  },
  CONV_LIST: (l) => l.answer({}, v1.ConvListResp),
};

/** An inbox row for the fake server. */
export function row(inboxSeq, extra = {}) {
  return {
    msgId: 1000 + inboxSeq,
    convType: v1.ConvType.C2C,
    from: "bob",
    to: "alice",
    convSeq: inboxSeq,
    inboxSeq,
    body: new TextEncoder().encode(`m${inboxSeq}`),
    serverTimeMs: 1,
    ...extra,
  };
}
