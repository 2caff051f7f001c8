"""Serve the sandbox over real HTTP on loopback: in a background thread (tests, demo) or foreground."""

from __future__ import annotations

import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from moestats_dagster.sandbox.app import SandboxApp


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per call would drown the run's own logs


class SandboxServer:
    """A running sandbox. `url` is the base URL to give the client; use as a context manager."""

    def __init__(self, app: SandboxApp | None = None, host: str = "127.0.0.1", port: int = 0):
        self.app = app or SandboxApp()
        self._server = make_server(
            host, port, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="moestats-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
