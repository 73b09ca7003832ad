import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage, ImError, Status, text, im } from "../dist/index.js";
import { Server, token, until, client, freePort, withClient } from "./support/server.js";

const { KickReason, ConvType } = im.v1;

test("kill -9 and restart mid-conversation: every send answered once, the peer sees each message once, in order", async () => {
  const server = new Server();
  await server.start();
  const alice = client(server, "alice");
  const bob = client(server, "bob");
  try {
    await alice.connect();
    await bob.connect();
    const got = [];
    bob.on("message", (m) => got.push(m));
    const sends = [];
    for (let i = 0; i < 40; ++i) {
      sends.push(alice.send("bob", `m${i}`));
      if (i === 20) await server.kill9(); // some answered, some in flight, some not sent
    }
    await new Promise((r) => setTimeout(r, 200));
    await server.restart();
    const results = await Promise.all(sends);
    assert.equal(results.length, 40);
    await until(() => got.length >= 40, 20_000, "bob's 40 messages");
    await new Promise((r) => setTimeout(r, 300)); // a late duplicate would show here
    assert.equal(got.length, 40);
    const bodies = got.map(text);
    assert.deepEqual(bodies, Array.from({ length: 40 }, (_, i) => `m${i}`));
    for (let i = 1; i < got.length; ++i) assert.equal(got[i].inboxSeq, got[i - 1].inboxSeq + 1);
    assert.equal(new Set(results.map((r) => r.msgId)).size, 40);
    assert.equal(alice.outbox.length, 0);
  } finally {
    await alice.close();
    await bob.close();
    await server.dispose();
  }
});

test("a graceful shutdown's KICKOUT SERVER_SHUTDOWN: the client waits reconnect_after_ms, then comes back by itself", async () => {
  const server = new Server();
  await server.start();
  const alice = client(server, "alice");
  try {
    await alice.connect();
    const kicks = [];
    let kickedAt = 0;
    alice.on("kicked", (k) => {
      kicks.push(k);
      kickedAt = Date.now();
    });
    // The first attempt after the kickout: never before reconnect_after_ms.
    let firstAttemptAt = 0;
    alice.on("state", (s) => {
      if (s === "connecting" && kickedAt > 0 && firstAttemptAt === 0) firstAttemptAt = Date.now();
    });
    await server.stop("SIGTERM");
    assert.equal(kicks.length, 1);
    assert.equal(kicks[0].reason, KickReason.SERVER_SHUTDOWN);
    assert.equal(kicks[0].reconnects, true);
    assert.ok(kicks[0].reconnectAfterMs >= 1000, `reconnect_after_ms ${kicks[0].reconnectAfterMs}`);
    assert.notEqual(alice.state, "closed");
    await server.restart();
    await until(() => alice.state === "online", 30_000, "the reconnect");
    assert.ok(
      firstAttemptAt - kickedAt >= kicks[0].reconnectAfterMs,
      `tried ${firstAttemptAt - kickedAt} ms after the kickout, asked to wait ${kicks[0].reconnectAfterMs} ms`,
    );
    const r = await alice.send("bob", "after the restart");
    assert.equal(r.duplicate, false);
  } finally {
    await alice.close();
    await server.dispose();
  }
});

test("the token provider is asked again when the token expires, and the session goes on", async () => {
  const server = new Server();
  await server.start();
  const reasons = [];
  const alice = client(server, "alice", {
    token: (reason) => {
      reasons.push(reason);
      return token("alice", reasons.length === 1 ? 2 : 3600);
    },
  });
  try {
    await alice.connect();
    const kicks = [];
    alice.on("kicked", (k) => kicks.push(k));
    await until(() => kicks.length === 1, 15_000, "the TOKEN_EXPIRED kickout");
    assert.equal(kicks[0].reason, KickReason.TOKEN_EXPIRED);
    await until(() => alice.state === "online" && reasons.length === 2, 15_000, "the login with a new token");
    assert.deepEqual(reasons, ["login", "expired"]);
    await alice.send("bob", "still here");
  } finally {
    await alice.close();
    await server.dispose();
  }
});

test("LOGIN_ELSEWHERE closes the client for good, a refused token is asked for again", async () => {
  const server = new Server();
  await server.start();
  let calls = 0;
  const first = client(server, "alice", {
    token: () => (++calls === 1 ? "not-a-token" : token("alice")),
  });
  const second = client(server, "alice");
  try {
    await first.connect();
    assert.equal(calls, 2);
    const kicks = [];
    first.on("kicked", (k) => kicks.push(k));
    await second.connect();
    await until(() => first.state === "closed", 10_000, "the first client to close");
    assert.equal(kicks[0].reason, KickReason.LOGIN_ELSEWHERE);
    assert.equal(kicks[0].reconnects, false);
    await assert.rejects(first.send("bob", "x"), { name: "ClientClosed" });
  } finally {
    await first.close();
    await second.close();
    await server.dispose();
  }
});

test("the outbox outlives the client: sends made while the server is down go out from the next client's storage", async () => {
  const server = new Server();
  await server.start();
  const storage = new MemoryStorage();
  const first = client(server, "alice", { storage });
  const bob = client(server, "bob");
  try {
    await first.connect();
    await bob.connect();
    const got = [];
    bob.on("message", (m) => got.push(text(m)));
    await server.kill9();
    await until(() => first.state === "offline" || first.state === "connecting", 10_000, "the cut");
    const unanswered = [first.send("bob", "queued 1"), first.send("bob", "queued 2")];
    for (const p of unanswered) p.catch(() => undefined); // rejected by close()
    await until(() => first.outbox.length === 2, 10_000, "the outbox");
    await first.close();
    await server.restart();
    const second = client(server, "alice", { storage });
    await second.connect();
    await until(() => second.outbox.length === 0, 20_000, "the outbox sent");
    await until(() => got.length === 2, 20_000, "bob's messages");
    assert.deepEqual(got, ["queued 1", "queued 2"]);
    await second.close();
  } finally {
    await bob.close();
    await server.dispose();
  }
});

test("an admission refusal's retry_after_ms is honoured: the client comes in once there is room", async () => {
  const server = new Server({ "limits.connections_per_ip": "1" });
  await server.start();
  const first = client(server, "alice");
  const second = client(server, "bob");
  try {
    await first.connect();
    const errors = [];
    second.on("error", (e) => errors.push(e));
    const joined = second.connect();
    await until(() => errors.some((e) => e.statusName === "UNAVAILABLE"), 10_000, "the refusal");
    const refusal = errors.find((e) => e.statusName === "UNAVAILABLE");
    assert.ok(refusal.retryAfterMs > 0);
    assert.notEqual(second.state, "online");
    await first.close();
    await joined;
    assert.equal(second.state, "online");
  } finally {
    await first.close();
    await second.close();
    await server.dispose();
  }
});

test("after a reconnect the presence watch is sent again; a server whose inbox is behind the client's is followed", async () => {
  const server = new Server();
  await server.start();
  const storage = new MemoryStorage();
  const alice = client(server, "alice", { storage });
  const bob = client(server, "bob");
  try {
    await alice.connect();
    await bob.connect();
    await bob.send("alice", "one");
    await bob.send("alice", "two");
    await until(() => alice.inboxSeq === 2, 10_000, "alice's two messages");
    await alice.watchPresence({ add: ["carol"] });
    // The server restarts on an empty data dir: its inbox starts again at 1.
    await server.kill9();
    server.freshData();
    await server.restart();
    await until(() => alice.state === "online" && bob.state === "online", 30_000, "the reconnects");
    const got = [];
    alice.on("message", (m) => got.push(text(m)));
    await bob.send("alice", "after the reset");
    await until(() => got.includes("after the reset"), 10_000, "the new message");
    const pushes = [];
    alice.on("presence", (ps) => pushes.push(...ps));
    const carol = client(server, "carol");
    await carol.connect();
    await until(() => pushes.some((p) => p.uid === "carol" && p.online), 10_000, "carol's presence push");
    await carol.close();
  } finally {
    await alice.close();
    await bob.close();
    await server.dispose();
  }
});

test("a token provider that fails is asked again later; the client does not close for it", async () => {
  const server = new Server();
  await server.start();
  const reasons = [];
  const alice = client(server, "alice", {
    token: (reason) => {
      reasons.push(reason);
      if (reasons.length === 1) return "not-a-token";
      if (reasons.length === 2) throw new Error("the token service is down");
      return token("alice");
    },
  });
  try {
    const errors = [];
    alice.on("error", (e) => errors.push(e.message));
    await alice.connect();
    assert.deepEqual(reasons, ["login", "refused", "login"]);
    assert.ok(errors.includes("the token service is down"));
    assert.equal(alice.state, "online");
  } finally {
    await alice.close();
    await server.dispose();
  }
});

test("a server that stops answering (SIGSTOP) is taken for dead after two heartbeat intervals, and the client comes back", () =>
  withClient({ "heartbeat.interval_s": "1", "heartbeat.timeout_s": "60" }, "alice", async (server, alice) => {
    const states = [];
    alice.on("state", (s) => states.push(s));
    server.proc.kill("SIGSTOP");
    try {
      // The socket stays open: only the missing heartbeat answers tell.
      await until(() => alice.state !== "online", 15_000, "the dead link");
    } finally {
      server.proc.kill("SIGCONT");
    }
    assert.equal(states[0], "offline");
    await until(() => alice.state === "online", 20_000, "the reconnect");
    const r = await alice.send("bob", "after the stall");
    assert.equal(r.duplicate, false);
  }));

test("an ADMIN kick closes the client for good: no reconnect", async () => {
  const adminPort = await freePort();
  const key = "0123456789abcdef0123456789abcdef";
  const server = new Server({ "admin.listen": `"127.0.0.1:${adminPort}"`, "admin.api_key": `"${key}"` });
  await server.start();
  const alice = client(server, "alice");
  try {
    await alice.connect();
    const kicks = [];
    alice.on("kicked", (k) => kicks.push(k));
    const states = [];
    alice.on("state", (s) => states.push(s));
    const res = await fetch(`http://127.0.0.1:${adminPort}/v1/users/alice/kick`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ revoke: true }),
    });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).kicked_sessions, 1);
    await until(() => alice.state === "closed", 10_000, "the client to close");
    assert.equal(kicks[0].reason, KickReason.ADMIN);
    assert.equal(kicks[0].reconnects, false);
    assert.ok(!states.includes("connecting"), `states after the kick: ${states}`);
    await assert.rejects(alice.send("bob", "x"), { name: "ClientClosed" });
  } finally {
    await alice.close();
    await server.dispose();
  }
});

test("a send refused for good rejects with its status and does not hold up the ones after it; one client_msg_id sent twice answers both", () =>
  withClient({}, "alice", async (server, alice) => {
    const refused = alice.send("no-such-group", "x", { convType: ConvType.GROUP });
    const next = alice.send("bob", "after it");
    await assert.rejects(refused, (e) => e instanceof ImError && (e.status === Status.NOT_FOUND || e.status === Status.FORBIDDEN));
    const r = await next;
    assert.equal(r.duplicate, false);
    assert.equal(alice.outbox.length, 0);
    const [a, b] = await Promise.all([
      alice.send("bob", "once", { clientMsgId: "same-id" }),
      alice.send("bob", "once", { clientMsgId: "same-id" }),
    ]);
    assert.equal(a.msgId, b.msgId);
    const again = await alice.send("bob", "once", { clientMsgId: "same-id" });
    assert.equal(again.msgId, a.msgId);
    assert.equal(again.duplicate, true);
  }));

test("an outbox entry older than outboxMaxAgeMs is given up with SendExpired, never sent", async () => {
  const server = new Server();
  await server.start();
  const storage = new MemoryStorage();
  const old = Date.now() - 2 * 3600_000;
  await storage.save("alice|3|", {
    inboxSeq: 0,
    groupCursors: {},
    outbox: [
      { clientMsgId: "stale", convType: ConvType.C2C, to: "bob", contentType: 0, body: new TextEncoder().encode("stale"), createdMs: old },
      { clientMsgId: "fresh", convType: ConvType.C2C, to: "bob", contentType: 0, body: new TextEncoder().encode("fresh"), createdMs: Date.now() },
    ],
  });
  const alice = client(server, "alice", { storage, outboxMaxAgeMs: 3600_000 });
  const bob = client(server, "bob");
  try {
    const errors = [];
    alice.on("error", (e) => errors.push(e));
    await bob.connect();
    const got = [];
    bob.on("message", (m) => got.push(text(m)));
    await alice.connect();
    await until(() => alice.outbox.length === 0, 10_000, "the outbox");
    await until(() => got.length === 1, 10_000, "the fresh message");
    assert.deepEqual(got, ["fresh"]);
    const expired = errors.filter((e) => e.name === "SendExpired");
    assert.equal(expired.length, 1);
    assert.equal(expired[0].clientMsgId, "stale");
  } finally {
    await alice.close();
    await bob.close();
    await server.dispose();
  }
});

test("a send too large for a frame is refused at once with TOO_LARGE; the link stays, the next send goes", () =>
  withClient({}, "alice", async (server, alice) => {
    const states = [];
    alice.on("state", (s) => states.push(s));
    await assert.rejects(alice.send("bob", "x".repeat(70_000)), (e) => e instanceof ImError && e.status === Status.TOO_LARGE);
    assert.equal(alice.outbox.length, 0);
    const r = await alice.send("bob", "small");
    assert.equal(r.duplicate, false);
    assert.deepEqual(states, []); // never offline
  }));
