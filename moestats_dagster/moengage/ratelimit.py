"""A thread-safe sliding-window limiter: wait *before* the limit is hit instead of backing off after."""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindowLimiter:
    """At most `limit` acquisitions in any `window_seconds` window, shared by every thread.

    A call is timed when it is sent; the server times it when it arrives a little later, and a
    call delayed more than the one `limit` places after it could make the server's window look
    fuller than ours. `margin_seconds` widens our window by that much so it never does.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        margin_seconds: float | None = None,
        clock=time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 call per window, got {limit}")
        self.limit = limit
        self.window = float(window_seconds)
        self.margin = (
            margin_seconds if margin_seconds is not None else min(0.25, self.window * 0.05)
        )
        self._clock = clock
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._cond = threading.Condition()
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Block until one more call fits in the window, then count it as sent now."""
        start = self._clock()
        with self._cond:
            while True:
                now = self._clock()
                horizon = now - self.window - self.margin
                while self._sent and self._sent[0] <= horizon:
                    self._sent.popleft()
                wait = self._paused_until - now
                if len(self._sent) >= self.limit:
                    wait = max(wait, self._sent[0] - horizon)
                if wait <= 0:
                    self._sent.append(now)
                    self.waited_seconds += now - start
                    return
                self._cond.wait(wait)

    def is_full(self) -> bool:
        """True when the next call would have to wait for the window."""
        with self._cond:
            horizon = self._clock() - self.window - self.margin
            return sum(1 for t in self._sent if t > horizon) >= self.limit

    def pause_for(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (the server said the window is full)."""
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._cond.notify_all()
