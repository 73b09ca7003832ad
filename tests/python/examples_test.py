"""examples/ against a real imserver:
- the C++ SDK installed by `cmake --install --component dev` into a
  temporary prefix, and examples/echo_bot configured with find_package(imclient)
  against it, built and run: a message to the bot is answered once, and
  not again after the bot restarts past the dedupe window (its state dir);
- examples/backend.py mints a token and pushes; the push reaches an imcli
  session logged in with that token;
- examples/webhook_receiver.py receives an offline_push and verifies its
  signature, and refuses a forged one and a non-ASCII one.
Every process it starts is stopped by its PID; every wait is bounded.
"""

import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import imtest
from imtest import expect, token_for, wait_until

SECRET = "webhook-secret-0123456789abcdef-0123456789"


def free_port():
    """A free loopback port picked as tests/support's free_loopback_port() does:
    at random between 20000 and the ephemeral range (so no outgoing connection
    takes it meanwhile), else any (port 0)."""

    def bind(port):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return 0
            return s.getsockname()[1]

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if 20000 < low <= 65535:
        for _ in range(200):
            if port := bind(random.randint(20000, low - 1)):
                return port
    if port := bind(0):
        return port
    raise RuntimeError("no free loopback port")


def main():
    args = imtest.parse_args(__doc__)
    source, build, cmake, imcli = (os.environ[k] for k in ("IM_SOURCE_DIR", "IM_BUILD_DIR", "CMAKE", "IMCLI"))
    work = tempfile.mkdtemp(prefix="imexamples-")
    procs = []

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    try:
        # The SDK as a package, and the echo bot built against it.
        prefix = os.path.join(work, "prefix")
        subprocess.run([cmake, "--install", build, "--prefix", prefix, "--component", "dev"], check=True,
                       capture_output=True, timeout=120)
        bot_build = os.path.join(work, "echo_bot")
        # The build's compiler: a sanitized SDK and the bot share one
        # compiler's sanitizer runtime.
        flags = [f"-DCMAKE_CXX_COMPILER={os.environ['IM_CXX']}"] if os.environ.get("IM_CXX") else []
        if os.environ.get("IM_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE"):
            # The installed libraries are instrumented: so is the bot.
            sanitize = "-fsanitize=address,undefined,float-cast-overflow"
            flags += [f"-DCMAKE_CXX_FLAGS={sanitize}", f"-DCMAKE_EXE_LINKER_FLAGS={sanitize}"]
        r = subprocess.run([cmake, "-S", os.path.join(source, "examples", "echo_bot"), "-B", bot_build,
                            f"-DCMAKE_PREFIX_PATH={prefix}", *flags], capture_output=True, text=True, timeout=120)
        expect(r.returncode == 0, f"find_package(imclient): {r.stdout}{r.stderr}")
        r = subprocess.run([cmake, "--build", bot_build, "-j2"], capture_output=True, text=True, timeout=600)
        expect(r.returncode == 0, f"the echo bot builds: {r.stdout}{r.stderr}")

        hook_port = free_port()
        receiver = start([imtest.sys.executable, os.path.join(source, "examples", "webhook_receiver.py"), "127.0.0.1",
                          str(hook_port)], env={**os.environ, "IM_WEBHOOK_SECRET": SECRET})
        overrides = {
            "admin.listen": '"127.0.0.1:0"',
            "admin.api_key": '""',
            "webhook.url": json.dumps(f"http://127.0.0.1:{hook_port}/hook"),
            "webhook.secret": json.dumps(SECRET),
            "push.offline_delay_ms": "200",
            # Short, so that a restarted bot answering again would be stored again.
            "storage.dedupe_window_s": "1",
        }
        with imtest.Server(args.imserver, overrides) as server:
            key = open(os.path.join(server.dir, "data", "admin_api_key")).read().strip()
            api = f"http://127.0.0.1:{server.ports['admin']}"
            bot_cmd = [os.path.join(bot_build, "echo_bot"), "127.0.0.1", str(server.tcp_port), "echo",
                       token_for("echo"), os.path.join(work, "echo-state")]
            bot = start(bot_cmd)
            base = [imcli, "--server", f"127.0.0.1:{server.tcp_port}"]

            def cli(uid, token, *a):
                r = subprocess.run(base + ["--uid", uid, "--token", token, *a], capture_output=True, text=True,
                                   timeout=60, stdin=subprocess.DEVNULL)
                expect(r.returncode == 0, f"imcli {a}: {r.stderr}")
                return r.stdout

            alice = token_for("alice")
            cli("alice", alice, "send", "echo", "ping")

            def answers():
                return [json.loads(l)["body"] for l in cli("alice", alice, "pull", "--json").splitlines()
                        if json.loads(l)["from"] == "echo"]

            expect(wait_until(lambda: answers() == ["echo: ping"], 20), f"the bot answers once: {answers()}")

            # Restarted past the dedupe window, the bot goes on from its state dir.
            imtest.stop_process(bot)
            expect(bot.returncode == 0, f"the bot stops on SIGTERM: {bot.returncode}")
            time.sleep(2)
            bot = start(bot_cmd)
            cli("alice", alice, "send", "echo", "ping 2")
            expect(wait_until(lambda: "echo: ping 2" in answers(), 20), f"the restarted bot answers: {answers()}")
            expect(answers() == ["echo: ping", "echo: ping 2"], f"nothing answered twice: {answers()}")

            # backend.py: a token minted, then a push to a session using it.
            out = subprocess.run([imtest.sys.executable, os.path.join(source, "examples", "backend.py"), api, "carol",
                                  "hello from the backend"], capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "IM_ADMIN_KEY": key})
            expect(out.returncode == 0, f"backend.py: {out.stderr}")
            minted, answer = out.stdout.splitlines()[:2]
            expect(json.loads(answer)["delivered_sessions"] == 0, "nobody online yet")
            listener = subprocess.Popen(base + ["--uid", "carol", "--token", minted], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(listener)
            expect(wait_until(lambda: "delivered_sessions\": 1" in subprocess.run(
                [imtest.sys.executable, os.path.join(source, "examples", "backend.py"), api, "carol", "second push"],
                capture_output=True, text=True, timeout=60, env={**os.environ, "IM_ADMIN_KEY": key}).stdout, 15),
                "the minted token logs carol in and the push reaches her")

            # The webhook: a message to a user who is offline fires offline_push.
            cli("alice", alice, "send", "zoe", "are you there?")
            lines = []

            def receiver_says(text):
                return text in "".join(lines)

            os.set_blocking(receiver.stdout.fileno(), False)

            def read_receiver():
                try:
                    chunk = os.read(receiver.stdout.fileno(), 65536)
                except BlockingIOError:
                    chunk = b""
                if chunk:
                    lines.append(chunk.decode(errors="replace"))
                return receiver_says("offline_push for zoe from alice (verified)")

            expect(wait_until(read_receiver, 20), f"the receiver verified an offline_push: {lines}")
            forged = urllib.request.Request(f"http://127.0.0.1:{hook_port}/hook", data=b'{"id":"1","event":"report"}',
                                            headers={"X-IM-Signature": "sha256=" + "0" * 64}, method="POST")
            try:
                urllib.request.urlopen(forged, timeout=5)
                expect(False, "a forged event is refused")
            except urllib.error.HTTPError as e:
                expect(e.code == 401, f"a forged event: {e.code}")
            odd = urllib.request.Request(f"http://127.0.0.1:{hook_port}/hook", data=b'{"id":"1","event":"report"}',
                                         headers={"X-IM-Signature": "sha256=\u00e9"}, method="POST")
            try:
                urllib.request.urlopen(odd, timeout=5)
                expect(False, "a non-ASCII signature is refused")
            except urllib.error.HTTPError as e:
                expect(e.code == 401, f"a non-ASCII signature: {e.code}")
            good_body = b'{"id":"2","event":"report","uid":"u","topic":"t"}'
            good = urllib.request.Request(f"http://127.0.0.1:{hook_port}/hook", data=good_body, method="POST", headers={
                "X-IM-Signature": "sha256=" + hmac.new(SECRET.encode(), good_body, hashlib.sha256).hexdigest()})
            expect(urllib.request.urlopen(good, timeout=5).status == 204, "a signed event is taken")
    finally:
        for p in procs:
            imtest.stop_process(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    imtest.run_sync(main)
