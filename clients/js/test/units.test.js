// Pure parts of the SDK, without a server: the frame header, backoff, the
// large groups' cursors (PROTOCOL 9; the server's read fan-out is not built
// yet, so this is their only test for now) and the conversation list.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeFrame, decodeFrame, backoffDelay, ConversationList, im } from "../dist/index.js";
import { LargeGroups } from "../dist/large_groups.js";

const msg = (convSeq, extra = {}) => ({
  msgId: String(convSeq), convType: 2, from: "bob", to: "big", convSeq, inboxSeq: 0, clientMsgId: "",
  contentType: 0, body: new Uint8Array(0), serverTimeMs: convSeq, topic: "", editVersion: 0, editedMs: 0, ...extra,
});

test("the header: 20 bytes big-endian, round trip, bad frames refused", () => {
  const f = encodeFrame({ flags: 1, cmd: 0x0013, status: 12, seq: 0xfffffffe }, new Uint8Array([7, 8]));
  assert.equal(f.length, 22);
  assert.deepEqual([...f.subarray(0, 4)], [0x49, 0x4d, 1, 1]);
  const d = decodeFrame(f);
  assert.deepEqual(d.header, { flags: 1, cmd: 0x13, status: 12, seq: 0xfffffffe, bodyLen: 2 });
  assert.deepEqual([...d.body], [7, 8]);
  assert.throws(() => decodeFrame(f.subarray(0, 19)));
  assert.throws(() => decodeFrame(f.subarray(0, 21)));
  const bad = new Uint8Array(f);
  bad[0] = 0;
  assert.throws(() => decodeFrame(bad));
});

test("backoff: full jitter below an exponential ceiling, capped", () => {
  const o = { baseMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(0, o, () => 0.999), 99);
  assert.equal(backoffDelay(3, o, () => 0.5), 400);
  assert.equal(backoffDelay(40, o, () => 0.999), 999);
  assert.equal(backoffDelay(5, o, () => 0), 0);
});

test("large groups: in order once, a gap held until filled, a start point from the event", () => {
  const cursors = {};
  const g = new LargeGroups(cursors);
  g.start("big", 11); // FANOUT_CHANGED at 10
  assert.equal(g.cursor("big"), 10);
  let r = g.offer("big", [msg(11), msg(12)]);
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [11, 12]);
  assert.equal(r.gap, false);
  r = g.offer("big", [msg(12), msg(14)]); // 12 again, 13 missing
  assert.deepEqual(r.deliver, []);
  assert.equal(r.gap, true);
  r = g.offer("big", [msg(13), msg(14), msg(15)]); // HISTORY after 12
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [13, 14, 15]);
  assert.equal(r.gap, false);
  assert.deepEqual(cursors, { big: 15 });
  g.start("big", 3); // never back
  assert.equal(g.cursor("big"), 15);
  r = g.offer("other", [msg(7, { to: "other" })]); // pushed before any event: from here
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [7]);
});

test("the conversation list: counts from messages, a read mark below the newest asks for a listing", () => {
  const list = new ConversationList();
  list.load([], 0);
  const c2c = (inboxSeq, convSeq, from) =>
    msg(convSeq, { convType: im.v1.ConvType.C2C, from, to: from === "me" ? "bob" : "me", inboxSeq });
  assert.ok(list.apply("me", c2c(1, 1, "bob")));
  assert.ok(list.apply("me", c2c(2, 2, "bob")));
  assert.equal(list.get(1, "bob").unreadCount, 2);
  assert.equal(list.get(1, "bob").peerReadSeq, 2);
  assert.equal(list.apply("me", c2c(2, 2, "bob")), false); // once
  assert.ok(list.apply("me", c2c(3, 3, "me")));
  assert.equal(list.get(1, "bob").unreadCount, 0); // sending counts as reading
  const mark = im.v1.ReadMark.encode({ convType: 1, peer: "bob", reader: "me", readSeq: 1 }).finish();
  list.apply("me", msg(0, { convType: 3, from: "", to: "me", inboxSeq: 4, contentType: 10006, body: mark }));
  assert.equal(list.needsReload, false); // 1 is below what sending already read
  assert.equal(list.totalUnread(), 0);
  // A large group's message (no inbox seq) counts once.
  assert.ok(list.apply("me", msg(5)));
  assert.equal(list.apply("me", msg(5)), false);
  assert.equal(list.get(2, "big").unreadCount, 1);
  assert.deepEqual(list.list().map((c) => c.peer), ["big", "bob"]);
});

test("large groups: a HISTORY page steps over conv_seqs it leaves out, CONV_LIST says when a group is behind", () => {
  const cursors = { big: 4 };
  const g = new LargeGroups(cursors);
  assert.equal(g.behind("big", 9), true);
  assert.equal(g.behind("big", 4), false);
  assert.equal(g.behind("unknown", 9), false); // not followed: nothing to catch up
  // A push above a gap waits...
  let r = g.offer("big", [msg(8)]);
  assert.deepEqual(r.deliver, []);
  assert.equal(r.gap, true);
  // ...HISTORY after 4 answers 5 and 7 (6 deleted for this user): up to 7 is covered.
  r = g.offer("big", [msg(5), msg(7)], 7);
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [5, 7, 8]);
  assert.equal(r.gap, false);
  assert.equal(cursors.big, 8);
  // An empty page moves nothing.
  r = g.offer("big", [], 0);
  assert.deepEqual(r.deliver, []);
  assert.equal(cursors.big, 8);
});

test("large groups: an event that comes by the inbox and by the group's path is given once, either order first", () => {
  // Inbox first: the large path's copy is dropped.
  let g = new LargeGroups({ big: 4 });
  let n = g.noteInbox("big", 5);
  assert.deepEqual(n, { dup: false, deliver: [] });
  let r = g.offer("big", [msg(5), msg(6)]);
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [6]);
  // The large path first: the inbox copy is a duplicate.
  g = new LargeGroups({ big: 4 });
  r = g.offer("big", [msg(5)]);
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [5]);
  assert.equal(g.noteInbox("big", 5).dup, true);
  // Above a gap by the inbox: held as given; the gap filling delivers the rest once.
  g = new LargeGroups({ big: 4 });
  assert.equal(g.noteInbox("big", 6).dup, false);
  r = g.offer("big", [msg(6), msg(7)]);
  assert.deepEqual(r.deliver, []);
  assert.equal(r.gap, true);
  r = g.offer("big", [msg(5)]);
  assert.deepEqual(r.deliver.map((m) => m.convSeq), [5, 7]);
  // A group without a cursor: the inbox is the only path.
  assert.deepEqual(g.noteInbox("small", 3), { dup: false, deliver: [] });
});
