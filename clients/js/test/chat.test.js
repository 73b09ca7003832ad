import { test } from "node:test";
import assert from "node:assert/strict";
import { text, im } from "../dist/index.js";
import { Server, TcpClient, token, until, client } from "./support/server.js";

const { ConvType } = im.v1;

test("login, then one-to-one chat between two SDK clients and a TCP client", async () => {
  const server = new Server();
  await server.start();
  const alice = client(server, "alice");
  const bob = client(server, "bob");
  try {
    const states = [];
    alice.on("state", (s) => states.push(s));
    await alice.connect();
    await bob.connect();
    assert.equal(alice.state, "online");
    assert.deepEqual(states, ["connecting", "online"]);

    const got = [];
    bob.on("message", (m) => got.push(m));
    const sent = await alice.send("bob", "hello bob");
    assert.equal(sent.convSeq, 1);
    assert.equal(sent.duplicate, false);
    await until(() => got.length === 1, 10_000, "bob's message");
    assert.equal(text(got[0]), "hello bob");
    assert.equal(got[0].from, "alice");
    assert.equal(got[0].msgId, sent.msgId);

    const carol = await TcpClient.login(server.tcpPort, "carol");
    await carol.send("bob", "from tcp");
    await until(() => got.length === 2, 10_000, "the TCP client's message");
    assert.equal(text(got[1]), "from tcp");
    assert.equal(got[1].from, "carol");
    await bob.send("carol", "back to tcp", { convType: ConvType.C2C });
    const pushes = await carol.pushed(1);
    assert.equal(new TextDecoder().decode(pushes[0].body), "back to tcp");
    carol.close();

    // alice's own message is in her inbox too (from the SendResp, no echo).
    assert.equal(alice.inboxSeq, 1);
  } finally {
    await alice.close();
    await bob.close();
    await server.dispose();
  }
});
