#!/usr/bin/env python3
"""TLS on both listeners (tls.cert_file and tls.key_file set), checked with
Python's ssl module and the openssl CLI: login and C2C verified against a test
CA, TLS 1.1 refused while 1.2 and 1.3 are spoken, a plaintext client gets no
service, and SIGHUP loads replaced certificate files (a bad one keeps the old).

usage: tls_test.py --imserver BIN --pb-dir DIR
"""

import asyncio
import itertools
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

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

            log("-- SIGHUP with a bad certificate file keeps the old certificate")
            hups_before = server.log_text().count("SIGHUP")
            with open(live_cert + ".new", "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
            os.replace(live_cert + ".new", live_cert)
            server.reload()
            # wait until the server has handled that SIGHUP (it logs each), then look
            if not imtest.wait_until(lambda: server.log_text().count("SIGHUP") > hups_before, 10, 0.05):
                log("   (no log line about the SIGHUP seen; checking anyway)")
            expect(server.running(), "the server runs after a bad certificate")
            for port in (server.tcp_port, server.ws_port):
                expect(imtest.fingerprint(served_cert(port)) == second, f"port {port} still serves the second one")
            await login_and_chat(server, ctx, "localhost")
    log("TLS tests passed")


if __name__ == "__main__":
    imtest.run(main)
