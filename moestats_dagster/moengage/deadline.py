"""A whole-call deadline for HTTP attempts.

requests/urllib3 timeouts bound each socket operation, not a call: a server that sends its headers
or body one byte every few seconds never trips a read timeout and can hold a call for hours. No
library we use offers a total deadline, so this small piece is ours: connections made through
`DeadlineAdapter` register their socket with the calling thread's `Deadline`, whose timer shuts
the socket down when the deadline passes, wherever the call is blocked.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

_current = threading.local()


class Deadline:
    """Ends one HTTP attempt after `seconds`, by shutting its socket down."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.fire)
        self._timer.daemon = True

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired and sock is not None:
                _shutdown(sock)

    def fire(self) -> None:
        """End the attempt now (the deadline passed, or the run was cancelled)."""
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._sock is not None:
                _shutdown(self._sock)

    @contextlib.contextmanager
    def running(self) -> Iterator[Deadline]:
        """Arm the deadline for the HTTP call made inside the block, in this thread."""
        _current.deadline = self
        self._timer.start()
        try:
            yield self
        finally:
            with self._lock:
                self._done = True
            self._timer.cancel()
            _current.deadline = None


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Registering:
    """Connection mixin: hand the socket to the calling thread's deadline."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._register()

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        self._register()
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]

    def _register(self) -> None:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(self.sock)


class _HTTPConnection(_Registering, HTTPConnection):
    pass


class _HTTPSConnection(_Registering, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections honour the calling thread's `Deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
