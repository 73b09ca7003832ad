#!/usr/bin/env python3
"""A third-party WebSocket client against imserver: Debian's python3-websockets
logs in over ws:// and wss://, chats with a TCP client, sends a fragmented
message, pings, and closes; PULL over WebSocket sees the TCP client's inbox.

usage: ws_python_test.py --imserver BIN --pb-dir DIR
"""

import asyncio
import os
import tempfile

import websockets

import imtest
from imtest import expect, log

WEB, IOS = 3, 1


class WsClient:
    """The frame protocol over a websockets connection: one frame per binary message."""

    def __init__(self, ws):
        self.ws = ws
        self.seq = 0
        self.started = []

    async def call(self, cmd, body=b"", fragments=1, timeout=10):
        self.seq += 1
        seq = self.seq
        data = imtest.encode(cmd, seq, body)
        if fragments > 1:
            step = max(1, len(data) // fragments)
            # websockets sends the pieces of a list as the fragments of one message
            await self.ws.send([data[i : i + step] for i in range(0, len(data), step)])
        else:
            await self.ws.send(data)
        while True:
            message = await asyncio.wait_for(self.ws.recv(), timeout)
            expect(isinstance(message, bytes), f"a text message from the server: {message!r}")
            f = imtest.decode(message)
            if f.is_response and f.seq == seq:
                return f
            self.started.append(f)

    async def next_push(self, timeout=10):
        while True:
            if self.started:
                f = self.started.pop(0)
            else:
                message = await asyncio.wait_for(self.ws.recv(), timeout)
                expect(isinstance(message, bytes), "a binary message")
                f = imtest.decode(message)
            if f.cmd == imtest.PUSH:
                return list(f.parse(imtest.pb.MessagePush).messages)

    async def login(self, uid, device_type=WEB, device_id=""):
        f = await self.call(imtest.LOGIN, imtest.login_body(uid, device_type, device_id))
        expect(f.status == 0, f"LOGIN {uid} over WebSocket: status {f.status} {f.error_message()}")
        return f.parse(imtest.pb.LoginResp)

    async def send(self, to, cmid, text, fragments=1):
        f = await self.call(imtest.SEND, imtest.send_body(to, cmid, text), fragments=fragments)
        expect(f.status == 0, f"SEND over WebSocket: status {f.status} {f.error_message()}")
        return f.parse(imtest.pb.SendResp)

    async def pull(self, after=0):
        f = await self.call(imtest.PULL, imtest.pb.PullReq(after_seq=after, limit=1000).SerializeToString())
        expect(f.status == 0, f"PULL over WebSocket: status {f.status}")
        return f.parse(imtest.pb.PullResp)


def connect(url, ssl_context=None):
    # The default client offers permessage-deflate: the server must leave it
    # unanswered (no extension is spoken), which websockets accepts.
    return websockets.connect(url, ssl=ssl_context, max_size=1 << 20, ping_interval=None, open_timeout=10,
                              close_timeout=10)


async def chat(server, scheme, ssl_context=None, hostname=None):
    url = f"{scheme}://127.0.0.1:{server.ws_port}/ws"
    log(f"-- {url}")
    tcp = await imtest.TcpClient.connect(server.tcp_port, ssl_context, hostname)
    try:
        await tcp.login("bob", IOS)
        async with connect(url, ssl_context) as ws:
            expect(ws.extensions == [], f"no extension is negotiated, got {ws.extensions}")
            alice = WsClient(ws)
            resp = await alice.login("alice", WEB, "python-ws")
            expect(resp.heartbeat_interval_s > 0, "LoginResp has a heartbeat interval")

            # WebSocket -> TCP
            sent = await alice.send("bob", f"{scheme}-1", "hello bob, from python websockets")
            pushed = await tcp.next_push()
            expect(len(pushed) == 1 and pushed[0].body == b"hello bob, from python websockets",
                   f"bob got {pushed}")
            expect(pushed[0].msg_id == sent.msg_id and getattr(pushed[0], "from") == "alice", "the same message")

            # TCP -> WebSocket
            back = await tcp.send("alice", f"{scheme}-2", "hello alice, from TCP")
            pushed = await alice.next_push()
            expect(len(pushed) == 1 and pushed[0].body == b"hello alice, from TCP", f"alice got {pushed}")
            expect(pushed[0].msg_id == back.msg_id, "the same message")

            # a fragmented message: a SEND in five fragments
            text = "fragmented " * 300
            sent = await alice.send("bob", f"{scheme}-3", text, fragments=5)
            pushed = await tcp.next_push()
            expect(len(pushed) == 1 and pushed[0].body == text.encode(), "the fragmented SEND arrived whole")

            # ping: answered by a pong with the same payload (websockets checks it)
            pong = await ws.ping(b"are you there?")
            await asyncio.wait_for(pong, 10)
            pong = await ws.ping(b"")
            await asyncio.wait_for(pong, 10)

            # PULL over WebSocket sees what TCP sees
            over_ws = await alice.pull(0)
            alice_tcp = await imtest.TcpClient.connect(server.tcp_port, ssl_context, hostname)
            try:
                await alice_tcp.login("alice", IOS)  # another device type: both sessions stay
                over_tcp = await alice_tcp.pull(0)
            finally:
                alice_tcp.close()
            expect([m.msg_id for m in over_ws.messages] == [m.msg_id for m in over_tcp.messages],
                   "PULL over WebSocket and over TCP list the same messages")
            # alice's inbox: her two SENDs and bob's one
            expect(len(over_ws.messages) == 3, f"alice's inbox holds 3 messages, got {len(over_ws.messages)}")

            # close: answered with a close echoing the code
            await ws.close(code=1000, reason="done")
            expect(ws.close_code == 1000, f"the server's close code: {ws.close_code}")
        log(f"-- {scheme}: chat, fragments, ping, PULL and close passed")
    finally:
        tcp.close()


async def main():
    args = imtest.parse_args(__doc__)
    with tempfile.TemporaryDirectory(prefix="imws-") as tmp:
        with imtest.Server(args.imserver) as server:
            await chat(server, "ws")
            # a message that is not one frame: ERROR, then close 1002
            async with connect(f"ws://127.0.0.1:{server.ws_port}/ws") as ws:
                await ws.send(b"not a frame at all, but long enough")
                f = imtest.decode(await asyncio.wait_for(ws.recv(), 10))
                expect(f.cmd == imtest.ERROR and f.status == 10, f"an ERROR BAD_FRAME, got {f}")
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                    raise AssertionError("the connection stays open after a bad frame")
                except websockets.ConnectionClosed as closed:
                    expect(closed.rcvd is not None and closed.rcvd.code == 1002, f"close 1002, got {closed.rcvd}")
            # a text message: close 1003
            async with connect(f"ws://127.0.0.1:{server.ws_port}/ws") as ws:
                await ws.send("a text message")
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                    raise AssertionError("a text message was served")
                except websockets.ConnectionClosed as closed:
                    expect(closed.rcvd is not None and closed.rcvd.code == 1003, f"close 1003, got {closed.rcvd}")
            expect(server.running(), "the server runs")

        certs = imtest.Certs(os.path.join(tmp, "certs"))
        cert, key = certs.server_cert("server", 1001)
        with imtest.Server(args.imserver, imtest.tls_overrides(cert, key)) as server:
            ctx = certs.client_context()
            await chat(server, "wss", ctx, "localhost")
            # the same through the IP address in the certificate
            async with connect(f"wss://127.0.0.1:{server.ws_port}/ws", ctx) as ws:
                alice = WsClient(ws)
                await alice.login("carol")
            # a plain ws:// client on the wss:// port is not upgraded
            try:
                async with connect(f"ws://127.0.0.1:{server.ws_port}/ws") as ws:
                    raise AssertionError("a plain WebSocket was upgraded on the TLS port")
            except (websockets.WebSocketException, OSError, asyncio.TimeoutError, EOFError):
                pass
            expect(server.running(), "the TLS server runs")


if __name__ == "__main__":
    imtest.run(main)
