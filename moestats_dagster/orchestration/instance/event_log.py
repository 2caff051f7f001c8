"""Dagster's SQLite event log, each database's SQLAlchemy engine and connection kept.

The local instance (the repository's dagster.yaml) keeps a run's events in a SQLite file of its
own and mirrors asset events in an index file. Dagster's SqliteEventLogStorage creates a new
SQLAlchemy engine, and so a new SQLite connection, for every connection it asks for: every event
(a history day writes 29: five materializations, 24 check results) pays for creating 2-4 engines,
compiling its statements again (the compiled-statement cache lives in the engine), opening and
closing the files (SQLite reads a file's schema again on every new connection), plus a reflection
of the index file to learn whether it holds the asset-check table: more than half of a
history run's event recording (docs/benchmarks.md, "Measurements behind the code"). No setting
of Dagster or SQLAlchemy changes that, hence this subclass of two methods: an engine per database file, kept with one pooled connection (an idle SQLite
connection holds the file open but no lock: the pool rolls back what it is given back, so other
processes write as before), and the asset-check table's presence remembered once seen. The
files, their schema and every query are Dagster's own; the production profile (PostgreSQL) does
not use this class.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine

# A daemon reads many runs' files; a run writes its own and the index: the engines of the last
# few dozen files are kept, each with one open SQLite connection (32 open databases at most).
KEPT_ENGINES = 32
# Dagster uses a file's connection under its own lock, one at a time; has_table may ask for a
# second meanwhile. More than that waits (at most SQLAlchemy's 30 s) instead of opening more.
POOLED, OVERFLOW = 1, 2


class KeptEngineSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SqliteEventLogStorage (same files, same schema), an engine kept per file.

    In dagster.yaml::

        event_log_storage:
          module: moestats_dagster.orchestration.instance.event_log
          class: KeptEngineSqliteEventLogStorage
          config:
            dagster_home:
              env: DAGSTER_HOME

    The files go where Dagster's default storage keeps them, $DAGSTER_HOME/history/runs (or in
    `base_dir`, as Dagster's own class takes it).
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        # the cache's own lock: Dagster holds _db_lock through a whole connection, inside which
        # it may ask has_table
        self._engines_lock = threading.Lock()
        self._tables_seen: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls):
        return {
            "base_dir": Field(StringSource, is_required=False),
            "dagster_home": Field(StringSource, is_required=False),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        base_dir = config_value.get("base_dir")
        if not base_dir:
            home = config_value.get("dagster_home")
            if not home:
                raise ValueError(
                    "KeptEngineSqliteEventLogStorage: give `dagster_home: {env: DAGSTER_HOME}` "
                    "(or `base_dir`) in its config in dagster.yaml"
                )
            base_dir = os.path.join(home, "history", "runs")
        return cls(base_dir=base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    pool_size=POOLED,
                    max_overflow=OVERFLOW,
                    # used by whichever thread holds Dagster's lock
                    connect_args={
                        "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                        "check_same_thread": False,
                    },
                )
            self._engines[shard] = engine  # the most recently used last
            while len(self._engines) > KEPT_ENGINES:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    def _drop_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's _connect, the engine kept: same lock, same first-use initialisation, one
        # transaction per connection.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Asked before every asset-check event; a table, once there, stays (migrations only add).
        if table_name in self._tables_seen:
            return True
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            present = bool(engine.dialect.has_table(conn, table_name))
        if present:
            self._tables_seen.add(table_name)
        return present

    def wipe(self) -> None:
        # the files go: so do the engines and what was seen in them
        self._drop_engines()
        self._tables_seen.clear()
        super().wipe()

    def dispose(self) -> None:
        self._drop_engines()
        super().dispose()
