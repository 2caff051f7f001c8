"""A local fake of Slack's Web API (chat.postMessage) on a real loopback socket."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSlack:
    """Answers like Slack: `ok` for a known bot token, `invalid_auth` otherwise."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict] = []
        self.posts = 0  # every post received, accepted or not
        self.failing = None  # post number (1-based) -> True to answer 500 (Slack down or flapping)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.posts += 1
                if fake.failing is not None and fake.failing(fake.posts):
                    data = b'{"ok": false, "error": "internal_error"}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if self.path != "/api/chat.postMessage":
                    answer = {"ok": False, "error": "unknown_method"}
                elif self.headers.get("Authorization") != f"Bearer {fake.token}":
                    answer = {"ok": False, "error": "invalid_auth"}
                else:
                    message = json.loads(body)
                    fake.messages.append(message)
                    answer = {"ok": True, "channel": message["channel"], "ts": "1.0"}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
