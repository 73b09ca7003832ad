#!/usr/bin/env python3
"""TLS on both listeners (tls.cert_file and tls.key_file set), checked with
Python's ssl module and the openssl CLI: login and C2C verified against a test
CA, TLS 1.1 refused while 1.2 and 1.3 are spoken, a plaintext client gets no
service, SIGHUP loads replaced certificate files (a bad one keeps the old and
says so), the TLS handshake counts against server.auth_timeout_ms, large
pushes to a slow reader arrive whole and in order through partial TLS writes,
malformed WebSocket frames over wss:// close with their codes, and a session
that asks for zstd gets its long pushes compressed inside TLS.

usage: tls_test.py --imserver BIN --pb-dir DIR
"""

import asyncio
import base64
import ctypes
import itertools
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import imtest
from imtest import expect, log

IOS, WEB = 1, 3


def served_cert(port, hostname="localhost"):
    """The DER certificate a new TLS connection to `port` is shown (not verified)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as tls:
            return tls.getpeercert(binary_form=True)


def s_client(port, *options):
    """Runs openssl s_client; (handshake done, negotiated protocol, output)."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *options],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30, text=True, errors="replace",
    ).stdout
    cipher = ""
    protocol = ""  # the session's "Protocol  :" line; without one (TLS 1.3), the "New, ..." line's
    fallback = ""
    for line in out.splitlines():
        if line.startswith("New, ") and "Cipher is" in line:
            cipher = line.rsplit("Cipher is", 1)[1].strip()
            fallback = line[len("New, "):].split(",", 1)[0].strip()
        if line.strip().startswith("Protocol") and ":" in line:
            protocol = line.split(":", 1)[1].strip()
    return cipher not in ("", "(NONE)"), protocol or fallback, out


def tls11_server(cert, key):
    """A Python TLS 1.1-only server on 127.0.0.1: the control that shows our
    s_client command can speak TLS 1.1, so that its failure against imserver
    is the server's refusal. Returns (port, thread, listening socket)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with ctx.wrap_socket(conn, server_side=True):
                pass
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return listener.getsockname()[1], t, listener


CHATS = itertools.count(1)


async def login_and_chat(server, ctx, hostname):
    n = next(CHATS)  # client_msg_ids unique per chat: a repeated one is a duplicate SEND
    alice = await imtest.TcpClient.connect(server.tcp_port, ctx, hostname)
    bob = await imtest.TcpClient.connect(server.tcp_port, ctx, hostname)
    try:
        await alice.login("alice", IOS)
        await bob.login("bob", IOS)
        version = alice.writer.get_extra_info("ssl_object").version()
        expect(version in ("TLSv1.2", "TLSv1.3"), f"negotiated {version}")
        sent = await alice.send("bob", f"tls-{n}-1", "over TLS")
        pushed = await bob.next_push()
        expect(len(pushed) == 1 and pushed[0].body == b"over TLS" and pushed[0].msg_id == sent.msg_id,
               f"bob got {pushed}")
        back = await bob.send("alice", f"tls-{n}-2", "and back")
        pushed = await alice.next_push()
        expect(len(pushed) == 1 and pushed[0].msg_id == back.msg_id, f"alice got {pushed}")
        hb = await alice.call(imtest.HEARTBEAT)
        expect(hb.status == 0, "HEARTBEAT over TLS")
    finally:
        alice.close()
        bob.close()


FLAG_COMPRESSED = 0x02


def zstd_decompress(data, limit=65536):
    """A whole zstd frame through the system's libzstd (no Python module needed)."""
    lib = ctypes.CDLL("libzstd.so.1")
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    out = ctypes.create_string_buffer(limit)
    n = lib.ZSTD_decompress(out, limit, data, len(data))
    expect(not lib.ZSTD_isError(n), f"a body flagged compressed is not one zstd frame ({len(data)} bytes)")
    return out.raw[:n]


async def next_push_frame(client):
    """The next PUSH frame, other frames skipped (at most 10)."""
    for _ in range(10):
        f = await client.next_frame()
        if f.cmd == imtest.PUSH:
            return f
    raise AssertionError("no PUSH among 10 frames")


async def compressed_over_tls(server, ctx):
    """PROTOCOL 1 inside TLS: a session asking for zstd gets a long PUSH
    compressed (bit 1, fewer bytes), the same message once decompressed; a
    short one plain."""
    alice = await imtest.TcpClient.connect(server.tcp_port, ctx, "localhost")
    bob = await imtest.TcpClient.connect(server.tcp_port, ctx, "localhost")
    try:
        await alice.login("alice", IOS)
        req = imtest.pb.LoginReq(uid="bob", token=imtest.token_for("bob"), device_type=IOS, compression="zstd")
        f = await bob.call(imtest.LOGIN, req.SerializeToString())
        expect(f.status == 0 and f.parse(imtest.pb.LoginResp).compression == "zstd", f"zstd LOGIN over TLS: {f}")
        text = ("are we still on for the budget review on friday? " * 60)[:3000]
        sent = await alice.send("bob", "tls-zstd-1", text)
        push = await next_push_frame(bob)
        expect(push.cmd == imtest.PUSH and push.flags & FLAG_COMPRESSED, f"a long PUSH, compressed: {push}")
        expect(len(push.body) < len(text) // 3, f"compressed to {len(push.body)} bytes")
        messages = imtest.pb.MessagePush.FromString(zstd_decompress(push.body)).messages
        expect(len(messages) == 1 and messages[0].body == text.encode() and messages[0].msg_id == sent.msg_id,
               "the decompressed PUSH is the message sent")
        await alice.send("bob", "tls-zstd-2", "short")
        push = await next_push_frame(bob)
        expect(push.cmd == imtest.PUSH and not push.flags & FLAG_COMPRESSED, f"a short PUSH, plain: {push}")
        expect(push.parse(imtest.pb.MessagePush).messages[0].body == b"short", "the short PUSH")
    finally:
        alice.close()
        bob.close()


def plaintext_gets_nothing(port, request):
    """Sends `request` in the clear to a TLS port; what came back before the
    server closed (or 5 s passed)."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.settimeout(5)
        try:
            for _ in range(100):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return got


def client_hello():
    """The bytes of a real TLS ClientHello, as Python's ssl module writes it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    expect(len(hello) > 100 and hello[0] == 0x16, f"a ClientHello record: {hello[:8]!r}")
    return hello


def closed_by_server(sock, timeout):
    """Reads and drops whatever comes until the server ends the connection
    (EOF or reset): True, or False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return True


class FrameReader:
    """IM frames off a blocking socket (plain or TLS), read `chunk` bytes at a
    time with a pause of `pause` seconds before each read: a slow reader."""

    def __init__(self, sock, chunk=65536, pause=0.0):
        self.sock, self.chunk, self.pause = sock, chunk, pause
        self.buf = b""

    def next(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= imtest.HEADER.size:
                fields = imtest.HEADER.unpack(self.buf[: imtest.HEADER.size])
                end = imtest.HEADER.size + fields[6]
                if len(self.buf) >= end:
                    frame = imtest.Frame(fields, self.buf[imtest.HEADER.size:end])
                    self.buf = self.buf[end:]
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole frame in time")
            if self.pause:
                time.sleep(self.pause)
            self.sock.settimeout(max(0.1, left))
            data = self.sock.recv(self.chunk)
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data


def max_send_buffer():
    """The most a TCP socket's send buffer grows to (tcp_wmem's maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


# partial_writes sends this many bytes before its receiver reads: more than
# the kernel can hold for it (the server's send buffer at its largest, the
# receiver's 4 KiB buffer), so the server's queue must wait on a full socket.
# (Capped, for a host whose buffers may grow huge: the test stays short.)
PARTIAL_WRITES_BACKLOG = min(max_send_buffer(), 16 << 20) + (1 << 20)


async def partial_writes(server, ctx):
    """SENDs of 30,000 bytes each to a TLS receiver with a 4 KiB receive
    buffer that starts reading only once PARTIAL_WRITES_BACKLOG bytes were
    sent to it, then reads 4 KiB at a time with a pause before each read
    while 40 more come: the server's SSL_write meets a full socket again and
    again (and frames join its queue meanwhile), and every push must still
    arrive whole and in order. (The server needs limits.burst and
    server.max_pending_bytes above what this sends.)"""
    size = 30000
    read_after = PARTIAL_WRITES_BACKLOG // size + 1
    count = read_after + 40
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", server.tcp_port))
    receiver = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        receiver.sendall(imtest.encode(imtest.LOGIN, 1, imtest.login_body("erin", IOS)))
        reader = FrameReader(receiver, chunk=4096, pause=0.002)
        f = reader.next()
        expect(f.cmd == imtest.LOGIN and f.status == 0, f"the slow reader's LOGIN: {f}")
        bodies = [base64.b64encode(os.urandom(size * 3 // 4)) for _ in range(count)]
        got = []
        failure = []
        start_reading = threading.Event()

        def read_slowly():
            try:
                start_reading.wait(60)
                deadline = time.monotonic() + 120
                while len(got) < count and time.monotonic() < deadline:
                    f = reader.next(timeout=max(1, deadline - time.monotonic()))
                    if f.cmd == imtest.PUSH:
                        got.extend(f.parse(imtest.pb.MessagePush).messages)
            except Exception as e:  # noqa: BLE001 (reported by the main thread)
                failure.append(repr(e))

        thread = threading.Thread(target=read_slowly, daemon=True)
        thread.start()
        sender = await imtest.TcpClient.connect(server.tcp_port, ctx, "localhost")
        try:
            await sender.login("frank", IOS)
            for i, body in enumerate(bodies):
                req = imtest.pb.SendReq(client_msg_id=f"big-{i}", conv_type=imtest.pb.C2C, to="erin",
                                        content_type=1, body=body)
                f = await sender.call(imtest.SEND, req.SerializeToString(), timeout=30)
                expect(f.status == 0, f"SEND {i}: status {f.status} {f.error_message()}")
                if i + 1 == read_after:
                    start_reading.set()
        finally:
            start_reading.set()
            sender.close()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 130)
        expect(not thread.is_alive(), "the slow reader finished")
        expect(not failure, f"the slow reader failed: {failure}")
        expect(len(got) == count, f"{len(got)} of {count} pushes arrived")
        for i, m in enumerate(got):
            expect(m.body == bodies[i],
                   f"push {i}: {len(m.body)} bytes, not SEND {i}'s {len(bodies[i])} (or not in order)")
        expect([m.conv_seq for m in got] == sorted(m.conv_seq for m in got), "in conversation order")
    finally:
        receiver.close()


# ------------------------------------------------ WebSocket frames over wss://

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def ws_frame(opcode, payload, fin=True, masked=True, rsv=0, claim=None):
    """A client frame written by hand (RFC 6455, 5.2); `claim`: only a header
    claiming that many bytes."""
    n = len(payload) if claim is None else claim
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + (payload if claim is None else b"")
    mask = os.urandom(4)
    if claim is not None:
        return head + mask
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def wss_upgraded(port, ctx):
    """A raw wss:// connection after a 101; (socket, bytes already read)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(4096)
        expect(chunk, f"the upgrade was not answered: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    expect(head.startswith(b"HTTP/1.1 101"), f"the upgrade over wss: {head[:60]!r}")
    return tls, rest


def server_close_code(tls, buf, timeout=10):
    """Reads server frames until a close; its code (None when none came)."""
    deadline = time.monotonic() + timeout
    while True:
        while len(buf) >= 2:
            n, pos = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, pos = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, pos = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < pos + n:
                break
            opcode, payload, buf = buf[0] & 0x0F, buf[pos:pos + n], buf[pos + n:]
            if opcode == 0x8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        tls.settimeout(left)
        try:
            chunk = tls.recv(4096)
        except (socket.timeout, ConnectionResetError, ssl.SSLError):
            return None
        if not chunk:
            return None
        buf += chunk


def malformed_over_wss(server, ctx):
    hb = imtest.encode(imtest.HEARTBEAT, 1)
    cases = [
        ("an unmasked binary frame", ws_frame(0x2, hb, masked=False), 1002),
        ("a text message", ws_frame(0x1, b'{"cmd": "login"}'), 1003),
        ("RSV1 set", ws_frame(0x2, hb, rsv=0x40), 1002),
        ("a continuation without a message", ws_frame(0x0, hb), 1002),
        ("a 1 TiB length claim", ws_frame(0x2, b"", claim=1 << 40), 1009),
    ]
    for what, data, code in cases:
        tls, buf = wss_upgraded(server.ws_port, ctx)
        try:
            tls.sendall(data)
            got = server_close_code(tls, buf)
            expect(got == code, f"{what} over wss: close {got}, expected {code}")
            expect(closed_by_server(tls, 10), f"{what} over wss: the connection ends after the close")
        finally:
            tls.close()
    expect(server.running(), "the server runs after malformed wss frames")


async def main():
    args = imtest.parse_args(__doc__)
    with tempfile.TemporaryDirectory(prefix="imtls-") as tmp:
        certs = imtest.Certs(os.path.join(tmp, "certs"))
        cert1, key1 = certs.server_cert("first", 4001)
        cert2, key2 = certs.server_cert("second", 4002)
        # the server reads its certificate from these paths; the test replaces them
        live_cert = os.path.join(tmp, "live.pem")
        live_key = os.path.join(tmp, "live.key")
        shutil.copy(cert1, live_cert)
        shutil.copy(key1, live_key)

        with imtest.Server(args.imserver, imtest.tls_overrides(live_cert, live_key)) as server:
            ctx = certs.client_context()

            log("-- login and C2C over TLS, verified against the test CA (by name and by IP)")
            await login_and_chat(server, ctx, "localhost")
            await login_and_chat(server, ctx, "127.0.0.1")

            log("-- a session asking for zstd gets long pushes compressed inside TLS")
            await compressed_over_tls(server, ctx)

            log("-- a client that trusts another CA refuses the server")
            other = imtest.Certs(os.path.join(tmp, "other-ca"))
            try:
                await imtest.TcpClient.connect(server.tcp_port, other.client_context(), "localhost")
                raise AssertionError("verification against a foreign CA passed")
            except ssl.SSLCertVerificationError:
                pass

            log("-- TLS 1.2 and 1.3 are spoken, TLS 1.1 is refused, on both ports")
            for port in (server.tcp_port, server.ws_port):
                for option, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
                    ok, protocol, out = s_client(port, option, "-CAfile", certs.ca_cert)
                    expect(ok and protocol == name, f"{option} on port {port}: {protocol}\n{out}")
                    expect("Verify return code: 0 (ok)" in out, f"{option}: verified against the CA\n{out}")
            control_port, control, listener = tls11_server(cert1, key1)
            ok, protocol, out = s_client(control_port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
            control.join(10)
            listener.close()
            expect(ok and protocol == "TLSv1.1", f"the control: s_client speaks TLS 1.1 to a server that does\n{out}")
            for port in (server.tcp_port, server.ws_port):
                ok, protocol, out = s_client(port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
                expect(not ok, f"TLS 1.1 was accepted on port {port}: {protocol}\n{out}")
            expect(server.running(), "the server runs")

            log("-- a plaintext client on a TLS port gets no service")
            login = imtest.encode(imtest.LOGIN, 1, imtest.login_body("mallory", IOS))
            got = plaintext_gets_nothing(server.tcp_port, login)
            expect(not got.startswith(b"IM"), f"an IM answer in the clear: {got[:40]!r}")
            upgrade = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            got = plaintext_gets_nothing(server.ws_port, upgrade)
            expect(b"HTTP/1.1 101" not in got, f"a plaintext upgrade was answered: {got[:80]!r}")
            got = plaintext_gets_nothing(server.ws_port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            expect(b"HTTP/1.1 200" not in got, f"a plaintext GET / was answered: {got[:80]!r}")
            expect(server.running(), "the server runs after plaintext clients")
            await login_and_chat(server, ctx, "localhost")

            log("-- SIGHUP after the files are replaced: new connections see the new certificate")
            first, second = imtest.fingerprint(imtest.der_of(cert1)), imtest.fingerprint(imtest.der_of(cert2))
            for port in (server.tcp_port, server.ws_port):
                expect(imtest.fingerprint(served_cert(port)) == first, f"port {port} serves the first certificate")
            kept = await imtest.TcpClient.connect(server.tcp_port, ctx, "localhost")
            await kept.login("dave", IOS)
            for src, dst in ((cert2, live_cert), (key2, live_key)):
                shutil.copy(src, dst + ".new")
                os.replace(dst + ".new", dst)
            server.reload()
            for port in (server.tcp_port, server.ws_port):
                expect(imtest.wait_until(lambda: imtest.fingerprint(served_cert(port)) == second, 10, 0.1),
                       f"port {port} serves the second certificate after SIGHUP")
            await login_and_chat(server, ctx, "localhost")
            hb = await kept.call(imtest.HEARTBEAT)
            expect(hb.status == 0, "a connection made before the reload still works")
            kept.close()

            log("-- SIGHUP with a bad certificate file keeps the old certificate, and the log says so")
            refusal = "SIGHUP: the TLS certificate is not replaced"
            refusals_before = server.log_text().count(refusal)
            with open(live_cert + ".new", "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
            os.replace(live_cert + ".new", live_cert)
            server.reload()
            # the server has handled that SIGHUP once it logs why it kept the old certificate
            expect(imtest.wait_until(lambda: server.log_text().count(refusal) > refusals_before, 10, 0.05),
                   f"no log line {refusal!r} within 10 s of the SIGHUP; the log ends:\n{server.log_text()[-2000:]}")
            expect(server.running(), "the server runs after a bad certificate")
            for port in (server.tcp_port, server.ws_port):
                expect(imtest.fingerprint(served_cert(port)) == second, f"port {port} still serves the second one")
            await login_and_chat(server, ctx, "localhost")

        log("-- the TLS handshake counts against server.auth_timeout_ms (1000 here)")
        quick_overrides = dict(imtest.tls_overrides(cert1, key1))
        quick_overrides["server.auth_timeout_ms"] = "1000"
        with imtest.Server(args.imserver, quick_overrides) as server:
            hello = client_hello()
            opened = []
            try:
                for port in (server.tcp_port, server.ws_port):
                    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
                    half = socket.create_connection(("127.0.0.1", port), timeout=10)
                    half.sendall(hello[: len(hello) // 2])
                    opened += [(f"port {port}: a client that sends nothing", silent),
                               (f"port {port}: a client that sends half a ClientHello", half)]
                for what, sock in opened:
                    expect(closed_by_server(sock, 10), f"{what} was not closed within 10 s")
            finally:
                for _, sock in opened:
                    sock.close()
            expect(server.running(), "the server runs")
            await login_and_chat(server, certs.client_context(), "localhost")

        log("-- TLS partial writes, and malformed WebSocket frames over wss://")
        big_overrides = dict(imtest.tls_overrides(cert1, key1))
        # a slow reader, not a slow consumer to drop; one sender, never rate limited
        big_overrides["server.max_pending_bytes"] = str(2 * PARTIAL_WRITES_BACKLOG + (8 << 20))
        big_overrides["limits.burst"] = "100000"
        big_overrides["limits.messages_per_second"] = "100000"
        with imtest.Server(args.imserver, big_overrides) as server:
            ctx = certs.client_context()
            await partial_writes(server, ctx)
            malformed_over_wss(server, ctx)
            await login_and_chat(server, ctx, "localhost")
    log("TLS tests passed")


if __name__ == "__main__":
    imtest.run(main)
