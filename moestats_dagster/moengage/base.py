"""What every endpoint's client shares: one Transport, a context manager, the counters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from moestats_dagster.moengage.transport import CallCounters, Transport


class ApiClient:
    """What every endpoint's client shares: one Transport, a context manager, the counters."""

    API_NAME = "the Stats API"
    FORBIDDEN_FIX = (
        "ask MoEngage (support or your CSM) to enable the Stats API for this workspace; "
        "until then every run of it fails the same way"
    )

    UNAUTHORIZED_FIX: str | None = None  # None: the Campaign report key's wording
    IDEMPOTENCY_KEYS = False  # v5 APIs want a fresh Idempotency-Key per request

    def __init__(self, *, max_workers: int = 8, **transport_options: Any) -> None:
        transport_options.setdefault("api_name", self.API_NAME)
        transport_options.setdefault("forbidden_fix", self.FORBIDDEN_FIX)
        transport_options.setdefault("unauthorized_fix", self.UNAUTHORIZED_FIX)
        transport_options.setdefault("idempotency_keys", self.IDEMPOTENCY_KEYS)
        self._transport = Transport(pool_size=max_workers, **transport_options)
        self.workspace_id = self._transport.workspace_id
        self.base_url = self._transport.base_url
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace_id={self.workspace_id!r}, base_url={self.base_url!r})"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    @contextlib.contextmanager
    def _first_failure_stops_all(self) -> Iterator[None]:
        """Around work spread over threads: the first failure stops every other call of this
        client at once (waits end, in-flight calls are cut), and it is what is raised — not a
        sibling's "stopped"."""
        try:
            yield
        except BaseException as exc:
            self._transport.cancel(exc)
            cause = self._transport.root_cause(exc)
            if cause is not exc:
                raise cause from None
            raise

    @property
    def counters(self) -> CallCounters:
        """Calls, pages, retries, 429s, seconds and campaigns since this client was made."""
        return self._transport.counters

    @property
    def rate_headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers of the last answer (empty if the server sends none)."""
        return self._transport.rate_headers
