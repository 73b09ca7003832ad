import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage, text, im } from "../dist/index.js";
import { Server, until, client } from "./support/server.js";

const { ConvType } = im.v1;

// PROTOCOL 9 against the real server, with a switch threshold of 3: the
// group's messages have no inbox rows; the SDK takes them from PUSH
// (inbox_seq 0), and from HISTORY after_seq when it comes back.
test("a large group: pushed messages, then a catch-up after being offline, each once and in order", async () => {
  const server = new Server({ "limits.write_fanout_max_members": "3" });
  await server.start();
  const storage = new MemoryStorage();
  const alice = client(server, "alice");
  let bob = client(server, "bob", { storage });
  try {
    await alice.connect();
    await bob.connect();
    const got = [];
    const collect = (m) => {
      if (m.convType === ConvType.GROUP && m.contentType < 10000) got.push(text(m));
    };
    bob.on("message", collect);
    const g = await alice.createGroup({ gid: "big", name: "big", members: ["bob", "carol", "dave"] });
    assert.equal(g.group.large, true);
    for (let i = 0; i < 5; ++i) {
      const r = await alice.send("big", `m${i}`, { convType: ConvType.GROUP });
      assert.equal(r.inboxSeq, 0);
    }
    await until(() => got.length === 5, 10_000, "five pushed");

    // bob goes away; five more are sent; bob comes back with its storage.
    await bob.close();
    for (let i = 5; i < 10; ++i) await alice.send("big", `m${i}`, { convType: ConvType.GROUP });
    bob = client(server, "bob", { storage });
    bob.on("message", collect);
    await bob.connect();
    await until(() => got.length === 10, 10_000, "the five missed, by HISTORY");
    assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `m${i}`));
    await until(() => bob.conversation(ConvType.GROUP, "big")?.lastConvSeq >= 12, 10_000, "the list");
  } finally {
    await Promise.all([alice.close(), bob.close()]);
    await server.dispose();
  }
});
