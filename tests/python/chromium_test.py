#!/usr/bin/env python3
"""A real browser against imserver: headless Chromium (Debian's chromium),
driven through the DevTools protocol with python3-websockets, loads the test
page that imserver serves from a test web_root (tests/python/web), and the
page's script opens a WebSocket to /ws, logs in and chats both ways with a TCP
client driven here; once over ws:// and once over wss:// (Chromium trusts the
test certificate by its public key's hash).

usage: chromium_test.py --imserver BIN --pb-dir DIR [--chromium BIN]
"""

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import websockets

import imtest
from imtest import expect, log

HERE = os.path.dirname(os.path.abspath(__file__))
WEB_ROOT = os.path.join(HERE, "web")
IOS = 1


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium found (Debian package chromium; scripts/setup.sh installs it)")


class Browser:
    """Headless Chromium in its own process group, stopped by that group's id."""

    def __init__(self, binary, folder, extra_args=()):
        self.profile = os.path.join(folder, "profile")
        os.makedirs(self.profile)
        self.log_path = os.path.join(folder, "chromium.log")
        args = [
            binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
            "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-domain-reliability", "--no-pings",
            "--disable-client-side-phishing-detection", "--metrics-recording-only", "--mute-audio",
            "--disable-breakpad", "--disable-crash-reporter",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
            # every name but the loopback address fails to resolve: this browser talks to nothing else
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            *extra_args, "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        log(f"chromium pid {self.proc.pid}")

    def endpoint(self, timeout=60):
        """The browser's DevTools WebSocket URL, from DevToolsActivePort."""
        path = os.path.join(self.profile, "DevToolsActivePort")
        found = imtest.wait_until(lambda: os.path.exists(path) and len(open(path).read().split("\n")) >= 2
                                  or self.proc.poll() is not None, timeout, 0.05)
        if not found or self.proc.poll() is not None:
            raise RuntimeError(f"chromium did not start its DevTools endpoint; its log:\n{self.log_tail()}")
        port, browser_path = open(path).read().split("\n")[:2]
        return f"ws://127.0.0.1:{port.strip()}{browser_path.strip()}"

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-40:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group this test started, by its leader's PID
                self.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group is left (zygote, renderers)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


class DevTools:
    """The DevTools protocol over the browser's WebSocket (flat sessions)."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method, params=None, session=None, timeout=30):
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.monotonic())))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def evaluate(self, session, expression, timeout=30):
        """Runs `expression` in the page, awaiting its promise; its value."""
        result = await self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                      "returnByValue": True, "timeout": timeout * 1000},
                                 session, timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"in the page: {details.get('exception', {}).get('description') or details}")
        return result["result"].get("value")


async def browser_chat(args, scheme, server, tmp, extra_args=(), ctx=None):
    page = f"{'https' if scheme == 'wss' else 'http'}://127.0.0.1:{server.ws_port}/"
    log(f"-- {page} ({scheme})")
    dave = await imtest.TcpClient.connect(server.tcp_port, ctx, "localhost" if ctx else None)
    browser = Browser(args.chromium or find_chromium(), tmp, extra_args)
    try:
        await dave.login("dave", IOS)
        async with websockets.connect(browser.endpoint(), max_size=16 << 20, ping_interval=None,
                                      open_timeout=30) as ws:
            cdp = DevTools(ws)
            target = (await cdp.send("Target.createTarget", {"url": page}))["targetId"]
            session = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]

            # the page (and its script, which a wrong Content-Type would block) came from imserver
            async def loaded():
                try:
                    return await cdp.evaluate(session, "document.readyState === 'complete' && "
                                                       "typeof window.imtest === 'object'", 5)
                except RuntimeError:
                    return False  # the page is still navigating

            if not await imtest.async_wait_until(loaded, 30, 0.1):
                title = await cdp.evaluate(session, "document.title + ' ' + location.href", 5)
                raise AssertionError(f"the test page did not load with its script: {title}\n{browser.log_tail()}")
            title = await cdp.evaluate(session, "document.title")
            expect(title == "imserver browser test", f"the page's title: {title!r}")

            url = await cdp.evaluate(session, "imtest.connect()")
            expect(url == f"{scheme}://127.0.0.1:{server.ws_port}/ws", f"the page opened {url}")
            status = await cdp.evaluate(session, f"imtest.login('carol', {json.dumps(imtest.token_for('carol'))})")
            expect(status == 0, f"LOGIN from the browser: status {status}")

            # browser -> TCP
            sent = await cdp.evaluate(session, f"imtest.send('dave', '{scheme}-1', 'hello dave, from chromium')")
            expect(sent["status"] == 0, f"SEND from the browser: {sent}")
            pushed = await dave.next_push()
            expect(len(pushed) == 1 and pushed[0].body == b"hello dave, from chromium", f"dave got {pushed}")
            expect(str(pushed[0].msg_id) == sent["msgId"] and getattr(pushed[0], "from") == "carol",
                   "the same message, from carol")

            # TCP -> browser
            back = await dave.send("carol", f"{scheme}-2", "hello carol, from python over TCP")
            got = await cdp.evaluate(session, "imtest.nextPush(10000)")
            expect(got["body"] == "hello carol, from python over TCP" and got["from"] == "dave", f"carol got {got}")
            expect(got["msgId"] == str(back.msg_id), "the same msg_id")

            closed = await cdp.evaluate(session, "imtest.close(1000)")
            expect(closed["code"] == 1000 and closed["clean"], f"the browser saw the close {closed}")
            errors = await cdp.evaluate(session, "imtest.errors()")
            expect(errors == [], f"errors in the page: {errors}")
            try:
                await cdp.send("Browser.close", timeout=10)
            except (RuntimeError, websockets.ConnectionClosed, asyncio.TimeoutError):
                pass
        log(f"-- {scheme}: the browser chatted with the TCP client")
    finally:
        dave.close()
        browser.stop()


async def main():
    args = imtest.parse_args(__doc__)
    args.chromium = os.environ.get("IM_CHROMIUM")
    web = {"server.web_root": json.dumps(WEB_ROOT)}
    with tempfile.TemporaryDirectory(prefix="imchromium-") as tmp:
        with imtest.Server(args.imserver, web) as server:
            await browser_chat(args, "ws", server, os.path.join(tmp, "ws"))

        certs = imtest.Certs(os.path.join(tmp, "certs"))
        cert, key = certs.server_cert("server", 2001)
        with imtest.Server(args.imserver, {**web, **imtest.tls_overrides(cert, key)}) as server:
            spki = imtest.spki_hash(cert)
            await browser_chat(args, "wss", server, os.path.join(tmp, "wss"),
                               [f"--ignore-certificate-errors-spki-list={spki}"], certs.client_context())


if __name__ == "__main__":
    imtest.run(main)
