import { test } from "node:test";
import assert from "node:assert/strict";
import { text, im } from "../dist/index.js";
import { Server, token, until, client } from "./support/server.js";

const { ConvType, DeviceType } = im.v1;

function unread(c, convType, peer) {
  return c.conversation(convType, peer)?.unreadCount;
}

test("the conversation list and unread counts converge on two clients of one user", async () => {
  const server = new Server();
  await server.start();
  const web = client(server, "alice");
  const desk = client(server, "alice", { deviceType: DeviceType.DESKTOP });
  const bob = client(server, "bob");
  try {
    await Promise.all([web.connect(), desk.connect(), bob.connect()]);
    for (let i = 0; i < 3; ++i) await bob.send("alice", `b${i}`);
    for (const c of [web, desk]) await until(() => unread(c, ConvType.C2C, "bob") === 3, 10_000, "3 unread");
    assert.equal(web.totalUnread(), 3);
    assert.equal(text(web.conversation(ConvType.C2C, "bob").lastMessage), "b2");

    // Reading on one device: the other follows (the 10006 mark).
    const r = await web.markRead(ConvType.C2C, "bob");
    assert.equal(r.unreadCount, 0);
    for (const c of [web, desk]) await until(() => unread(c, ConvType.C2C, "bob") === 0, 10_000, "read everywhere");
    // bob sees the receipt.
    await until(() => bob.conversation(ConvType.C2C, "alice")?.peerReadSeq === 3, 10_000, "the receipt");

    // A group, a mute, a recall of an unread message.
    await bob.createGroup({ gid: "team", name: "team", members: ["alice"] });
    const m1 = await bob.send("team", "g1", { convType: ConvType.GROUP });
    await bob.send("team", "g2", { convType: ConvType.GROUP });
    for (const c of [web, desk]) await until(() => unread(c, ConvType.GROUP, "team") === 2, 10_000, "2 group unread");
    await desk.updateConversation(ConvType.GROUP, "team", { muted: true });
    for (const c of [web, desk])
      await until(() => c.conversation(ConvType.GROUP, "team")?.muted === true, 10_000, "muted everywhere");
    assert.equal(web.totalUnread(), 0);
    await bob.recall(ConvType.GROUP, "team", m1.convSeq);
    for (const c of [web, desk]) await until(() => unread(c, ConvType.GROUP, "team") === 1, 10_000, "the recall counted");
    // The order: the group (newer) first.
    assert.deepEqual(
      web.conversations().map((c) => c.peer),
      ["team", "bob"],
    );
    // History pages back.
    const h = await web.history(ConvType.GROUP, "team", { limit: 2 });
    assert.equal(h.messages.length, 2);
    assert.equal(h.hasMore, true);
  } finally {
    await Promise.all([web.close(), desk.close(), bob.close()]);
    await server.dispose();
  }
});

test("typing and presence watch arrive as events", async () => {
  const server = new Server();
  await server.start();
  const alice = client(server, "alice");
  const bob = client(server, "bob");
  try {
    await Promise.all([alice.connect(), bob.connect()]);
    const typing = [];
    alice.on("typing", (t) => typing.push(t));
    await bob.typing(ConvType.C2C, "alice", im.v1.TypingState.TYPING);
    await until(() => typing.length === 1, 10_000, "the typing push");
    assert.equal(typing[0].from, "bob");
    const pushes = [];
    alice.on("presence", (p) => pushes.push(...p));
    const now = await alice.watchPresence({ add: ["carol"] });
    assert.equal(now[0].online, false);
    const carol = client(server, "carol");
    await carol.connect();
    await until(() => pushes.some((p) => p.uid === "carol" && p.online), 10_000, "carol online");
    await carol.close();
  } finally {
    await Promise.all([alice.close(), bob.close()]);
    await server.dispose();
  }
});

test("a conversation hidden on one device: another device's list and totals agree with the server", async () => {
  const server = new Server();
  await server.start();
  const web = client(server, "alice");
  const bob = client(server, "bob");
  let desk;
  try {
    await Promise.all([web.connect(), bob.connect()]);
    for (let i = 0; i < 3; ++i) await bob.send("alice", `b${i}`);
    await until(() => unread(web, ConvType.C2C, "bob") === 3, 10_000, "3 unread");
    await web.updateConversation(ConvType.C2C, "bob", { hidden: true });
    desk = client(server, "alice", { deviceType: DeviceType.DESKTOP });
    await desk.connect();
    await desk.refreshConversations();
    assert.equal(desk.conversation(ConvType.C2C, "bob"), undefined); // hidden: not listed
    assert.equal(desk.totalUnread(), 3); // but counted, as the server's total_unread
    await bob.send("alice", "b3");
    for (const c of [web, desk]) await until(() => unread(c, ConvType.C2C, "bob") === 4, 10_000, "4 unread on each device");
    for (const c of [web, desk]) await until(() => c.totalUnread() === 4, 10_000, "totals");
  } finally {
    await Promise.all([web.close(), bob.close(), desk?.close()]);
    await server.dispose();
  }
});

// SEARCH (PROTOCOL 8.6): the index is written in the background, so each
// check asks again (at most 200 times, 50 ms apart) until it holds.
async function searchUntil(c, query, o, check, what) {
  for (let i = 0; i < 200; ++i) {
    const page = await c.search(query, o);
    if (check(page)) return page;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('search: search_text on send and edit, CJK runs, prefixes, a scope, paging', async () => {
  const server = new Server();
  await server.start();
  const alice = client(server, 'alice');
  const bob = client(server, 'bob');
  try {
    await Promise.all([alice.connect(), bob.connect()]);
    const plan = await alice.send('bob', '{"t":"card"}', {searchText: '明天下午开会讨论预算 Budget review'});
    for (let i = 0; i < 3; ++i) await alice.send('bob', `n${i}`, {searchText: `note ${i}`});
    await bob.createGroup({gid: 'team', name: 'team', members: ['alice']});
    const g = await bob.send('team', 'x', {convType: ConvType.GROUP, searchText: 'team budgeting'});

    let page = await searchUntil(bob, '讨论预算', {}, (p) => p.messages.length === 1, 'the CJK run');
    assert.equal(page.messages[0].msgId, plan.msgId);
    assert.equal(text(page.messages[0]), '{"t":"card"}');
    page = await searchUntil(alice, 'budg*', {}, (p) => p.messages.length === 2, 'the prefix');
    assert.deepEqual(page.messages.map((m) => m.msgId).sort(), [g.msgId, plan.msgId].sort());
    page = await alice.search('budg*', {convType: ConvType.GROUP, peer: 'team'});
    assert.deepEqual(page.messages.map((m) => m.msgId), [g.msgId]);
    assert.equal((await alice.search('算明')).messages.length, 0);

    // Paging: newest first, one at a time.
    await searchUntil(alice, 'note', {}, (p) => p.messages.length === 3, 'the notes');
    const seen = [];
    let cursor = '';
    for (let i = 0; i < 5; ++i) {
      page = await alice.search('note', {limit: 1, cursor});
      seen.push(...page.messages.map((m) => text(m)));
      if (!page.hasMore) break;
      cursor = page.nextCursor;
    }
    assert.deepEqual(seen, ['n2', 'n1', 'n0']);

    // An edit is found by its own search text only.
    await alice.edit(ConvType.C2C, 'bob', plan.convSeq, '{"t":"card2"}', {searchText: 'quarterly forecast'});
    page = await searchUntil(bob, 'forecast', {}, (p) => p.messages.length === 1, 'the edited text');
    assert.equal(text(page.messages[0]), '{"t":"card2"}');
    assert.equal((await bob.search('预算')).messages.length, 0);
  } finally {
    await Promise.all([alice.close(), bob.close()]);
    await server.dispose();
  }
});
