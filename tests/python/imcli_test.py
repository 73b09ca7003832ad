"""imcli against a real imserver: the one-shot commands (their text and
JSON output, exit codes, a token minted through the admin API with the
development key), then the interactive mode driven under tmux (send-keys,
capture-pane): conversations switched, messages sent and printed as they
arrive above a half-typed line that survives them, a line wider than the
pane, /history, /groups, /create, /read, /recall, /quit. Then ws, tls and
wss dialled by name, against a certificate for that DNS name only: an
unknown CA and a certificate for another name are refused.

tmux runs on a private socket of this test, killed at the end; every wait
is bounded.
"""

import json
import os
import subprocess
import tempfile
import uuid

import imtest
from imtest import expect, log, token_for, wait_until


def main():
    parser_args = imtest.parse_args(__doc__)
    imcli = os.environ["IMCLI"]
    with imtest.Server(parser_args.imserver, {"admin.listen": '"127.0.0.1:0"', "admin.api_key": '""'}) as server:
        key_path = os.path.join(server.dir, "data", "admin_api_key")
        key = open(key_path).read().strip()
        expect(len(key) == 64, "a development admin key in the data dir")
        base = [imcli, "--server", f"127.0.0.1:{server.tcp_port}"]
        admin = ["--admin", f"http://127.0.0.1:{server.ports['admin']}", "--api-key", key]

        def cli(uid, *args, check=True, token=None):
            cmd = base + ["--uid", uid] + (["--token", token] if token is not None else admin) + list(args)
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            if check and r.returncode != 0:
                raise AssertionError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr}")
            return r

        # ---- one-shot commands
        sent = json.loads(cli("alice", "send", "bob", "hi bob", "--json").stdout)
        expect(sent["conv_seq"] == 1 and not sent["duplicate"] and int(sent["msg_id"]) > 0, f"send --json: {sent}")
        expect("sent to bob" in cli("alice", "send", "bob", "second").stdout, "send's text output")
        lines = [json.loads(l) for l in cli("bob", "pull", "--json").stdout.splitlines()]
        expect([m["body"] for m in lines] == ["hi bob", "second"], f"pull --json: {lines}")
        expect(lines[0]["from"] == "alice" and lines[0]["inbox_seq"] == 1, "pull's fields")
        later = [json.loads(l) for l in cli("bob", "pull", "--json", "--after", "1").stdout.splitlines()]
        expect([m["body"] for m in later] == ["second"], "pull --after")
        convs = json.loads(cli("bob", "conversations", "--json").stdout)
        expect(len(convs) == 1 and convs[0]["peer"] == "alice" and convs[0]["unread_count"] == 2, f"conversations: {convs}")
        expect("hi bob" in cli("bob", "history", "alice").stdout, "history")
        created = json.loads(cli("alice", "create-group", "team", "bob", "--name", "Team", "--json").stdout)
        expect(created == {"gid": "team", "member_count": 2}, f"create-group: {created}")
        groups = json.loads(cli("bob", "groups", "--json").stdout)
        expect(groups[0]["gid"] == "team" and groups[0]["name"] == "Team", f"groups: {groups}")
        cli("bob", "send", "team", "hello team", "--group")
        expect("hello team" in cli("alice", "history", "team", "--group").stdout, "group history")
        refused = cli("mallory", "send", "bob", "x", check=False, token="not-a-token")
        expect(refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr, f"a bad token: {refused.stderr}")
        missing = cli("alice", "send", "nobody-group", "x", "--group", check=False)
        expect(missing.returncode == 1 and ("NOT_FOUND" in missing.stderr or "FORBIDDEN" in missing.stderr),
               f"a refused send: {missing.stderr}")

        # ---- interactive with piped input: one command a line, and it ends
        piped = subprocess.run(base + ["--uid", "erin", "--token", token_for("erin")], input="/to frank\nfrom a pipe\n/quit\n",
                               capture_output=True, text=True, timeout=60)
        expect(piped.returncode == 0, f"piped input ends: {piped.stderr}")
        expect("talking to frank" in piped.stdout, f"piped commands run: {piped.stdout}")
        expect(wait_until(lambda: "from a pipe" in cli("frank", "pull", "--json").stdout, 10), "a piped line is sent")

        # ---- interactive, under tmux
        sock = f"imcli-{os.getpid()}-{uuid.uuid4().hex[:6]}"

        def tmux(*args):
            return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=20)

        def screen():
            return tmux("capture-pane", "-p", "-t", "t").stdout

        def keys(*k):
            tmux("send-keys", "-t", "t", *k)

        def shows(text, timeout=10):
            return wait_until(lambda: text in screen(), timeout)

        carol = " ".join(base + ["--uid", "carol", "--token", token_for("carol")])
        tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "50", carol)
        try:
            expect(shows("* online"), f"the interactive client logs in: {screen()}")
            keys("/to dave", "Enter")
            expect(shows("talking to dave"), "/to")
            keys("hello dave", "Enter")
            expect(wait_until(lambda: "hello dave" in cli("dave", "pull", "--json").stdout, 10), "a line is sent")
            cli("dave", "send", "carol", "hi carol")
            expect(shows("[dave] dave (#2): hi carol"), f"an incoming message is printed: {screen()}")
            keys("half typed")
            expect(shows("carol > dave> half typed"), "typing")
            cli("dave", "send", "carol", "while you type")
            expect(shows("while you type"), "printed while typing")
            last = [l for l in screen().splitlines() if l.strip()][-1]
            expect(last == "carol > dave> half typed", f"the half-typed line survives: {last!r}")
            # A hostile body: escape sequences (clear the screen, set the
            # title) and a newline faking a line of alice's. Shown inert.
            cli("dave", "send", "carol", "\x1b[2J\x1b]0;pwned\x07evil\n[alice] alice (#9): fake")
            expect(shows("evil"), "the hostile message is printed")
            expect("talking to dave" in screen(), f"the screen was not cleared: {screen()}")
            expect("\n[alice] alice (#9): fake" not in screen(), "no faked line")
            pulled = cli("carol", "pull").stdout
            expect("\x1b" not in pulled and "evil" in pulled, "one-shot output carries no escape sequence")
            keys("C-u")
            keys("/history", "Enter")
            expect(shows("you (#1): hello dave"), "/history")
            keys("/create crew dave", "Enter")
            expect(shows("created #crew with 2 members"), f"/create: {screen()}")
            keys("crew hello", "Enter")
            expect(shows("[#crew] you"), "a group message")
            keys("/recall", "Enter")
            expect(shows("recalled #"), f"/recall: {screen()}")
            keys("/groups", "Enter")
            expect(shows("#crew crew"), "/groups")
            keys("/to dave", "Enter")
            keys("/read", "Enter")
            expect(shows("read up to #4"), f"/read: {screen()}")
            # A line wider than the pane (160 columns) scrolls sideways on one row.
            long_line = "".join(f"{i:03d}," for i in range(60))  # 240 characters
            keys(long_line)
            expect(shows("056,057,058,059,"), f"the end of a long line shows: {screen()}")
            rows = [l for l in screen().splitlines() if l.strip()]
            expect(rows[-1].startswith("carol > dave> ") and "000," not in rows[-1] and len(rows[-1]) < 160,
                   f"one row, its end shown: {rows[-1]!r}")
            expect(not any("000," in r for r in rows), f"nothing wrapped above: {rows[-3:]}")
            keys("Enter")
            expect(wait_until(lambda: long_line in cli("dave", "pull", "--json").stdout, 10), "the whole long line is sent")
            keys("/nonsense", "Enter")
            expect(shows("unknown command"), "an unknown command")
            keys("/quit", "Enter")
            expect(wait_until(lambda: tmux("has-session", "-t", "t").returncode != 0, 10), "/quit ends imcli")
        finally:
            log(screen())
            tmux("kill-server")

        # ---- plain WebSocket, dialled by name
        ws = [imcli, "--server", f"localhost:{server.ws_port}", "--transport", "ws"]
        sent = subprocess.run(ws + ["--uid", "gina", "--token", token_for("gina"), "send", "hank", "over ws"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        expect(sent.returncode == 0, f"send over ws: {sent.stderr}")
        expect("over ws" in cli("hank", "pull", "--json").stdout, "hank got it")

    # ---- TLS and wss, against a certificate for a DNS name only: the name
    # dialled is the one checked (and sent as SNI)
    with tempfile.TemporaryDirectory() as tmp:
        certs = imtest.Certs(tmp)
        cert, key = certs.server_cert("server", 7, san="DNS:localhost")
        with imtest.Server(parser_args.imserver, imtest.tls_overrides(cert, key)) as server:
            def tls_cli(uid, transport, port, *args, host="localhost", ca=True):
                cmd = [imcli, "--server", f"{host}:{port}", "--transport", transport, "--uid", uid,
                       "--token", token_for(uid)] + (["--ca", certs.ca_cert] if ca else []) + list(args)
                return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

            for transport, port in (("tls", server.tcp_port), ("wss", server.ws_port)):
                r = tls_cli("ivan", transport, port, "send", "judy", f"over {transport}")
                expect(r.returncode == 0, f"send over {transport}: {r.stderr}")
            pulled = tls_cli("judy", "wss", server.ws_port, "pull", "--json")
            expect(pulled.returncode == 0, f"pull over wss: {pulled.stderr}")
            expect([json.loads(l)["body"] for l in pulled.stdout.splitlines()] == ["over tls", "over wss"],
                   f"both arrived: {pulled.stdout}")
            untrusted = tls_cli("ivan", "tls", server.tcp_port, "send", "judy", "x", ca=False)
            expect(untrusted.returncode != 0 and "verify failed" in untrusted.stderr,
                   f"an unknown CA is refused: {untrusted.stderr}")
            wrong_name = tls_cli("ivan", "tls", server.tcp_port, "send", "judy", "x", host="127.0.0.1")
            expect(wrong_name.returncode != 0 and "verify failed" in wrong_name.stderr,
                   f"a certificate for another name is refused: {wrong_name.stderr}")


if __name__ == "__main__":
    imtest.run_sync(main)
