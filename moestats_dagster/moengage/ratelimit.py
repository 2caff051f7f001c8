"""A sliding-window limiter: wait *before* the limit is hit instead of backing off after.

Thread-safe; with `state_file` it is also shared by every process on the machine (each Dagster run
is a process, and back-to-back runs of one workspace share MoEngage's window).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class SlidingWindowLimiter:
    """At most `limit` calls in any `window_seconds` window.

    A call is timed when it is sent; the server times it when it arrives a little later, and a
    call delayed more than the one `limit` places after it could make the server's window look
    fuller than ours. `margin_seconds` widens our window by that much so it never does.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        margin_seconds: float | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 call per window, got {limit}")
        self.limit = limit
        self.window = float(window_seconds)
        self.margin = margin_seconds if margin_seconds is not None else min(0.25, self.window * 0.1)
        self.state_file = Path(state_file) if state_file else None
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, Any] = {"sent": [], "paused_until": 0.0}
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The window, locked against other threads (and other processes, with a state file)."""
        with self._lock:
            if self.state_file is None:
                yield self._memory
                return
            with open(self.state_file, "a+", encoding="utf-8") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    fh.seek(0)
                    text = fh.read()
                    try:
                        state = json.loads(text) if text else {}
                    except ValueError:
                        state = {}  # a torn file from a killed process: start a fresh window
                    state.setdefault("sent", [])
                    state.setdefault("paused_until", 0.0)
                    yield state
                    fh.seek(0)
                    fh.truncate()
                    fh.write(json.dumps(state))
                    fh.flush()
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def acquire(self) -> None:
        """Block until one more call fits in the window, then count it as sent now."""
        start = time.time()
        while True:
            with self._state() as state:
                now = time.time()
                horizon = now - self.window - self.margin
                sent = [t for t in state["sent"] if t > horizon]
                wait = state["paused_until"] - now
                if len(sent) >= self.limit:
                    wait = max(wait, sent[-self.limit] - horizon)
                if wait <= 0:
                    sent.append(now)
                state["sent"] = sent
            if wait <= 0:
                self.waited_seconds += now - start
                return
            time.sleep(wait)

    def is_full(self) -> bool:
        """True when the next call would have to wait for the window."""
        with self._state() as state:
            horizon = time.time() - self.window - self.margin
            return sum(1 for t in state["sent"] if t > horizon) >= self.limit

    def pause_for(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (the server said the window is full)."""
        with self._state() as state:
            state["paused_until"] = max(state["paused_until"], time.time() + seconds)
