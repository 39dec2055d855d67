#!/usr/bin/env python3
"""A genrelay webhook receiver in Python, standard library only.

    WEBHOOK_SECRET=whsec_... python3 receiver.py [--listen 127.0.0.1:3000]

genrelay signs every delivery with the customer's webhook_secret (Standard
Webhooks): webhook-signature is "v1,<base64 HMAC-SHA256>" of
"{webhook-id}.{webhook-timestamp}.{raw body}" under the base64-decoded
secret (the part after "whsec_"). Verify the raw bytes as received, refuse
timestamps more than 5 minutes off, compare in constant time, answer 2xx
quickly and deduplicate on webhook-id (delivery is at least once).
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 5 * 60
MAX_BODY = 1 << 20


def signing_key(secret):
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def verify(key, headers, body, now=None):
    """Returns None when the delivery is genuine, else the reason."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if not ts.isdigit():
        return "bad webhook-timestamp"
    now = time.time() if now is None else now
    if abs(now - int(ts)) > TOLERANCE_S:
        return "timestamp outside the tolerance"
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    for part in sigs.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return None
    return "no matching v1 signature"


class Handler(BaseHTTPRequestHandler):
    key = b""
    seen = set()  # webhook-ids handled; a real app keeps them in its database

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.send_response(413)
            self.end_headers()
            return
        body = self.rfile.read(n)
        headers = {k.lower(): v for k, v in self.headers.items()}
        why = verify(self.key, headers, body)
        msg_id = headers.get("webhook-id", "-")
        if why:
            print(f"rejected {msg_id}: {why}", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        if msg_id in self.seen:
            print(f"duplicate {msg_id}", flush=True)
        else:
            self.seen.add(msg_id)
            event = json.loads(body or b"null") or {}
            print(f"accepted {msg_id} {event.get('type')} {event.get('job_id')} {event.get('status')}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, fmt, *args):  # quiet: one line per delivery above
        pass


def main():
    listen = "127.0.0.1:3000"
    if "--listen" in sys.argv:
        listen = sys.argv[sys.argv.index("--listen") + 1]
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET to the customer's webhook_secret (whsec_...)")
    Handler.key = signing_key(secret)
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    print(f"listening on http://{listen.rpartition(':')[0]}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
