"""The first permanent failure of a run stops every other call of it, at once."""

from __future__ import annotations

import threading
import weakref

from moestats_dagster.moengage.deadline import Deadline
from moestats_dagster.moengage.errors import CancelledError


class Stopper:
    """Shared by the threads of one client: `stop()` wakes every wait (they wait on `event`) and
    cuts every call in flight (by firing its deadline); the failure that stopped them is kept,
    so the run reports it rather than a sibling's "stopped"."""

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        self.event = threading.Event()
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._in_flight: weakref.WeakSet[Deadline] = weakref.WeakSet()

    def stop(self, failure: BaseException | None = None) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = failure
            in_flight = list(self._in_flight)
        self.event.set()
        for deadline in in_flight:
            deadline.fire()

    def track(self, deadline: Deadline) -> None:
        with self._lock:
            self._in_flight.add(deadline)
        if self.event.is_set():
            deadline.fire()

    def untrack(self, deadline: Deadline) -> None:
        with self._lock:
            self._in_flight.discard(deadline)

    def check(self) -> None:
        """Raise if the run was stopped."""
        if self.event.is_set():
            raise CancelledError(
                f"workspace {self.workspace_id}: call stopped because another call of this run "
                f"failed: {self.failure}"
            )

    def root_cause(self, exc: BaseException) -> BaseException:
        """The failure that stopped the run, for an error that only says "stopped"."""
        if isinstance(exc, CancelledError) and self.failure is not None:
            return self.failure
        return exc
