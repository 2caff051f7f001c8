"""`moestats lake upgrade`: a lake of DuckLake format 0.3 (DuckDB 1.4) moved to 1.0 (DuckDB 1.5).

DuckDB 1.5 opens an older catalog only by migrating it, in place and one way
(`AUTOMATIC_MIGRATION`). So the live catalog is never migrated where it stands:

1. the old catalog's own row counts are read (`ducklake_table_stats`, with SQLite or PostgreSQL
   directly: no DuckDB can read format 0.3 any more);
2. a copy is made and migrated — SQLite: a file beside the catalog; PostgreSQL: the DuckLake
   tables copied into a schema of their own — and every table's rows are counted and its key
   columns checksummed through DuckDB 1.5; counts that differ from step 1 stop the upgrade;
3. the copy takes the catalog's place in one atomic step — SQLite: a rename over the file, the
   old one kept beside it as the backup; PostgreSQL: one transaction moves the old tables into a
   backup schema and the migrated ones into theirs;
4. the lake is opened as any run opens it and counted and checksummed again: the same figures.

Killed before step 3, the lake is as it was (the copy is thrown away by the next attempt); after
it, upgraded. The data files are not touched: only the catalog changes. No library does this.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from moestats_dagster.lakehouse.engine import connection_config
from moestats_dagster.lakehouse.lake import (
    LAKE,
    OLD_FORMATS,
    WRITES_FORMAT,
    Lake,
    catalog_format,
    connect,
    sql_string,
    too_new,
)
from moestats_dagster.lakehouse.lake_locks import PostgresUnavailable, WarehouseBusy, upgrade_locks
from moestats_dagster.model.schemas import SCHEMA, TABLES, quote_ident

WAIT_SECONDS = 60.0  # how long the upgrade waits for publishes and maintenance to finish
WORK_SUFFIX = ".upgrading"  # the SQLite copy being migrated
WORK_SCHEMA = "moestats_upgrading"  # the PostgreSQL schema being migrated
BACKUP_PREFIX = "moestats_backup_format_"


class UpgradeError(RuntimeError):
    """The upgrade stopped; the message says in which state it left the lake."""


@dataclass
class Census:
    """Rows and a checksum of the key columns, per table."""

    tables: dict[str, tuple[int, str]] = field(default_factory=dict)

    def rows(self) -> dict[str, int]:
        return {name: rows for name, (rows, _) in self.tables.items()}


@dataclass
class Upgraded:
    lake: str
    from_format: str | None
    to_format: str | None
    backup: str | None
    census: Census

    def lines(self) -> list[str]:
        if self.from_format == self.to_format:
            return [f"{self.lake}: DuckLake format {self.to_format}, nothing to do"]
        out = [f"{self.lake}: DuckLake format {self.from_format} -> {self.to_format}",
               f"backup of the old catalog: {self.backup}"]  # fmt: skip
        for name, (rows, checksum) in sorted(self.census.tables.items()):
            out.append(f"  moestats.{name}: {rows:,} rows, key checksum {checksum} (equal)")
        return out


def census(conn: duckdb.DuckDBPyConnection, catalog: str = LAKE) -> Census:
    """Every table's rows and an order-free checksum of its key columns (the sum of each row's
    md5 as a number: the same in any DuckDB, in any row order)."""
    found = Census()
    present = {r[0] for r in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
        [catalog, SCHEMA]).fetchall()}  # fmt: skip
    for table in TABLES.values():
        if table.name not in present:
            continue
        keys = ", ".join(f"CAST({quote_ident(k)} AS VARCHAR)" for k in table.keys)
        rows, checksum = conn.execute(
            f"SELECT count(*), CAST(coalesce(sum(md5_number_lower(concat_ws('|', {keys}))"
            f"::HUGEINT), 0) AS VARCHAR) FROM {table.in_catalog(catalog)}"
        ).fetchone()
        found.tables[table.name] = (int(rows), checksum)
    return found


def old_row_counts(lake: Lake, schema: str = "public") -> dict[str, int]:
    """The live row count of each table as the old catalog itself records it."""
    query = (
        "SELECT t.table_name, s.record_count FROM {s}ducklake_table_stats s "
        "JOIN {s}ducklake_table t ON t.table_id = s.table_id "
        "JOIN {s}ducklake_schema c ON c.schema_id = t.schema_id "
        "WHERE t.end_snapshot IS NULL AND c.end_snapshot IS NULL AND c.schema_name = "
    )
    if lake.kind == "sqlite":
        uri = f"file:{lake.catalog_at}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(query.format(s="") + "?", [SCHEMA]).fetchall()
    else:
        import psycopg

        with psycopg.connect(lake.catalog_at, connect_timeout=10) as db:
            rows = db.execute(query.format(s=f"{schema}.") + "%s", [SCHEMA]).fetchall()
    return {name: int(count) for name, count in rows if name in TABLES}


def upgrade(
    lake: Lake, say: Callable[[str], None] = print, wait_seconds: float = WAIT_SECONDS
) -> Upgraded:
    """Move the lake's catalog to the format this DuckDB writes (see the module docstring),
    holding the lake's locks from the first count to the swap, so nothing commits to the old
    catalog in between: waited for at most `wait_seconds`, then refused naming who holds them."""
    found = catalog_format(lake)
    if found is None:
        raise UpgradeError(f"no lake at {lake.describe()}: nothing to upgrade")
    if found != WRITES_FORMAT and found not in OLD_FORMATS:  # before anything is written
        raise UpgradeError(str(too_new(lake, found)))
    if found == WRITES_FORMAT:
        if lake.kind == "sqlite" and Path(lake.catalog_at + WORK_SUFFIX).exists():
            Path(lake.catalog_at + WORK_SUFFIX).unlink()
        with contextlib.closing(connect(lake, read_only=True)) as conn:
            done = census(conn)
        return Upgraded(lake.describe(), found, found, None, done)
    say(f"{lake.describe()}: DuckLake format {found}; upgrading to {WRITES_FORMAT}")
    try:
        with upgrade_locks(lake.kind, lake.catalog_at, wait_seconds):
            say("holding the lake's locks: no publish or maintenance until the swap")
            expected = old_row_counts(lake)
            if lake.kind == "sqlite":
                backup, migrated = _upgrade_sqlite(lake, found, expected, say)
            else:
                backup, migrated = _upgrade_postgres(lake, found, expected, say)
    except (WarehouseBusy, PostgresUnavailable) as exc:
        raise UpgradeError(
            f"{exc}. The upgrade needs the lake to itself; the lake is as it was (nothing was "
            "copied or swapped). Stop the schedule, sensors and runs (or wait for them), then "
            "run it again"
        ) from None
    with contextlib.closing(connect(lake, read_only=True)) as conn:
        after = census(conn)
    if after.tables != migrated.tables:
        raise UpgradeError(
            f"{lake.describe()} is upgraded (format {catalog_format(lake)}), but reading it back "
            f"gave {after.tables}, not {migrated.tables} as the migrated copy did. Restore the "
            f"backup ({backup}) as docs/warehouse.md says and report this"
        )
    return Upgraded(lake.describe(), found, catalog_format(lake), backup, after)


def _migrated_census(conn: duckdb.DuckDBPyConnection, expected: dict[str, int]) -> Census:
    """The copy's census, which must hold every table of the old catalog with its rows. A table
    that never held a row has no stats row in a 0.3 catalog: 0 expected (facts.md)."""
    counted = census(conn)
    wanted = {name: expected.get(name, 0) for name in counted.rows()}
    if counted.rows() != wanted or not set(expected) <= set(counted.rows()):
        raise UpgradeError(
            f"the migrated copy counts {counted.rows()} rows but the old catalog records "
            f"{expected}; the lake is as it was (nothing was swapped). Report this with the "
            "two figures"
        )
    return counted


def _attach(conn: duckdb.DuckDBPyConnection, catalog: str, data_path: str, *extra: str) -> None:
    conn.execute("LOAD ducklake")
    conn.execute("LOAD sqlite" if catalog.startswith("sqlite:") else "LOAD postgres")
    options = [f"DATA_PATH {sql_string(data_path)}", "AUTOMATIC_MIGRATION true",
               "OVERRIDE_DATA_PATH true", *extra]  # fmt: skip
    conn.execute(f"ATTACH {sql_string('ducklake:' + catalog)} AS {LAKE} ({', '.join(options)})")


def _record_data_path(conn: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """The migrated copy records where the files are now (a lake restored elsewhere to be
    upgraded keeps working where it is)."""
    conn.execute(
        f"UPDATE __ducklake_metadata_{LAKE}.ducklake_metadata SET value = ? "
        "WHERE key = 'data_path' AND scope IS NULL",
        [lake.data_path],
    )


def _upgrade_sqlite(
    lake: Lake, found: str, expected: dict[str, int], say: Callable[[str], None]
) -> tuple[str, Census]:
    live = Path(lake.catalog_at)
    work = live.with_name(live.name + WORK_SUFFIX)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = live.with_name(f"{live.name}.format-{found}.{stamp}.bak")
    if work.exists():
        say(f"an earlier upgrade stopped before its swap: the lake was left as it was; "
            f"{work.name} is made again")  # fmt: skip
        work.unlink()
    with contextlib.closing(sqlite3.connect(live, timeout=30)) as db:
        for copy in (backup, work):  # SQLite's online backup: a consistent copy, WAL included
            with contextlib.closing(sqlite3.connect(copy)) as target:
                db.backup(target)
    say(f"backed up the catalog to {backup}")
    try:
        conn = duckdb.connect(":memory:", config=connection_config())
        try:
            _attach(conn, f"sqlite:{work}", lake.data_path)
            migrated = _migrated_census(conn, expected)
            _record_data_path(conn, lake)
        finally:
            conn.close()
        with contextlib.closing(sqlite3.connect(work)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for side in ("-wal", "-shm"):
            Path(str(live) + side).unlink(missing_ok=True)  # the old file's, checkpointed above
        os.replace(work, live)  # the swap: one rename
    except BaseException:
        with contextlib.suppress(OSError):
            work.unlink()
        raise
    say(f"migrated and swapped in: {live}")
    return str(backup), migrated


def _upgrade_postgres(
    lake: Lake, found: str, expected: dict[str, int], say: Callable[[str], None]
) -> tuple[str, Census]:
    import psycopg
    from psycopg import sql

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    backup = f"{BACKUP_PREFIX}{re.sub(r'[^0-9a-z]', '_', found)}_{stamp}"
    with psycopg.connect(lake.catalog_at, connect_timeout=10, autocommit=True) as db:
        tables = [r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name LIKE 'ducklake%' ORDER BY 1").fetchall()]  # fmt: skip
        work = sql.Identifier(WORK_SCHEMA)
        with db.transaction():
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(work))
            db.execute(sql.SQL("CREATE SCHEMA {}").format(work))
            for name in tables:
                table = sql.Identifier(name)
                db.execute(sql.SQL("CREATE TABLE {}.{} (LIKE public.{} INCLUDING ALL)")
                           .format(work, table, table))  # fmt: skip
                db.execute(sql.SQL("INSERT INTO {}.{} SELECT * FROM public.{}")
                           .format(work, table, table))  # fmt: skip
    say(f"copied the catalog's {len(tables)} tables into schema {WORK_SCHEMA}")
    conn = duckdb.connect(":memory:", config=connection_config())
    try:
        _attach(conn, f"postgres:{lake.catalog_at}", lake.data_path,
                f"METADATA_SCHEMA {sql_string(WORK_SCHEMA)}")  # fmt: skip
        migrated = _migrated_census(conn, expected)
        _record_data_path(conn, lake)
    finally:
        conn.close()
    with psycopg.connect(lake.catalog_at, connect_timeout=10, autocommit=True) as db:
        migrated_tables = [r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY 1", [WORK_SCHEMA]).fetchall()]  # fmt: skip
        with db.transaction():  # the swap: one transaction
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(backup)))
            for name in tables:
                db.execute(sql.SQL("ALTER TABLE public.{} SET SCHEMA {}")
                           .format(sql.Identifier(name), sql.Identifier(backup)))  # fmt: skip
            for name in migrated_tables:
                db.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA public")
                           .format(sql.Identifier(WORK_SCHEMA), sql.Identifier(name)))  # fmt: skip
            db.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(WORK_SCHEMA)))
    say(f"migrated and swapped in; the old catalog's tables are in schema {backup}")
    return f"PostgreSQL schema {backup}", migrated
