#!/usr/bin/env python3
"""What a small backend does with imserver's admin API, in Python's
standard library: mint a token for each user who logs in to your app, and
push to users (a server push, not stored).

    IM_ADMIN_KEY=... python3 examples/backend.py http://127.0.0.1:9702 alice "your order shipped"

prints the token it minted for the user, then the push's answer.
"""

import base64
import json
import os
import sys
import urllib.request

API = sys.argv[1]
KEY = os.environ["IM_ADMIN_KEY"]


def call(path, body):
    req = urllib.request.Request(
        API + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())


def token_for(uid, ttl_s=86400):
    """A JWT for `uid`, as your login endpoint would hand it to your app."""
    return call("/v1/tokens", {"uid": uid, "ttl_s": ttl_s})["token"]


def push(uid, topic, text):
    """A server push to every online session of `uid`."""
    payload = base64.b64encode(text.encode()).decode()
    return call("/v1/push", {"to": uid, "topic": topic, "payload": payload})


if __name__ == "__main__":
    uid, text = sys.argv[2], sys.argv[3]
    print(token_for(uid))
    print(json.dumps(push(uid, "news", text)))
