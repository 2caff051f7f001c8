"""A rate window shared by every host, in one PostgreSQL row per workspace and endpoint.

With runs on several machines, the per-user state file of one host no longer sees the calls of the
others. The window then lives in PostgreSQL: `SELECT … FOR UPDATE` serializes the read-modify-
write of one workspace's window across hosts, exactly as the file lock does on one host. A small
table with row locks rather than pyrate-limiter's PostgreSQL bucket: our limiter's measured
97-98 % of the limit with 0 x 429 comes from its sliding window with a send-time margin and from
honouring the server's pauses (429s, x-ratelimit-reset); a bucket would replace that logic, not
just its storage, and would have to be measured again for the same bar.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from moestats_dagster.moengage.errors import SharedStateUnavailable
from moestats_dagster.postgres import (  # noqa: F401 (re-exported: older imports)
    describe_postgres,
    scrub_postgres,
    unreachable_text,
)

TABLE = "moestats_rate_windows"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, state jsonb NOT NULL, "
    "updated_at timestamptz NOT NULL DEFAULT now())"
)


class PostgresWindowStore:
    """One window's state, locked for the length of a `with locked()` block."""

    def __init__(self, url: str, key: str, connect_timeout: float = 10.0) -> None:
        self.url, self.key, self.connect_timeout = url, key, connect_timeout
        self._conn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresWindowStore(key={self.key!r})"  # the URL may hold a password

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.url, connect_timeout=int(self.connect_timeout))
                with self._conn.transaction():
                    # Two hosts creating the table at once collide in PostgreSQL's catalog even
                    # with IF NOT EXISTS; a transaction-scoped advisory lock makes them take turns.
                    self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
                    self._conn.execute(_DDL)
            except psycopg.OperationalError as exc:
                self._conn = None
                raise self._unavailable(exc) from None
        return self._conn

    def _unavailable(self, exc: BaseException) -> SharedStateUnavailable:
        return SharedStateUnavailable(
            unreachable_text(f"the shared rate window ({self.key})", self.url, exc,
                             "no call was sent")
        )  # fmt: skip

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        import psycopg

        with self._lock, contextlib.ExitStack() as stack:
            for attempt in (1, 2):  # a connection the server dropped (restart, failover): again
                conn = self._connection()
                tx = stack.enter_context(contextlib.ExitStack())
                try:
                    tx.enter_context(conn.transaction())
                    conn.execute(
                        f"INSERT INTO {TABLE} (key, state) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO NOTHING",
                        (self.key, json.dumps({"sent": [], "paused_until": 0.0})),
                    )
                    row = conn.execute(
                        f"SELECT state FROM {TABLE} WHERE key = %s FOR UPDATE", (self.key,)
                    ).fetchone()
                    break
                except psycopg.OperationalError as exc:
                    self._conn = None
                    with contextlib.suppress(psycopg.Error):
                        tx.close()
                    conn.close()  # never raises; a second attempt gets a new connection
                    if attempt == 2:
                        raise self._unavailable(exc) from None
            state = dict(row[0]) if row and isinstance(row[0], dict) else {}
            try:
                yield state
                conn.execute(
                    f"UPDATE {TABLE} SET state = %s, updated_at = now() WHERE key = %s",
                    (json.dumps(state), self.key),
                )
                tx.close()  # commits
            except psycopg.OperationalError as exc:
                self._conn = None  # reconnect on the next call
                raise self._unavailable(exc) from None
            except BaseException:
                if conn.closed or conn.broken:
                    self._conn = None
                raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
