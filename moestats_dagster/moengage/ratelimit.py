"""A sliding-window limiter: wait *before* the limit is hit instead of backing off after.

Thread-safe; with `state_file` it is also shared by every process of this user on the machine
(each Dagster run is a process, and back-to-back runs of one workspace share MoEngage's window).
The state lives in a per-user folder (mode 0700) and is opened without following symlinks, so
another user cannot plant a link that makes a run overwrite some other file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moestats_dagster.moengage.errors import CancelledError, ConfigurationError

STATE_DIR_ENV = "MOESTATS_STATE_DIR"


def default_state_dir() -> Path:
    """Per-user folder for the rate windows: $MOESTATS_STATE_DIR, else $XDG_STATE_HOME/moestats,
    else ~/.local/state/moestats; a per-uid folder in the temp dir if there is no usable home."""
    explicit = os.environ.get(STATE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    if base.is_absolute() and os.access(base if base.exists() else base.parent, os.W_OK):
        return base / "moestats"
    return Path(tempfile.gettempdir()) / f"moestats-{os.getuid()}"


def private_dir(path: Path) -> Path:
    """Create `path` (0700) if needed and refuse it unless it is a real folder of this user that
    nobody else may write to."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    problem = None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is a symlink or not a folder"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}, not to this user ({os.getuid()})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = "is writable by other users"
    if problem:
        raise ConfigurationError(
            f"rate-limit state folder {path} {problem}; refusing to keep state there. Remove it, "
            f"or point {STATE_DIR_ENV} (or the resource's limiter_dir) at a private folder"
        )
    return path


class SlidingWindowLimiter:
    """At most `limit` calls in any `window_seconds` window.

    A call is timed when it is sent, and timed again when its answer is in (`settle`): the
    server times it when it arrives, somewhere between the two, and a call delayed on its way
    (a loaded machine, a slow network) while the one `limit` places after it was not would make
    the server's window look fuller than ours — a 429 although we kept count. Counting a call
    from its answer is never early; `margin_seconds` widens the window a little more.
    A pause (the server said "wait") never lasts more than `max_pause_seconds`, however long it
    was asked for, and expires by itself: state left by another run cannot stall this one.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        margin_seconds: float | None = None,
        state_file: str | os.PathLike[str] | None = None,
        max_pause_seconds: float | None = None,
        store: Any = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 call per window, got {limit}")
        self.limit = limit
        self.window = float(window_seconds)
        self.margin = margin_seconds if margin_seconds is not None else min(0.25, self.window * 0.1)
        self.max_pause = max_pause_seconds if max_pause_seconds is not None else 2 * self.window
        self.store = store  # shared state elsewhere (PostgresWindowStore): wins over state_file
        self.state_file = Path(state_file) if state_file and store is None else None
        if self.state_file:
            private_dir(self.state_file.parent)
        self._memory: dict[str, Any] = {"sent": [], "paused_until": 0.0}
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The window, locked against other threads, and against other processes (a state
        file) or other hosts (a PostgreSQL row) when it is shared."""
        with self._lock:
            if self.store is not None:
                with self.store.locked() as raw:
                    state = self._sane(raw)
                    yield state
                    raw.clear()
                    raw.update(state)
                return
            if self.state_file is None:
                self._memory = self._sane(self._memory)
                yield self._memory
                return
            fd = _open_private(self.state_file)
            with os.fdopen(fd, "r+", encoding="utf-8") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    text = fh.read(1 << 20)
                    try:
                        state = json.loads(text) if text else {}
                    except ValueError:
                        state = {}  # a torn file from a killed process: start a fresh window
                    state = self._sane(state)
                    yield state
                    fh.seek(0)
                    fh.truncate()
                    fh.write(json.dumps(state))
                    fh.flush()
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _sane(self, state: Any) -> dict[str, Any]:
        """State as it may be trusted: at most `limit` send times, none in the future, and a
        pause no longer than `max_pause` from now."""
        now = time.time()
        state = state if isinstance(state, dict) else {}
        sent = state.get("sent") if isinstance(state.get("sent"), list) else []
        sent = sorted(t for t in sent if isinstance(t, int | float) and t <= now + 1)[-self.limit :]
        paused = state.get("paused_until")
        paused = (
            min(float(paused), now + self.max_pause) if isinstance(paused, int | float) else 0.0
        )
        return {"sent": sent, "paused_until": paused}

    def acquire(
        self,
        cancel: threading.Event | None = None,
        on_wait: Callable[[float, str], None] | None = None,
    ) -> float:
        """Block until one more call fits in the window, then count it as sent now; returns
        the time it was counted at (for `settle`).

        `cancel` ends the wait at once (raises `CancelledError`); `on_wait(seconds, reason)` is
        told before each wait, so a long one can be shown to people.
        """
        start = time.time()
        while True:
            with self._state() as state:
                now = time.time()
                horizon = now - self.window - self.margin
                sent = [t for t in state["sent"] if t > horizon]
                wait = state["paused_until"] - now
                reason = "paused"
                if len(sent) >= self.limit and sent[-self.limit] - horizon > wait:
                    wait, reason = sent[-self.limit] - horizon, "window"
                if wait <= 0:
                    sent.append(now)
                state["sent"] = sent
            if wait <= 0:
                self.waited_seconds += now - start
                return now
            if on_wait:
                on_wait(wait, reason)
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                raise CancelledError("stopped while waiting for the rate window")

    def settle(self, sent_at: float) -> None:
        """The call counted at `sent_at` has its answer (or failed): count it from now."""
        with self._state() as state:
            sent = state["sent"]
            if sent_at in sent:  # gone if the window has moved past it: nothing to do
                sent[sent.index(sent_at)] = time.time()
                sent.sort()

    def is_full(self) -> bool:
        """True when the next call would have to wait for the window."""
        with self._state() as state:
            horizon = time.time() - self.window - self.margin
            return sum(1 for t in state["sent"] if t > horizon) >= self.limit

    def pause_for(self, seconds: float) -> float:
        """Hold every caller back for `seconds`, capped at `max_pause`; returns the pause taken."""
        seconds = max(0.0, min(seconds, self.max_pause))
        with self._state() as state:
            state["paused_until"] = max(state["paused_until"], time.time() + seconds)
        return seconds


def _open_private(path: Path) -> int:
    """Open (create 0600) the state file without following a symlink planted in its place."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigurationError(
                f"rate-limit state file {path} is a symlink; refusing to follow it. Remove it "
                "(someone else may have planted it) and re-run"
            ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise ConfigurationError(
            f"rate-limit state file {path} is not a regular file of this user; remove it"
        )
    return fd
