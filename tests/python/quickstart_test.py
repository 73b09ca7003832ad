"""The README's quickstart, command by command, in order.

It reads the fenced blocks of the README's "Quickstart" section:
- `sh` blocks are shell commands. `bash scripts/run.sh` is replaced by
  starting the built imserver on a copy of config/im.toml whose data dir is a
  temporary one (its ports are the shipped 9700-9702, below the kernel's
  ephemeral range that the other tests' port-0 listeners take from); each
  other line runs as written, in a folder where `build/` is the build tree
  and `data/` that data dir. Exported variables
  and shell functions carry from one block to the next. An interactive
  `build/imcli --uid NAME ...` line runs in a tmux window named NAME.
- `text NAME` blocks are lines typed into window NAME (send-keys).
Then it checks what each person's terminal shows and what the commands
printed. tmux runs on a private socket of this test; the server is stopped
by its PID; every wait is bounded.
"""

import os
import re
import shutil
import subprocess
import tempfile
import uuid

import imtest
from imtest import expect, log, wait_until

PORTS = ("9700", "9701", "9702")


def quickstart_blocks(readme):
    text = open(readme).read()
    start = text.index("## Quickstart")
    end = text.find("\n## ", start + 5)
    section = text[start : end if end > 0 else len(text)]
    return [(m.group(1).split(), m.group(2).splitlines()) for m in re.finditer(r"```([^\n]*)\n(.*?)```", section, re.S)]


def port_free(port):
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main():
    args = imtest.parse_args(__doc__)
    source = os.environ["IM_SOURCE_DIR"]
    build = os.path.dirname(args.imserver)
    work = tempfile.mkdtemp(prefix="imquick-")
    for p in PORTS:
        expect(port_free(int(p)), f"port {p} is taken (a server of yours running?): the quickstart needs it")
    os.symlink(build, os.path.join(work, "build"))
    config = open(os.path.join(source, "config", "im.toml")).read()
    config = config.replace('data_dir = "./data"', f'data_dir = "{work}/data"')
    config = config.replace('web_root = "../web/public"', f'web_root = "{source}/web/public"')
    open(os.path.join(work, "im.toml"), "w").write(config)
    env_file = os.path.join(work, "env.sh")
    open(env_file, "w").close()
    sock = f"imquick-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    server = None
    outputs = []

    def tmux(*a):
        return subprocess.run(["tmux", "-L", sock, *a], capture_output=True, text=True, timeout=20)

    def screen(name):
        return tmux("capture-pane", "-p", "-t", f"qs:{name}").stdout

    def shell(lines):
        # One block in bash, with what earlier blocks exported and defined.
        script = f"set -e\ncd {work}\nsource {env_file}\n" + "\n".join(lines) + f"\n{{ export -p; declare -f; }} > {env_file}\n"
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
        log(f"$ {' ; '.join(lines)}\n{r.stdout}{r.stderr}")
        expect(r.returncode == 0, f"the quickstart's commands failed: {lines}: {r.stderr}")
        outputs.append(r.stdout)

    try:
        tmux("new-session", "-d", "-s", "qs", "-n", "main", "-x", "160", "-y", "50")
        for info, lines in quickstart_blocks(os.path.join(source, "README.md")):
            lang = info[0] if info else ""
            if lang == "sh":
                pending = []
                for line in lines:
                    if line.strip() == "bash scripts/run.sh":
                        log("$ bash scripts/run.sh  (the built imserver on a copy of config/im.toml)")
                        server = subprocess.Popen(
                            [args.imserver, "--config", os.path.join(work, "im.toml")],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "server.log"), "ab"),
                            stdin=subprocess.DEVNULL, cwd=work)
                        expect(wait_until(lambda: os.path.exists(os.path.join(work, "data", "admin_api_key")), 30),
                               "the server starts and makes its admin key")
                        expect(wait_until(lambda: subprocess.run(
                            ["curl", "-sf", "http://127.0.0.1:9702/healthz"], capture_output=True).returncode == 0, 30),
                            "the server answers /healthz")
                        continue
                    m = re.match(r"build/imcli --uid (\w+) --token \S+$", line.strip())
                    if m:
                        if pending:
                            shell(pending)
                            pending = []
                        name = m.group(1)
                        tmux("new-window", "-t", "qs", "-n", name,
                             f"bash -c 'cd {work} && source {env_file} && {line.strip()}'")
                        expect(wait_until(lambda: "* online" in screen(name), 15), f"{name}'s imcli logs in: {screen(name)}")
                        continue
                    pending.append(line)
                if pending:
                    shell(pending)
            elif lang == "text" and len(info) == 2:
                name = info[1]
                for line in lines:
                    tmux("send-keys", "-t", f"qs:{name}", line, "Enter")
                    expect(wait_until(lambda: line in screen(name), 10), f"{name} typed {line!r}: {screen(name)}")
        # What each terminal shows.
        alice, bob = "alice", "bob"
        expect(wait_until(lambda: "[alice] alice (#1): hello bob" in screen(bob), 10), f"bob got alice's message: {screen(bob)}")
        expect(wait_until(lambda: "[bob] bob (#2): hi alice, got it" in screen(alice), 10), f"alice got bob's: {screen(alice)}")
        expect(wait_until(lambda: "sent from a script" in screen(alice), 10), "the one-shot send reached alice")
        expect(wait_until(lambda: "* server push [news]: the server says hi" in screen(alice), 10),
               f"the server push reached alice: {screen(alice)}")
        expect("you (#1): hello bob" not in screen(bob) and "alice (#1): hello bob" in screen(bob), "bob's /history")
        printed = "".join(outputs)
        expect('"peer":"bob"' in printed, "alice's conversations --json lists bob")
        expect("<title>imserver chat</title>" in printed, "the web page is served")
        expect(re.search(r"imserver_sessions \d+", printed), "/metrics shows the sessions")
        expect('"delivered_sessions":1' in printed.replace(" ", ""), "the push was delivered to alice's session")
    finally:
        for name in ("alice", "bob"):
            log(f"---- {name}'s terminal\n{screen(name)}")
        tmux("kill-server")
        imtest.stop_process(server, timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    imtest.run_sync(main)
