// The session against a scripted fake server (test/support/fake_server.js):
// what a real imserver does only by chance or never.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ImClient, Cmd, Status, text, im, encodeFrame } from "../dist/index.js";
import { FakeServer, row } from "./support/fake_server.js";
import { until } from "./support/server.js";

const v1 = im.v1;

function fakeClient(server, extra = {}) {
  return new ImClient({ url: server.url, uid: "alice", token: () => "t", backoff: { baseMs: 20, maxMs: 100 }, ...extra });
}

async function withFake(script, body) {
  const server = new FakeServer(script);
  await server.start();
  const c = fakeClient(server);
  const errors = [];
  c.on("error", (e) => errors.push(e));
  try {
    await body(server, c, errors);
  } finally {
    await c.close();
    await server.stop();
  }
}

test("a SendResp lost with its link: the retry is answered duplicate, the app gets the message once and one answer", async () => {
  let sends = 0;
  await withFake(
    {
      SEND: (l, f) => {
        const req = v1.SendReq.decode(f.body);
        if (++sends === 1) {
          // Stored, then the link goes before the answer.
          l.server.inbox.push(row(1, { from: "alice", to: "bob", clientMsgId: req.clientMsgId, body: req.body }));
          l.close();
          return;
        }
        l.answer({ msgId: 1001, convSeq: 1, inboxSeq: 1, duplicate: true, serverTimeMs: 1 }, v1.SendResp);
      },
    },
    async (server, c) => {
      const got = [];
      c.on("message", (m) => got.push(m));
      await c.connect();
      const r = await c.send("bob", "once");
      assert.equal(r.duplicate, true);
      assert.equal(r.inboxSeq, 1);
      await until(() => got.length === 1, 5000, "the message");
      await new Promise((r) => setTimeout(r, 400)); // any second copy would come within the gap wait
      assert.equal(got.length, 1);
      assert.equal(text(got[0]), "once");
      assert.equal(sends, 2);
      assert.ok(server.connections >= 2);
    },
  );
});

test("a PUSH above a gap waits for the row below, fetched by PULL; each row once, in order", async () => {
  await withFake(
    {
      LOGIN: (l) => {
        l.answer({ heartbeatIntervalS: 30, inboxMaxSeq: 0 }, v1.LoginResp);
        // Rows 1 and 2 are stored; only 2 is pushed (1's PUSH went missing).
        setTimeout(() => {
          l.server.inbox.push(row(1), row(2));
          l.push(Cmd.PUSH, v1.MessagePush.encode({ messages: [row(2)] }).finish());
        }, 100);
      },
    },
    async (server, c) => {
      const got = [];
      c.on("message", (m) => got.push(m.inboxSeq));
      await c.connect();
      await until(() => got.length === 2, 5000, "both rows");
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(got, [1, 2]);
      assert.ok(server.sent(Cmd.PULL).length >= 2, "a PULL filled the gap");
      // ACKed up to what it holds.
      await until(() => server.sent(Cmd.ACK).some((f) => Number(v1.AckReq.decode(f.body).inboxSeq) === 2), 5000, "the ACK");
    },
  );
});

test("a PUSH read in the same chunk as the LoginResp is given once, and is no sign of a server that went back", async () => {
  // Unmasked binary WebSocket frames, written in one piece: the client
  // reads the LoginResp and the PUSH together (the server flushes what a
  // loop turn queued in one write).
  const wsFrame = (bytes) => {
    const head = bytes.length < 126 ? Buffer.from([0x82, bytes.length]) : Buffer.from([0x82, 126, bytes.length >> 8, bytes.length & 0xff]);
    return Buffer.concat([head, Buffer.from(bytes)]);
  };
  let logins = 0;
  await withFake(
    {
      LOGIN: (l, f) => {
        logins += 1;
        if (logins === 1) {
          l.server.inbox.push(row(1));
          l.answer({ heartbeatIntervalS: 30, inboxMaxSeq: 1 }, v1.LoginResp);
          return;
        }
        // Row 2 is committed just after the second LOGIN was answered with 1.
        l.server.inbox.push(row(2));
        const resp = v1.LoginResp.encode({ heartbeatIntervalS: 30, inboxMaxSeq: 1 }).finish();
        const push = v1.MessagePush.encode({ messages: [row(2)] }).finish();
        const socket = [...l.server.sockets].at(-1)._socket;
        socket.write(
          Buffer.concat([
            wsFrame(encodeFrame({ flags: 1, cmd: Cmd.LOGIN, status: 0, seq: f.header.seq }, resp)),
            wsFrame(encodeFrame({ flags: 0, cmd: Cmd.PUSH, status: 0, seq: 0 }, push)),
          ]),
        );
      },
    },
    async (server, c, errors) => {
      const got = [];
      c.on("message", (m) => got.push(m.inboxSeq));
      await c.connect();
      await until(() => got.length === 1, 5000, "row 1");
      for (const ws of server.sockets) ws.terminate(); // the link drops: a second login
      await until(() => got.length >= 2, 5000, "row 2");
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(got, [1, 2]);
      assert.deepEqual(
        errors.map((e) => e.message),
        [],
      );
    },
  );
});

test("a PUSH whose body does not decode: an error event, the link replaced, the process alive", async () => {
  let logins = 0;
  await withFake(
    {
      LOGIN: (l) => {
        l.answer({ heartbeatIntervalS: 30, inboxMaxSeq: 0 }, v1.LoginResp);
        if (++logins === 1) setTimeout(() => l.push(Cmd.PUSH, new Uint8Array([0x0a, 0xff, 0xff])), 50);
      },
    },
    async (server, c, errors) => {
      await c.connect();
      await until(() => logins === 2 && c.state === "online", 5000, "the second login");
      assert.ok(errors.some((e) => /does not decode/.test(e.message)), errors.map((e) => e.message).join("; "));
    },
  );
});

test("a LOGIN refused for good (BAD_REQUEST): connect() rejects, no reconnect", async () => {
  await withFake({ LOGIN: (l) => l.error(Status.BAD_REQUEST, "bad uid") }, async (server, c) => {
    await assert.rejects(c.connect(), (e) => e.status === Status.BAD_REQUEST);
    assert.equal(c.state, "closed");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.connections, 1);
  });
});

test("a huge reconnect_after_ms is cut to an hour, never turned into an immediate reconnect", async () => {
  await withFake(
    {
      LOGIN: (l) => {
        l.answer({ heartbeatIntervalS: 30, inboxMaxSeq: 0 }, v1.LoginResp);
        setTimeout(
          () =>
            l.push(Cmd.KICKOUT, v1.Kickout.encode({ reason: v1.KickReason.SERVER_SHUTDOWN, reconnectAfterMs: 4_000_000_000 }).finish()),
          50,
        );
      },
    },
    async (server, c) => {
      const kicks = [];
      c.on("kicked", (k) => kicks.push(k));
      await c.connect();
      await until(() => kicks.length === 1 && c.state === "offline", 5000, "the kickout");
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(server.connections, 1);
      assert.equal(c.state, "offline");
    },
  );
});

test("a send answered INTERNAL again and again is given up after a few tries; the next one goes", async () => {
  let internal = 0;
  await withFake(
    {
      SEND: (l, f) => {
        const req = v1.SendReq.decode(f.body);
        if (req.clientMsgId === "broken") {
          internal += 1;
          return l.error(Status.INTERNAL, "boom");
        }
        l.answer({ msgId: 7, convSeq: 1, inboxSeq: 0, serverTimeMs: 1 }, v1.SendResp);
      },
    },
    async (server, c) => {
      await c.connect();
      const broken = c.send("bob", "x", { clientMsgId: "broken" });
      const next = c.send("bob", "y");
      await assert.rejects(broken, (e) => e.status === Status.INTERNAL);
      assert.equal(internal, 6); // the first and 5 retries
      assert.equal((await next).msgId, "7");
      assert.equal(c.outbox.length, 0);
    },
  );
});

test("a send answered with a status outside the retry list is final at once", async () => {
  await withFake({ SEND: (l) => l.error(Status.CONFLICT, "no") }, async (server, c) => {
    await c.connect();
    await assert.rejects(c.send("bob", "x"), (e) => e.status === Status.CONFLICT);
    assert.equal(server.sent(Cmd.SEND).length, 1);
  });
});
