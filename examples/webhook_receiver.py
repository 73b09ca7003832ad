#!/usr/bin/env python3
"""A webhook receiver for imserver in Python's standard library.

Checks X-IM-Signature (sha256=<hex HMAC-SHA256 of the body with
webhook.secret>, PROTOCOL.md section 7) before trusting an event, answers
2xx to what it took (imserver retries anything else) and 401 to a bad
signature. Events come at least once: deduplicate by their "id".

    IM_WEBHOOK_SECRET=... python3 examples/webhook_receiver.py 127.0.0.1 8080
"""

import hashlib
import hmac
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["IM_WEBHOOK_SECRET"].encode()
seen = set()  # event ids already handled (kept in memory here; a real backend keeps them in its database)
seen_lock = threading.Lock()  # one thread per connection


class Hook(BaseHTTPRequestHandler):
    timeout = 10  # seconds: an idle or slow connection is closed, not kept forever

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        expected = b"sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
        # Compared as bytes: a header that is not ASCII is a bad signature, not an error.
        got = self.headers.get("X-IM-Signature", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(expected, got):
            self.send_response(401)
            self.end_headers()
            print("refused: bad signature", flush=True)
            return
        event = json.loads(body)
        with seen_lock:
            first = event["id"] not in seen
            seen.add(event["id"])
        if first:
            if event["event"] == "offline_push":
                print(f"offline_push for {event['uid']} from {event['from']} (verified)", flush=True)
            elif event["event"] == "report":
                print(f"report from {event['uid']}: {event['topic']} (verified)", flush=True)
            else:
                print(f"{event['event']} (verified)", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass  # one line per event above is enough


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Hook).serve_forever()
