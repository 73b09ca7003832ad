"""Shared pieces of the third-party client tests: start and stop a real
imserver, mint tokens, speak the frame protocol over TCP (plain or TLS), and
make test certificates with the openssl CLI.

Every wait is bounded; the server is stopped by its PID only. Runs on
Debian's python3 with python3-protobuf (the im_pb2 module is generated at
build time from proto/im.proto, its folder given as --pb-dir).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import time

SECRET = "test-secret-0123456789abcdef-0123456789"

# PROTOCOL.md, section 1 and 2
MAGIC = 0x494D
HEADER = struct.Struct(">HBBHHIII")
FLAG_RESPONSE = 0x01
HEARTBEAT, LOGIN, LOGOUT, KICKOUT = 0x0001, 0x0002, 0x0003, 0x0004
SEND, PUSH, ACK, PULL = 0x0010, 0x0011, 0x0012, 0x0013
ERROR = 0x00FF

pb = None  # the generated im_pb2 module, set by parse_args()


def parse_args(description):
    """Parses --imserver and --pb-dir, imports im_pb2, arms a watchdog."""
    global pb
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--imserver", required=True, help="the imserver binary")
    parser.add_argument("--pb-dir", required=True, help="the folder of the generated im_pb2.py")
    parser.add_argument("--timeout", type=int, default=240, help="seconds before the whole test gives up")
    args = parser.parse_args()
    sys.path.insert(0, args.pb_dir)
    import im_pb2  # noqa: E402 (generated at build time)

    pb = im_pb2
    # A bounded runtime whatever happens: SIGALRM raises in the main thread,
    # so the finally blocks still stop what the test started.
    def on_alarm(signum, frame):
        raise TimeoutError(f"the test did not finish within {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    return args


def log(*parts):
    print(*parts, flush=True)


# ---------------------------------------------------------------- tokens


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token_for(uid, secret=SECRET):
    """An HS256 JWT whose sub is `uid` (PROTOCOL 5, LOGIN)."""
    head = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(json.dumps({"sub": uid}, separators=(",", ":")).encode())
    signing_input = head + b"." + payload
    signature = b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


# ---------------------------------------------------------------- frames


def encode(cmd, seq, body=b"", flags=0, status=0):
    return HEADER.pack(MAGIC, 1, flags, cmd, status, seq, len(body), 0) + body


class Frame:
    def __init__(self, header, body):
        magic, self.version, self.flags, self.cmd, self.status, self.seq, body_len, _ = header
        if magic != MAGIC or body_len != len(body):
            raise ValueError("not an IM frame")
        self.body = body

    @property
    def is_response(self):
        return bool(self.flags & FLAG_RESPONSE)

    def parse(self, message_type):
        m = message_type()
        m.ParseFromString(self.body)
        return m

    def error_message(self):
        return self.parse(pb.Error).message if self.status else ""

    def __repr__(self):
        return f"Frame(cmd=0x{self.cmd:04x}, status={self.status}, seq={self.seq}, {len(self.body)} bytes)"


def decode(message):
    """A whole binary WebSocket message: exactly one frame."""
    if len(message) < HEADER.size:
        raise ValueError(f"a message of {len(message)} bytes is not a frame")
    return Frame(HEADER.unpack(message[: HEADER.size]), message[HEADER.size :])


def login_body(uid, device_type, device_id=""):
    req = pb.LoginReq(uid=uid, token=token_for(uid), device_type=device_type, device_id=device_id)
    return req.SerializeToString()


def send_body(to, cmid, text):
    return pb.SendReq(client_msg_id=cmid, conv_type=pb.C2C, to=to, content_type=1, body=text.encode()).SerializeToString()


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


# ----------------------------------------------------- the TCP protocol client


class TcpClient:
    """The frame protocol over asyncio streams, plain or TLS."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.seq = 0
        self.started = []  # frames the server started, not yet taken

    @classmethod
    async def connect(cls, port, ssl_context=None, server_hostname=None, timeout=10):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ssl_context, server_hostname=server_hostname), timeout
        )
        return cls(reader, writer)

    async def read_frame(self, timeout=10):
        head = await asyncio.wait_for(self.reader.readexactly(HEADER.size), timeout)
        fields = HEADER.unpack(head)
        body = await asyncio.wait_for(self.reader.readexactly(fields[6]), timeout)
        return Frame(fields, body)

    async def call(self, cmd, body=b"", timeout=10):
        self.seq += 1
        seq = self.seq
        self.writer.write(encode(cmd, seq, body))
        await self.writer.drain()
        deadline = time.monotonic() + timeout
        while True:
            f = await self.read_frame(max(0.1, deadline - time.monotonic()))
            if f.is_response and f.seq == seq:
                return f
            self.started.append(f)

    async def next_frame(self, timeout=10):
        if self.started:
            return self.started.pop(0)
        return await self.read_frame(timeout)

    async def next_push(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            f = await self.next_frame(max(0.1, deadline - time.monotonic()))
            if f.cmd == PUSH:
                return list(f.parse(pb.MessagePush).messages)

    async def login(self, uid, device_type=1, device_id=""):
        f = await self.call(LOGIN, login_body(uid, device_type, device_id))
        expect(f.status == 0, f"LOGIN {uid} over TCP: status {f.status} {f.error_message()}")
        return f.parse(pb.LoginResp)

    async def send(self, to, cmid, text):
        f = await self.call(SEND, send_body(to, cmid, text))
        expect(f.status == 0, f"SEND to {to}: status {f.status} {f.error_message()}")
        return f.parse(pb.SendResp)

    async def pull(self, after=0):
        f = await self.call(PULL, pb.PullReq(after_seq=after, limit=1000).SerializeToString())
        expect(f.status == 0, f"PULL: status {f.status}")
        return f.parse(pb.PullResp)

    def close(self):
        self.writer.close()


# ------------------------------------------------------------- the server


class Server:
    """A real imserver on 127.0.0.1 port 0 with its own temporary folder."""

    def __init__(self, binary, overrides=None, workdir=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="imext-", dir=workdir)
        self.overrides = {
            "server.listen": '"127.0.0.1:0"',
            "server.ws_listen": '"127.0.0.1:0"',
            "admin.listen": '""',
            "storage.data_dir": json.dumps(os.path.join(self.dir, "data")),
            "auth.mode": '"jwt"',
            "auth.jwt_secret": json.dumps(SECRET),
            # Two loops and two shards on any machine (0 is half its cores):
            # the cross-thread paths are the ones to test.
            "server.io_threads": "2",
            "sharding.shards": "2",
            "log.level": '"debug"',
        }
        self.overrides.update(overrides or {})
        self.proc = None
        self.ports = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        if not os.environ.get("IM_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def tcp_port(self):
        return self.ports["tcp"]

    @property
    def ws_port(self):
        return self.ports["ws"]

    @property
    def log_path(self):
        return os.path.join(self.dir, "server.log")

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def write_config(self):
        sections = {}
        for key, value in self.overrides.items():
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = value
        path = os.path.join(self.dir, "im.toml")
        with open(path, "w") as f:
            for section, keys in sections.items():
                f.write(f"[{section}]\n")
                for name, value in keys.items():
                    f.write(f"{name} = {value}\n")
        return path

    def start(self):
        config = self.write_config()
        err = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--config", config], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL
        )
        err.close()
        want = {"tcp"} | ({"ws"} if self.overrides.get("server.ws_listen") != '""' else set())
        want |= {"admin"} if self.overrides.get("admin.listen") != '""' else set()
        buffer = b""
        deadline = time.monotonic() + 30
        fd = self.proc.stdout.fileno()
        while not want <= self.ports.keys() and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                if len(words) >= 4 and words[1] == "listening":
                    self.ports[words[2]] = int(words[3].rsplit(":", 1)[1])
        if not want <= self.ports.keys():
            self.stop()
            raise RuntimeError(f"imserver did not start; its log:\n{self.log_text()}")
        log(f"imserver pid {self.proc.pid}: {self.ports}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self):
        """SIGHUP, to this server's PID only."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc = None


def stop_process(proc, timeout=10):
    """SIGTERM to a process this test started, SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_until(condition, timeout=5.0, every=0.02):
    """Polls `condition` until it holds or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


async def async_wait_until(condition, timeout=5.0, every=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)


# ---------------------------------------------------------- certificates


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


class Certs:
    """A test CA and server certificates it signs, for 127.0.0.1 and localhost."""

    def __init__(self, folder):
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.ca_key = os.path.join(folder, "ca.key")
        self.ca_cert = os.path.join(folder, "ca.pem")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert,
                "-days", "2", "-subj", "/CN=imserver test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                cwd=folder)

    def server_cert(self, name, serial, san="IP:127.0.0.1,DNS:localhost"):
        """A key and a certificate (serial `serial`, for the names `san`) signed by the CA; their paths."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.pem")
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san}\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n")
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                "-subj", f"/CN=localhost {name}", cwd=self.dir)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-set_serial", str(serial),
                "-days", "2", "-sha256", "-extfile", ext, "-out", cert, cwd=self.dir)
        return cert, key

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        ctx.check_hostname = True
        return ctx


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def spki_hash(cert_path):
    """base64(sha256(SubjectPublicKeyInfo)): Chromium's --ignore-certificate-errors-spki-list."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"], check=True,
                         capture_output=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, check=True,
                         capture_output=True, timeout=30).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def tls_overrides(cert, key):
    return {"tls.cert_file": json.dumps(cert), "tls.key_file": json.dumps(key)}


def run(main):
    """Runs an async main; exit code 0 when it passes, 1 with the reason when not."""
    try:
        asyncio.run(main())
    except BaseException as e:  # noqa: BLE001 (the reason is what the test prints)
        import traceback

        traceback.print_exc()
        log(f"FAILED: {e!r}")
        sys.exit(1)
    log("PASSED")


def run_sync(main):
    """Runs a plain main; exit code 0 when it passes, 1 with the reason when not."""
    try:
        main()
    except BaseException as e:  # noqa: BLE001 (the reason is what the test prints)
        import traceback

        traceback.print_exc()
        log(f"FAILED: {e!r}")
        sys.exit(1)
    log("PASSED")
