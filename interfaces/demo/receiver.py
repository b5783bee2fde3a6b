"""A local webhook receiver standing in for the card processor: it blocks cards, once per
action, and can be told to fail the next call for one input (an effector outage)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self) -> None:
        self.blocked: dict[str, str] = {}  # action_id -> reference
        self.fail_for: set[str] = set()  # input IDs whose next call fails
        self.failures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0") or 0)
                try:
                    body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
                    status, answer = receiver.handle(body)
                except ValueError:
                    status, answer = 400, {"error": "not JSON"}
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

    def handle(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action_id, input_id = str(body.get("action_id", "")), str(body.get("input_id", ""))
        if not action_id:
            return 400, {"error": "action_id is required"}
        with self._lock:
            if input_id in self.fail_for:
                self.fail_for.discard(input_id)
                self.failures += 1
                return 503, {"error": "card processor unavailable"}
            # Idempotent on the action: a redelivery gets the first reference.
            reference = self.blocked.setdefault(action_id, f"blk-{len(self.blocked) + 1:05d}")
        return 200, {"reference": reference}
