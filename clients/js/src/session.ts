// ImSession: one user's session with imserver over WebSocket (PROTOCOL.md):
// the connection, the inbox and the outbox. ImClient (client.ts) adds the
// protocol's calls and the conversation list.
//
// What it does for the application:
// - LOGIN with a token from the application's provider, asked again when
//   the server refuses or expires the token;
// - HEARTBEAT at the server's interval; the link is taken for dead after two
//   intervals without any frame from the server;
// - reconnect with exponential backoff and full jitter, honouring KICKOUT's
//   reconnect_after_ms and an admission refusal's retry_after_ms; never after
//   LOGIN_ELSEWHERE or ADMIN;
// - resync after every login by PULL from the highest inbox seq held (kept
//   in a ClientStorage), ACK of what it holds, and every inbox message given
//   to the application exactly once and in inbox order ("message" events),
//   whether it came by PUSH, PULL or as the answer to its own SEND;
// - SEND with an automatic client_msg_id, through an outbox kept in the
//   storage and sent again after a reconnect (the server dedupes it), one
//   promise per send.
//
// Threading: none; everything runs on the caller's event loop.

import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
import { ClientClosed, ConnectionLost, ImError, SendExpired, serverDelay } from "./errors.js";
import { im } from "./gen/im.js";
import { Cmd, decodeFrame, encodeFrame, FLAG_RESPONSE, HEADER_BYTES, Status, type Frame } from "./header.js";
import { emptyState, MemoryStorage, type ClientState, type ClientStorage, type PendingSend } from "./storage.js";
import { bytesOf, OPEN, socketConstructor, type SocketConstructor, type SocketLike } from "./transport.js";
import { Emitter } from "./emitter.js";
import { toMessage, type Message } from "./types.js";
import type { Conversation } from "./conversations.js";
import { LargeGroups } from "./large_groups.js";

const v1 = im.v1;

export type ConnectionState = "idle" | "connecting" | "online" | "offline" | "closed";

/** Why the token provider is called. */
export type TokenReason = "login" | "refused" | "expired";
export type TokenProvider = (reason: TokenReason) => Promise<string> | string;

export interface ClientOptions {
  /** ws://host:9701/ws or wss://... */
  url: string;
  uid: string;
  token: TokenProvider;
  /** PROTOCOL DeviceType; WEB by default. */
  deviceType?: number;
  deviceId?: string;
  storage?: ClientStorage;
  WebSocket?: SocketConstructor;
  backoff?: BackoffOptions;
  /** How long a request waits for its answer (default 15 s). */
  requestTimeoutMs?: number;
  /**
   * How long an unanswered send stays in the outbox (default 23 hours): keep
   * it below the server's storage.dedupe_window_s (24 hours by default), or
   * a send retried later could be stored twice. Past it the send is given
   * up with SendExpired.
   */
  outboxMaxAgeMs?: number;
  /**
   * The server's server.max_frame_bytes (default 65,536): a send whose frame
   * would be larger is refused at once with TOO_LARGE (the server would
   * close the link on it).
   */
  maxFrameBytes?: number;
  clientVersion?: string;
}

export interface KickInfo {
  reason: number;
  byDeviceId: string;
  message: string;
  reconnectAfterMs: number;
  /** Whether the client reconnects by itself. */
  reconnects: boolean;
}

export interface SendOptions {
  convType?: number;
  contentType?: number;
  clientMsgId?: string;
  /** What the message is found by in SEARCH (PROTOCOL 8.6): at most 4096 bytes of UTF-8. */
  searchText?: string;
}

export interface SendResult {
  msgId: string;
  convSeq: number;
  inboxSeq: number;
  serverTimeMs: number;
  duplicate: boolean;
}

export interface ClientEvents extends Record<string, unknown> {
  message: Message;
  state: ConnectionState;
  kicked: KickInfo;
  typing: im.v1.ITypingPush;
  presence: im.v1.IPresence[];
  serverPush: im.v1.IServerPush;
  /** The conversation list changed (ImClient). */
  conversations: Conversation[];
  /** Something went wrong in the background (a failed resync, a refused token). */
  error: Error;
}

interface Pending {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface OutboxWaiter {
  resolve: (r: SendResult) => void;
  reject: (e: Error) => void;
}

// Statuses after which a SEND is tried again (with backoff); any other is
// final. INTERNAL at most MAX_INTERNAL_RETRIES times for one message.
const RETRY_SEND_STATUSES = new Set<number>([Status.RATE_LIMITED, Status.UNAVAILABLE, Status.INTERNAL]);
const MAX_INTERNAL_RETRIES = 5;
// A LOGIN answered with one of these is refused for good: the client closes.
const FINAL_LOGIN_STATUSES = new Set<number>([
  Status.BAD_REQUEST,
  Status.FORBIDDEN,
  Status.UNSUPPORTED_VERSION,
  Status.UNKNOWN_COMMAND,
]);
// An upgrade answered with one of these will not work later either.
const FINAL_UPGRADE_STATUSES = new Set<number>([400, 401, 403, 404, 426]);
// The backoff starts over only after a link stayed up this long (a link
// cut right after each login must not reconnect at full speed).
const STABLE_LINK_MS = 10_000;

const PULL_LIMIT = 200;
const GROUP_EVENT = 10001;
const GAP_WAIT_MS = 300;

function sendReq(p: PendingSend): im.v1.ISendReq {
  return {
    clientMsgId: p.clientMsgId,
    convType: p.convType,
    to: p.to,
    contentType: p.contentType,
    body: p.body,
    searchText: p.searchText ?? '',
  };
}

export function newClientMsgId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

export class ImSession extends Emitter<ClientEvents> {
  private readonly opts: Required<Omit<ClientOptions, "WebSocket" | "deviceId" | "clientVersion">> &
    Pick<ClientOptions, "WebSocket" | "deviceId" | "clientVersion">;
  private readonly storageKey: string;
  private socket: SocketLike | undefined;
  private stateValue: ConnectionState = "idle";
  private saved: ClientState = emptyState();
  private loading: Promise<void> | undefined;
  private nextSeq = 1;
  private readonly pending = new Map<number, Pending>();
  // Per client_msg_id: every caller of send() with that id is answered.
  private readonly waiters = new Map<string, OutboxWaiter[]>();
  private token: string | undefined;
  // The provider call under way: every login waits on the same one.
  private tokenAsk: Promise<string> | undefined;
  private tokenRefusals = 0;
  private attempt = 0;
  private retryAfterMs = 0;
  private stableTimer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: PendingSend | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private heartbeatMs = 30_000;
  private lastHeardMs = 0;
  private lastBeatMs = 0;
  private closedByUs = false;
  private loginWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  // Inbox delivery: `held` is the highest seq given to the application;
  // rows above it wait in `early` until the gap below them fills.
  private held = 0;
  private readonly early = new Map<number, Message>();
  private gapTimer: ReturnType<typeof setTimeout> | undefined;
  private pulling = false;
  private pullAgain = false;
  private flushing = false;
  private saveChain: Promise<void> = Promise.resolve();
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private ackedSeq = 0;
  private large = new LargeGroups({});
  private readonly filling = new Set<string>();

  constructor(options: ClientOptions) {
    super();
    this.opts = {
      deviceType: v1.DeviceType.WEB,
      storage: new MemoryStorage(),
      backoff: DEFAULT_BACKOFF,
      requestTimeoutMs: 15_000,
      outboxMaxAgeMs: 23 * 3600_000,
      maxFrameBytes: 65_536,
      ...options,
    };
    this.storageKey = `${options.uid}|${this.opts.deviceType}|${options.deviceId ?? ""}`;
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  private isClosed(): boolean {
    return this.stateValue === "closed";
  }

  get uid(): string {
    return this.opts.uid;
  }

  /** The highest inbox seq the application has been given. */
  get inboxSeq(): number {
    return this.held;
  }

  /**
   * Connects and logs in; resolves at the first successful login. Later
   * cuts reconnect by themselves. Rejects when the first login is refused
   * for good (a token the provider cannot replace, a kickout).
   */
  async connect(): Promise<void> {
    if (this.stateValue === "closed") throw new ClientClosed();
    await this.load();
    if (this.isClosed()) throw new ClientClosed(); // closed while the storage was read
    const done = new Promise<void>((resolve, reject) => this.loginWaiters.push({ resolve, reject }));
    // Offline, a reconnect is already scheduled (backoff, kickout or
    // refusal delays hold): the caller waits for it.
    if (this.stateValue === "idle") void this.open();
    else if (this.stateValue === "online") this.settleLogin();
    return done;
  }

  /** Reads the saved state once (the first connect() or send()). */
  private load(): Promise<void> {
    this.loading ??= (async () => {
      try {
        this.saved = (await this.opts.storage.load(this.storageKey)) ?? emptyState();
      } catch (e) {
        // No saved state (the storage cannot be read): the session starts
        // from the server's beginning, and saves go on being tried.
        this.emit("error", e as Error);
        this.saved = emptyState();
      }
      this.held = this.saved.inboxSeq;
      for (const p of this.saved.outbox) p.createdMs ||= Date.now(); // saved by a version without it
      this.ackedSeq = 0;
      this.large = new LargeGroups(this.saved.groupCursors);
    })();
    return this.loading;
  }

  /** LOGOUT, then closes; pending sends stay in the storage for the next start. */
  async close(): Promise<void> {
    if (this.stateValue === "closed") return;
    this.closedByUs = true;
    const s = this.socket;
    if (s && s.readyState === OPEN && this.stateValue === "online") {
      try {
        await this.request(Cmd.LOGOUT, new Uint8Array(0), 2000);
      } catch {
        // closing anyway
      }
    }
    this.shutDown(new ClientClosed());
    await this.saveChain;
  }

  // ------------------------------------------------------------ requests

  /** One request; resolves with the answer frame, rejects with ImError or ConnectionLost. */
  request(cmd: number, body: Uint8Array, timeoutMs = this.opts.requestTimeoutMs): Promise<Frame> {
    const s = this.socket;
    if (!s || s.readyState !== OPEN) return Promise.reject(new ConnectionLost("not connected"));
    const seq = this.takeSeq();
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new ConnectionLost(`no answer within ${timeoutMs} ms`));
        // A link that stopped answering is dead: start over (this one only).
        if (this.socket === s) this.dropLink();
      }, timeoutMs);
      this.pending.set(seq, { resolve, reject, timer });
      s.send(encodeFrame({ flags: 0, cmd, status: 0, seq }, body));
    }).then((f) => {
      if (f.header.status !== Status.OK) {
        const err = f.body.length > 0 ? v1.Error.decode(f.body) : undefined;
        throw new ImError(f.header.status, err?.message ?? "", err?.retryAfterMs ?? 0);
      }
      return f;
    });
  }

  /**
   * A request the server answers only when it refuses it (TYPING): resolves
   * when no refusal came within `waitMs`.
   */
  notify(cmd: number, body: Uint8Array, waitMs = 1000): Promise<void> {
    const s = this.socket;
    if (!s || s.readyState !== OPEN || this.stateValue !== "online") return Promise.reject(new ConnectionLost("not connected"));
    const seq = this.takeSeq();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        resolve();
      }, waitMs);
      this.pending.set(seq, {
        resolve: (f) => {
          if (f.header.status === Status.OK) return resolve();
          const err = f.body.length > 0 ? v1.Error.decode(f.body) : undefined;
          reject(new ImError(f.header.status, err?.message ?? "", err?.retryAfterMs ?? 0));
        },
        reject,
        timer,
      });
      s.send(encodeFrame({ flags: 0, cmd, status: 0, seq }, body));
    });
  }

  private takeSeq(): number {
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq >= 0x7fffffff ? 1 : this.nextSeq + 1;
    return seq;
  }

  /**
   * A call's answer put a row at `inboxSeq` into this user's inbox that this
   * session gets no PUSH of (PROTOCOL 8: no echo): fetched now rather than
   * after the gap wait.
   */
  protected ownRow(inboxSeq: number): void {
    if (inboxSeq > this.held) void this.resync();
  }

  /**
   * CONV_LIST says a group's newest conv_seq: a large group whose cursor is
   * below it is caught up with HISTORY (PROTOCOL 9).
   */
  protected groupNewest(gid: string, lastConvSeq: number): void {
    if (this.large.behind(gid, lastConvSeq)) void this.fillLarge(gid);
  }

  /** Called after each login's resync (ImClient loads its list here). */
  protected afterResync(): void {
    // ImSession keeps no more than the inbox.
  }

  /** A request made once the client is online (waits for the login, never past a close). */
  async call(cmd: number, body: Uint8Array): Promise<Frame> {
    if (this.stateValue !== "online") await this.connect();
    return this.request(cmd, body);
  }

  // ------------------------------------------------------------ sending

  /**
   * Sends a message; resolves once it is stored (the SendResp). Kept in the
   * outbox until then, across reconnects and restarts (a retry of the same
   * client_msg_id is deduplicated by the server).
   */
  async send(to: string, body: Uint8Array | string, options: SendOptions = {}): Promise<SendResult> {
    if (this.stateValue === "closed") throw new ClientClosed();
    await this.load();
    if (this.isClosed()) throw new ClientClosed(); // closed while the storage was read
    const p: PendingSend = {
      clientMsgId: options.clientMsgId ?? newClientMsgId(),
      convType: options.convType ?? v1.ConvType.C2C,
      to,
      contentType: options.contentType ?? 0,
      body: typeof body === "string" ? new TextEncoder().encode(body) : body,
      createdMs: Date.now(),
    };
    if (options.searchText) p.searchText = options.searchText;
    const frameBytes = HEADER_BYTES + v1.SendReq.encode(sendReq(p)).finish().length;
    if (frameBytes > this.opts.maxFrameBytes)
      throw new ImError(Status.TOO_LARGE, `a ${frameBytes}-byte frame is over the server's ${this.opts.maxFrameBytes}`);
    const result = new Promise<SendResult>((resolve, reject) => {
      const list = this.waiters.get(p.clientMsgId) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(p.clientMsgId, list);
    });
    if (!this.saved.outbox.some((o) => o.clientMsgId === p.clientMsgId)) {
      this.saved.outbox.push(p);
      await this.persist();
    }
    // A send before connect() connects (it waits in the outbox meanwhile).
    if (this.stateValue === "idle") void this.open();
    void this.flushOutbox();
    return result;
  }

  /** The sends not yet answered (in the storage, sent again after a reconnect). */
  get outbox(): readonly PendingSend[] {
    return this.saved.outbox;
  }

  private async flushOutbox(): Promise<void> {
    if (this.flushing || this.stateValue !== "online") return;
    this.flushing = true;
    try {
      // In order: messages one session sends to one conversation keep it.
      let tries = 0;
      while (this.stateValue === "online" && this.saved.outbox.length > 0) {
        const p = this.saved.outbox[0];
        const age = Date.now() - p.createdMs;
        if (age > this.opts.outboxMaxAgeMs) {
          this.finishSend(p, undefined, new SendExpired(p.clientMsgId, age));
          continue;
        }
        const req = v1.SendReq.encode(sendReq(p)).finish();
        let frame: Frame;
        this.inFlight = p;
        try {
          frame = await this.request(Cmd.SEND, req);
        } catch (e) {
          if (!(e instanceof ImError)) return; // the link went: sent again after the next login
          const internal = e.status === Status.INTERNAL;
          if (!RETRY_SEND_STATUSES.has(e.status) || (internal && ++tries > MAX_INTERNAL_RETRIES)) {
            this.finishSend(p, undefined, e);
            tries = 0;
            continue;
          }
          const wait = Math.max(e.retryAfterMs, backoffDelay(Math.min(tries, 10), this.opts.backoff));
          await new Promise((r) => setTimeout(r, wait));
          continue;
        } finally {
          this.inFlight = undefined;
        }
        tries = 0;
        const resp = v1.SendResp.decode(frame.body);
        const result: SendResult = {
          msgId: resp.msgId.toString(),
          convSeq: Number(resp.convSeq),
          inboxSeq: Number(resp.inboxSeq),
          serverTimeMs: Number(resp.serverTimeMs),
          duplicate: resp.duplicate,
        };
        // The sending session gets no PUSH of its own message: the answer
        // gives its place in the inbox, or for a large group (inbox_seq 0,
        // PROTOCOL 9) in the group's history.
        const own: Message = {
          msgId: result.msgId,
          convType: p.convType,
          from: this.opts.uid,
          to: p.to,
          convSeq: result.convSeq,
          inboxSeq: result.inboxSeq,
          clientMsgId: p.clientMsgId,
          contentType: p.contentType,
          body: p.body,
          serverTimeMs: result.serverTimeMs,
          topic: "",
          editVersion: 0,
          editedMs: 0,
        };
        if (result.duplicate) {
          // The stored original may differ from this retry (an id reused
          // for other content): its row is fetched, never made up.
          if (result.inboxSeq > 0) this.ownRow(result.inboxSeq);
        } else if (result.inboxSeq === 0 && p.convType === v1.ConvType.GROUP) this.offerLarge(p.to, [own]);
        else this.offer([own]);
        this.finishSend(p, result);
      }
    } finally {
      this.flushing = false;
    }
  }

  private finishSend(p: PendingSend, result?: SendResult, error?: Error): void {
    this.saved.outbox = this.saved.outbox.filter((o) => o.clientMsgId !== p.clientMsgId);
    void this.persist();
    const list = this.waiters.get(p.clientMsgId) ?? [];
    this.waiters.delete(p.clientMsgId);
    // A send from an earlier run (the storage's outbox) has no caller to tell.
    if (error && list.length === 0) this.emit("error", error);
    for (const w of list) {
      if (result) w.resolve(result);
      else w.reject(error ?? new Error("send failed"));
    }
  }

  // ------------------------------------------------------------ connection

  private setState(s: ConnectionState): void {
    if (this.stateValue === s) return;
    this.stateValue = s;
    this.emit("state", s);
  }

  private async open(): Promise<void> {
    if (this.socket || this.stateValue === "closed") return; // one socket at a time
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.setState("connecting");
    let Ctor: SocketConstructor;
    try {
      Ctor = await socketConstructor(this.opts.WebSocket);
    } catch (e) {
      this.shutDown(e as Error);
      return;
    }
    if (this.stateValue !== "connecting") return;
    let s: SocketLike;
    try {
      s = new Ctor(this.opts.url);
    } catch (e) {
      this.emit("error", e as Error);
      this.scheduleReconnect();
      return;
    }
    s.binaryType = "arraybuffer";
    this.socket = s;
    // An admission refusal over WebSocket is an HTTP 503 with Retry-After
    // before the upgrade: browsers hide it (the backoff applies), Node's
    // `ws` shows it.
    const node = s as unknown as {
      on?: (ev: string, fn: (req: { destroy(): void }, res: { statusCode?: number; headers: Record<string, unknown> }) => void) => void;
    };
    node.on?.("unexpected-response", (req, res) => {
      const seconds = Number(res.headers["retry-after"]);
      const err = new ImError(Status.UNAVAILABLE, `HTTP ${res.statusCode ?? "?"} on the upgrade`, seconds > 0 ? seconds * 1000 : 0);
      if (res.statusCode === 503) this.retryAfterMs = Math.max(this.retryAfterMs, err.retryAfterMs);
      req.destroy();
      if (this.socket !== s) return;
      if (FINAL_UPGRADE_STATUSES.has(res.statusCode ?? 0)) {
        this.shutDown(err); // a wrong path or an Origin refused: no retry helps
        return;
      }
      this.emit("error", err);
      this.dropLink();
    });
    // A connection that does not open in time (a network that drops packets) is given up.
    const opening = setTimeout(() => {
      if (this.socket === s && this.stateValue === "connecting") this.dropLink();
    }, this.opts.requestTimeoutMs);
    s.onopen = () => {
      clearTimeout(opening);
      void this.login(s);
    };
    s.onmessage = (ev) => {
      if (this.socket !== s) return;
      const bytes = bytesOf(ev.data);
      if (!bytes) return;
      this.lastHeardMs = Date.now();
      let frame: Frame;
      try {
        frame = decodeFrame(bytes);
      } catch (e) {
        this.emit("error", e as Error);
        this.dropLink();
        return;
      }
      try {
        this.onFrame(frame);
      } catch (e) {
        // A body that does not decode (a buggy or hostile server): the link
        // is dropped and the resync after the next login fetches what it held.
        this.emit("error", new Error(`a ${frame.header.cmd} frame that does not decode: ${(e as Error).message}`));
        this.dropLink();
      }
    };
    s.onerror = () => {
      // onclose follows
    };
    s.onclose = () => {
      if (this.socket !== s) return;
      this.onLinkLost();
    };
  }

  private async login(s: SocketLike): Promise<void> {
    try {
      if (this.token === undefined) await this.askToken("login");
      const req = v1.LoginReq.encode({
        uid: this.opts.uid,
        token: this.token,
        deviceType: this.opts.deviceType,
        deviceId: this.opts.deviceId ?? "",
        clientVersion: this.opts.clientVersion ?? "imserver-js/0.1",
      }).finish();
      // What this client held before this login: the PUSHes of the new
      // session may be read with its LoginResp, in the same chunk, and be
      // given before the code below runs; they are no sign of an inbox
      // that went back.
      const heldBefore = this.held;
      const frame = await this.request(Cmd.LOGIN, req);
      const resp = v1.LoginResp.decode(frame.body);
      if (this.socket !== s) return;
      this.tokenRefusals = 0;
      this.retryAfterMs = 0;
      this.stableTimer = setTimeout(() => {
        this.stableTimer = undefined;
        this.attempt = 0;
      }, STABLE_LINK_MS);
      // The server's inbox ends below what this client holds (a restored
      // backup, a new data dir): what it numbers from there on is new.
      const serverMax = Number(resp.inboxMaxSeq);
      if (serverMax < heldBefore) {
        this.emit("error", new Error(`the server's inbox ends at ${serverMax}, below the ${heldBefore} held: resyncing from there`));
        this.held = serverMax;
        this.early.clear();
        this.saved.inboxSeq = serverMax;
        void this.persist();
      }
      this.heartbeatMs = Math.min(Math.max(1, resp.heartbeatIntervalS), 3600) * 1000;
      this.startHeartbeat();
      this.setState("online");
      this.settleLogin();
      await this.resync();
      for (const gid of this.large.groups()) void this.fillLarge(gid);
      this.afterResync();
      void this.flushOutbox();
    } catch (e) {
      if (this.socket !== s) return;
      if (e instanceof ImError && e.status === Status.UNAUTHENTICATED) {
        // The token is refused: a new one, once; refused again, the client closes.
        this.token = undefined;
        if (++this.tokenRefusals > 1) {
          this.shutDown(e);
          return;
        }
        try {
          await this.askToken("refused");
        } catch (te) {
          // The provider failed (its backend down?): asked again at the next attempt.
          this.emit("error", te as Error);
        }
        if (this.socket === s) this.dropLink();
        return;
      }
      if (e instanceof ImError && FINAL_LOGIN_STATUSES.has(e.status)) {
        this.shutDown(e); // a malformed uid, an old protocol: no retry helps
        return;
      }
      if (e instanceof ImError && e.retryAfterMs > 0) this.retryAfterMs = e.retryAfterMs;
      this.emit("error", e as Error);
      this.dropLink();
    }
  }

  /**
   * One call of the token provider at a time (it may wait on a person): a
   * login while one is under way waits for its token.
   */
  private askToken(reason: TokenReason): Promise<string> {
    this.tokenAsk ??= Promise.resolve()
      .then(() => this.opts.token(reason))
      .then((t) => {
        this.token = t;
        return t;
      })
      .finally(() => (this.tokenAsk = undefined));
    return this.tokenAsk;
  }

  private settleLogin(): void {
    const waiters = this.loginWaiters;
    this.loginWaiters = [];
    for (const w of waiters) w.resolve();
  }

  // A HEARTBEAT every interval; checked four times an interval, so a link
  // silent for two intervals is dropped within 2.25 of them.
  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.lastHeardMs = Date.now();
    this.lastBeatMs = Date.now();
    this.heartbeatTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastHeardMs > 2 * this.heartbeatMs) {
        this.dropLink(); // two silent intervals: the link is dead
        return;
      }
      if (now - this.lastBeatMs < this.heartbeatMs) return;
      this.lastBeatMs = now;
      // Its answer only refreshes lastHeardMs; a missing one is the check above.
      this.request(Cmd.HEARTBEAT, new Uint8Array(0), 2 * this.heartbeatMs).catch(() => undefined);
    }, Math.max(250, this.heartbeatMs / 4));
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  /** Closes the current socket; onLinkLost follows. */
  private dropLink(): void {
    const s = this.socket;
    if (!s) return;
    this.socket = undefined;
    try {
      s.close();
    } catch {
      // already closing
    }
    this.onLinkLost();
  }

  private onLinkLost(): void {
    this.socket = undefined;
    this.stopHeartbeat();
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ConnectionLost());
    }
    this.pending.clear();
    if (this.stateValue === "closed") return;
    if (this.closedByUs) {
      this.shutDown(new ClientClosed());
      return;
    }
    this.setState("offline");
    this.scheduleReconnect();
  }

  private scheduleReconnect(extraMs = 0): void {
    if (this.reconnectTimer || this.stateValue === "closed") return;
    const delay = Math.max(backoffDelay(this.attempt++, this.opts.backoff), this.retryAfterMs, extraMs);
    this.retryAfterMs = 0;
    this.reconnectAt(performance.now() + delay);
  }

  // Never before `due` (performance.now(), a monotonic clock): a server's
  // reconnect_after_ms is a floor, and timers count in whole milliseconds
  // of a cached clock, so they may fire up to one early.
  private reconnectAt(due: number): void {
    this.reconnectTimer = setTimeout(
        () => {
          this.reconnectTimer = undefined;
          if (performance.now() < due) return this.reconnectAt(due);
          if (this.stateValue === 'offline') void this.open();
        },
        Math.max(1, Math.ceil(due - performance.now())),
    );
  }

  private shutDown(reason: Error): void {
    if (this.stateValue === "closed") return;
    // Why the session ended, before the "closed" state (close() says nothing).
    if (!(reason instanceof ClientClosed)) this.emit("error", reason);
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
    this.setState("closed");
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.gapTimer) clearTimeout(this.gapTimer);
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.stopHeartbeat();
    const s = this.socket;
    this.socket = undefined;
    try {
      s?.close();
    } catch {
      // already closed
    }
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ConnectionLost());
    }
    this.pending.clear();
    const waiters = this.loginWaiters;
    this.loginWaiters = [];
    for (const w of waiters) w.reject(reason);
    for (const [, list] of this.waiters) for (const w of list) w.reject(reason);
    this.waiters.clear();
  }

  // ------------------------------------------------------------ frames

  private onFrame(f: Frame): void {
    const h = f.header;
    if (h.flags & FLAG_RESPONSE) {
      const p = this.pending.get(h.seq);
      if (!p) return;
      this.pending.delete(h.seq);
      clearTimeout(p.timer);
      p.resolve(f);
      return;
    }
    switch (h.cmd) {
      case Cmd.PUSH: {
        const messages = v1.MessagePush.decode(f.body).messages.map(toMessage);
        // A large group's messages have no inbox seq (PROTOCOL 9).
        const byGroup = new Map<string, Message[]>();
        for (const m of messages)
          if (m.inboxSeq === 0 && m.convType === v1.ConvType.GROUP) byGroup.set(m.to, [...(byGroup.get(m.to) ?? []), m]);
        this.offer(messages.filter((m) => m.inboxSeq !== 0));
        for (const [gid, ms] of byGroup) this.offerLarge(gid, ms);
        return;
      }
      case Cmd.KICKOUT:
        this.onKickout(v1.Kickout.decode(f.body));
        return;
      case Cmd.ERROR: {
        // Admission refused (UNAVAILABLE with retry_after_ms), or a framing
        // error: the server closes next.
        const err = f.body.length > 0 ? v1.Error.decode(f.body) : undefined;
        const e = new ImError(h.status, err?.message ?? "", err?.retryAfterMs ?? 0);
        if (e.retryAfterMs) this.retryAfterMs = e.retryAfterMs;
        // The frame of the send in flight broke the framing: sending it
        // again would break the next link too.
        if (this.inFlight && (h.status === Status.FRAME_TOO_LARGE || h.status === Status.BAD_FRAME))
          this.finishSend(this.inFlight, undefined, e);
        this.emit("error", e);
        return;
      }
      case Cmd.HEARTBEAT:
        // The server may ask too: answered.
        this.socket?.send(encodeFrame({ flags: FLAG_RESPONSE, cmd: Cmd.HEARTBEAT, status: 0, seq: h.seq }));
        return;
      case Cmd.TYPING_PUSH:
        this.emit("typing", v1.TypingPush.decode(f.body));
        return;
      case Cmd.PRESENCE_PUSH:
        this.emit("presence", v1.PresencePush.decode(f.body).presences);
        return;
      case Cmd.SERVER_PUSH:
        this.emit("serverPush", v1.ServerPush.decode(f.body));
        return;
      default:
        return;
    }
  }

  private onKickout(k: im.v1.Kickout): void {
    const reconnects = k.reason === v1.KickReason.SERVER_SHUTDOWN || k.reason === v1.KickReason.TOKEN_EXPIRED;
    this.emit("kicked", {
      reason: k.reason,
      byDeviceId: k.byDeviceId,
      message: k.message,
      reconnectAfterMs: k.reconnectAfterMs,
      reconnects,
    });
    if (!reconnects) {
      this.shutDown(new ImError(Status.UNAUTHENTICATED, `kicked out (${k.message || k.reason})`));
      return;
    }
    if (k.reason === v1.KickReason.TOKEN_EXPIRED) {
      this.token = undefined;
      // A provider that fails is asked again at the next login ("login").
      this.askToken("expired").catch((e) => this.emit("error", e as Error));
    }
    // reconnect_after_ms counts from the kickout's receipt.
    this.retryAfterMs = Math.max(this.retryAfterMs, serverDelay(k.reconnectAfterMs));
    this.dropLink();
  }

  // ------------------------------------------------------------ inbox

  /**
   * Messages from a PUSH, a PULL or a SendResp: each inbox seq is given to
   * the application once, in order; a gap is filled by a PULL.
   */
  private offer(messages: Message[]): void {
    for (const seq of this.early.keys()) if (seq <= this.held) this.early.delete(seq); // below a jump over expired rows
    for (const m of messages) if (m.inboxSeq > this.held && !this.early.has(m.inboxSeq)) this.early.set(m.inboxSeq, m);
    let delivered = false;
    for (;;) {
      const next = this.early.get(this.held + 1);
      if (!next) break;
      this.early.delete(this.held + 1);
      this.held += 1;
      delivered = true;
      // An event of a large group that names this user comes both ways: once to the app.
      const large = next.convType === v1.ConvType.GROUP ? this.large.noteInbox(next.to, next.convSeq) : undefined;
      if (!large?.dup) this.emit("message", next);
      this.noteGroupEvent(next);
      for (const m of large?.deliver ?? []) this.emit("message", m);
    }
    if (delivered) {
      this.saved.inboxSeq = this.held;
      void this.persist();
      this.scheduleAck();
    }
    if (this.early.size > 0 && !this.gapTimer) {
      // The row below may still be on its way (a SendResp and a PUSH cross).
      this.gapTimer = setTimeout(() => {
        this.gapTimer = undefined;
        if (this.early.size > 0) void this.resync();
      }, GAP_WAIT_MS);
    }
  }

  /** A group event that says its group is large starts that group's cursor. */
  private noteGroupEvent(m: Message): void {
    if (m.contentType !== GROUP_EVENT) return;
    let e: im.v1.GroupEvent;
    try {
      e = v1.GroupEvent.decode(m.body);
    } catch {
      return;
    }
    if (e.type === v1.GroupEventType.FANOUT_CHANGED) this.large.start(m.to, m.convSeq + 1);
    else if (e.group?.large) this.large.start(m.to, Math.max(m.convSeq + 1, Number(e.group.largeFromSeq ?? 0)));
  }

  private offerLarge(gid: string, messages: Message[], coveredTo = 0): void {
    const before = this.large.cursor(gid);
    const { deliver, gap } = this.large.offer(gid, messages, coveredTo);
    for (const m of deliver) this.emit("message", m);
    if (this.large.cursor(gid) !== before) void this.persist();
    if (gap) setTimeout(() => void this.fillLarge(gid), GAP_WAIT_MS);
  }

  /** HISTORY after the group's cursor until it is caught up. */
  private async fillLarge(gid: string): Promise<void> {
    if (this.filling.has(gid)) return;
    this.filling.add(gid);
    try {
      for (;;) {
        const from = this.large.cursor(gid);
        if (from === undefined || this.stateValue !== "online") return;
        const frame = await this.request(
          Cmd.HISTORY,
          v1.HistoryReq.encode({ convType: v1.ConvType.GROUP, peer: gid, afterSeq: from, limit: PULL_LIMIT }).finish(),
        );
        const page = v1.HistoryResp.decode(frame.body);
        const before = from;
        const messages = page.messages.map(toMessage);
        // The page is every conv_seq after `from` up to its newest that this user may see.
        this.offerLarge(gid, messages, messages.length > 0 ? messages[messages.length - 1].convSeq : 0);
        if (!page.hasMore || this.large.cursor(gid) === before) return;
      }
    } catch (e) {
      if (e instanceof ImError && (e.status === Status.FORBIDDEN || e.status === Status.NOT_FOUND)) {
        // No longer a member (or no such group): nothing more to follow.
        delete this.saved.groupCursors[gid];
        void this.persist();
      } else if (!(e instanceof ConnectionLost)) this.emit("error", e as Error);
    } finally {
      this.filling.delete(gid);
    }
  }

  private scheduleAck(): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      const s = this.socket;
      if (!s || s.readyState !== OPEN || this.stateValue !== "online" || this.held <= this.ackedSeq) return;
      const seq = this.takeSeq();
      s.send(encodeFrame({ flags: 0, cmd: Cmd.ACK, status: 0, seq }, v1.AckReq.encode({ inboxSeq: this.held }).finish()));
      this.ackedSeq = this.held;
    }, 100);
  }

  /** PULL from the highest seq held until nothing more remains. */
  private async resync(): Promise<void> {
    if (this.pulling) {
      this.pullAgain = true;
      return;
    }
    this.pulling = true;
    try {
      do {
        this.pullAgain = false;
        for (;;) {
          if (this.stateValue !== "online") return;
          const frame = await this.request(
            Cmd.PULL,
            v1.PullReq.encode({ afterSeq: this.held, limit: PULL_LIMIT }).finish(),
          );
          const resp = v1.PullResp.decode(frame.body);
          const before = this.held;
          // Rows below the oldest kept are gone for good: resume above them.
          const oldest = Number(resp.oldestSeq);
          if (oldest > this.held + 1) this.held = oldest - 1;
          this.offer(resp.messages.map(toMessage));
          if (!resp.hasMore || this.held === before) break;
        }
      } while (this.pullAgain);
    } catch (e) {
      if (!(e instanceof ConnectionLost)) {
        this.emit("error", e as Error);
        // RATE_LIMITED, UNAVAILABLE, INTERNAL: tried again.
        const wait = e instanceof ImError && e.retryAfterMs > 0 ? e.retryAfterMs : 1000;
        setTimeout(() => {
          if (this.stateValue === "online") void this.resync();
        }, wait);
      }
    } finally {
      this.pulling = false;
    }
  }

  private persist(): Promise<void> {
    const snapshot: ClientState = {
      inboxSeq: this.saved.inboxSeq,
      groupCursors: { ...this.saved.groupCursors },
      outbox: [...this.saved.outbox],
    };
    this.saveChain = this.saveChain
      .then(() => this.opts.storage.save(this.storageKey, snapshot))
      .catch((e) => this.emit("error", e as Error));
    return this.saveChain;
  }
}
