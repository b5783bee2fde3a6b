"""A local webhook receiver standing in for the card processor. It is a correct receiver
of the ledger's Standard Webhooks (interfaces/webhooks.py): it verifies each signature,
blocks a card once per webhook-id and answers a resend with the first `ref`. It can be
told that it is down for some inputs (an outage): it then answers 503 for their actions."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from interfaces.webhooks import DedupeReceiver, WebhookRejected, verify

MAX_BODY = 65_536


class WebhookReceiver:
    def __init__(self) -> None:
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        self.blocked: dict[str, str] = {}  # action_id -> reference
        self.down_for: set[str] = set()  # input IDs whose actions meet an outage
        self.requests = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._dedupe = DedupeReceiver(self.secret, self._block)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0") or 0)
                body = self.rfile.read(min(length, MAX_BODY))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer = receiver.handle(headers, body)
                encoded = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/hooks/block-card"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
        try:
            action = verify(self.secret, headers, body)
        except WebhookRejected as error:
            return 401, {"error": str(error)}
        with self._lock:
            if action.get("input_id") in self.down_for:
                self.failures += 1
                return 503, {"error": "card processor unavailable"}
        return self._dedupe.receive(headers, body)

    def _block(self, action: dict[str, Any]) -> str:
        """Block the card, once per webhook-id (the DedupeReceiver sees to that)."""
        with self._lock:
            reference = f"blk-{len(self.blocked) + 1:05d}"
            self.blocked[action["action_id"]] = reference
        return reference
