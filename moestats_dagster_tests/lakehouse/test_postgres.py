"""The production profile against a real PostgreSQL server: shared rate windows, the lake's
catalog, the Dagster instance, and two "hosts" running one workspace at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moestats_dagster.lakehouse.lake import Lake, connect
from moestats_dagster.lakehouse.warehouse import connection, read_slice, replace_slices
from moestats_dagster.model.schemas import FAILURE_BREAKDOWN
from moestats_dagster.moengage import StatsClient
from moestats_dagster.moengage.pgstate import PostgresWindowStore
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import (
    ALPHA_KEY,
    MULTI_PAGE_DAY,
    fresh_database,
    s3_environment,
)
from moestats_dagster_tests.racers import (
    DAY,
    failures,
    first_writes_at_once,
    publishes_of_one_new_day_at_once,
)

ROOT = Path(__file__).resolve().parents[2]
LIMITED = [SandboxWorkspace("WS_ALPHA", ALPHA_KEY, rate_limit=12)]

FETCH = """
import datetime as dt, sys
from moestats_dagster.moengage import StatsClient
from moestats_dagster.moengage.pgstate import PostgresWindowStore
url, base, day = sys.argv[1], sys.argv[2], dt.date.fromisoformat(sys.argv[3])
client = StatsClient(workspace_id="WS_ALPHA", api_key="sandbox-key-alpha", base_url=base,
                     rate_limit_per_minute=12, window_seconds=3.0,
                     limiter_store=PostgresWindowStore(url, "stats-ws-alpha"))
days = client.fetch_days(stat_date=day, combinations=[("TOTAL", "IN_SESSION"),
                                                      ("UNIQUE", "IN_SESSION")])
print(sum(len(d.campaigns) for d in days), client.counters.throttled, flush=True)
"""


def test_processes_share_a_rate_window_through_postgres(make_sandbox, postgres_url):
    # A 3 s window: the limiter's margin is 10 % of it, and a loaded CI machine can delay a call
    # by more than the 0.1 s a 1 s window would leave.
    server = make_sandbox(workspaces=LIMITED, window_seconds=3.0)
    procs = [
        subprocess.Popen([sys.executable, "-c", FETCH, postgres_url, server.url,
                          MULTI_PAGE_DAY.isoformat()], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    campaigns = len(campaigns_on("WS_ALPHA", MULTI_PAGE_DAY))
    assert [int(o[0]) for o in outs] == [2 * campaigns] * 3
    assert server.app.statuses() == {200: 3 * 2 * -(-campaigns // 10)}  # 0 x 429 at the server


def test_a_pause_in_the_shared_window_is_capped_and_expires(postgres_url):
    store = PostgresWindowStore(postgres_url, "stats-planted")
    with store.locked() as state:
        state["paused_until"] = 4_000_000_000.0  # a planted pause of decades
    client = StatsClient(workspace_id="WS_ALPHA", api_key="k", base_url="http://127.0.0.1:9",
                         window_seconds=1.0, limiter_store=store)  # fmt: skip
    waits: list[float] = []
    client._transport.limiter.acquire(on_wait=lambda s, why: waits.append(s))
    assert waits and max(waits) <= 2.0
    store.close()
    assert "password" not in repr(store) and postgres_url not in repr(store)


def test_the_lake_catalog_in_postgres_takes_writers_and_readers(tmp_path, postgres_url):
    lake = Lake.at(tmp_path / "lake", postgres_url)
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(1, 2)}, workspace_id="W", stat_date=DAY)
    reader = connect(lake, read_only=True)
    with connection(lake) as conn:  # a writer while the reader stays open
        replace_slices(conn, {"failure_breakdown": failures(3)}, workspace_id="W", stat_date=DAY)
    counts = reader.execute("SELECT list(count) FROM moestats.failure_breakdown").fetchall()
    assert counts == [([3],)]
    reader.close()
    assert not (tmp_path / "lake" / "catalog.sqlite").exists()  # the catalog is in PostgreSQL


def test_first_writers_on_several_hosts_racing_to_create_the_catalog_all_succeed(
    tmp_path, postgres_server
):
    # Before: one trial in two lost PostgreSQL's "duplicate key value" creating DuckLake's tables
    # or DuckLake's "failed to parse catalog entry" committing ours beside another host's.
    with contextlib.ExitStack() as stack:
        lakes = [
            Lake.at(tmp_path / f"lake{trial}", stack.enter_context(fresh_database(postgres_server)))
            for trial in range(3)
        ]  # a new catalog per trial
        assert first_writes_at_once(lakes) == [["ok"] * 6] * 3
        for lake in lakes:
            with connection(lake) as conn:
                assert read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY).empty


def test_hosts_racing_to_publish_one_new_day_write_every_row_once(tmp_path, postgres_server):
    # Before: DuckLake let two transactions that each deleted an empty slice and appended one
    # both commit — the day held every row two, three or four times.
    with contextlib.ExitStack() as stack:
        lakes = [
            Lake.at(tmp_path / f"lake{trial}", stack.enter_context(fresh_database(postgres_server)))
            for trial in range(3)
        ]
        assert publishes_of_one_new_day_at_once(lakes) == [["ok"] * 4] * 3
        for trial, lake in enumerate(lakes):
            with connection(lake) as conn:
                frame = read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
            assert frame["count"].tolist() == [5, 6], f"trial {trial}"


HOST = """
import datetime as dt, sys
from dagster import DagsterInstance, materialize
from moestats_dagster.definitions import defs
from moestats_dagster.orchestration.lib.partitions import partition_key
assets = [a for a in defs.assets if any(k.path[-1] == "campaign_stats_raw" for k in a.keys)]
instance = DagsterInstance.get()
for day in sys.argv[1:]:
    result = materialize(assets, partition_key=partition_key(dt.date.fromisoformat(day), "WS_ALPHA"),
                         resources=defs.resources, instance=instance)
    assert result.success
print("ok", flush=True)
"""


def errors(out: tuple[str, str]) -> str:
    """The distinct error lines of a host's stderr: a traceback whole would be cut by pytest."""
    lines = [line.strip() for line in out[1].splitlines() if "Error: " in line]
    return "\n".join(dict.fromkeys(lines)) or out[1][-500:]


def test_two_hosts_on_one_workspace_share_its_limit_and_write_every_row_once(
    make_sandbox, tmp_path, postgres_url, bucket
):
    server = make_sandbox(workspaces=LIMITED, window_seconds=3.0)
    workspaces = tmp_path / "workspaces.yaml"
    workspaces.write_text(
        'start_date: "2024-01-01"\nworkspaces:\n'
        f'  - id: WS_ALPHA\n    base_url: "{server.url}"\n    api_key_env: KEY_ALPHA\n'
        "    rate_limit_per_minute: 12\n    metric_types: [TOTAL]\n"
        "    attribution_types: [IN_SESSION, VIEW_THROUGH]\n"
    )
    # The production profile: the hosts share nothing but PostgreSQL (the Dagster instance, the
    # lake's catalog, the rate window) and the bucket of the lake's files.
    shared_lake = bucket.url("shared-lake")
    days = [MULTI_PAGE_DAY + dt.timedelta(days=n) for n in range(4)]
    hosts = []
    # Overlapping days: both hosts publish days[1] and days[2] (before: twice the rows there).
    for n, host_days in enumerate((days[:3], days[1:])):
        home = tmp_path / f"host{n}" / "dagster_home"
        home.mkdir(parents=True)
        shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "MOESTATS_STATE_DIR": str(tmp_path / f"host{n}" / "state"),  # nothing shared on disk
            "MOESTATS_POSTGRES_URL": postgres_url,
            "MOESTATS_LAKE_PATH": str(shared_lake),
            "MOESTATS_WORKSPACES_FILE": str(workspaces),
            "MOESTATS_RATE_WINDOW_SECONDS": "3",
            "KEY_ALPHA": ALPHA_KEY,
            **s3_environment(bucket.endpoint),
        }
        if n == 0:  # the instance's tables are created once, as `dagster instance migrate` would
            subprocess.run([sys.executable, "-c", "from dagster import DagsterInstance; "
                            "DagsterInstance.get()"], env=env, check=True, timeout=120)  # fmt: skip
        hosts.append(
            subprocess.Popen([sys.executable, "-c", HOST, *map(str, host_days)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )  # fmt: skip
    outs = [h.communicate(timeout=300) for h in hosts]
    assert [o[0].strip() for o in outs] == ["ok", "ok"], "\n".join(map(errors, outs))
    assert 429 not in server.app.statuses()  # one limit, two hosts: shared, never exceeded
    lake = Lake.at(shared_lake, postgres_url)
    reader = connect(lake, read_only=True)
    raw = reader.execute(
        "SELECT stat_date, count(*) AS n, count(DISTINCT (attribution_type, campaign_id)) AS d "
        "FROM moestats.campaign_stats_raw GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    reader.close()
    expected = {d: 2 * len(campaigns_on("WS_ALPHA", d)) for d in days}
    assert {r[0]: r[1] for r in raw} == {d: n for d, n in expected.items() if n}
    assert all(r[1] == r[2] for r in raw)  # every row once
    import psycopg

    with psycopg.connect(postgres_url) as pg:  # both hosts' runs are in one Dagster instance
        [(runs,)] = pg.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchall()
    assert runs == 6
    assert bucket.keys("shared-lake/files/moestats/campaign_stats_raw/")
    assert not [*tmp_path.rglob("*.parquet"), *tmp_path.rglob("*.sqlite")]  # nothing on disk


def test_postgres_out_of_reach_is_named_by_host_and_database_never_the_password(tmp_path):
    # Before: psycopg's or DuckDB's bare connection error (or Dagster's "too many retries").
    from moestats_dagster.lakehouse.lake import PostgresUnavailable
    from moestats_dagster.moengage import MoEngageError
    from moestats_dagster_tests.moengage.test_hostile_upstream import closed_port

    port = closed_port()
    url = f"postgresql://moestats:s3cret-pw@127.0.0.1:{port}/moestats_db"
    store = PostgresWindowStore(url, "stats-x", connect_timeout=2)
    client = StatsClient(workspace_id="WS_ALPHA", api_key="k", base_url="http://127.0.0.1:9",
                         window_seconds=1.0, limiter_store=store)  # fmt: skip
    with pytest.raises(MoEngageError) as window:
        client.fetch_day(stat_date=DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    with pytest.raises(PostgresUnavailable) as catalog, connection(Lake.at(tmp_path / "l", url)):
        pass
    for error, what in ((window.value, "shared rate window"), (catalog.value, "lake's catalog")):
        message = str(error)
        assert what in message and f"127.0.0.1:{port}/moestats_db" in message
        assert "s3cret-pw" not in message and "MOESTATS_POSTGRES_URL" in message


def test_a_rate_window_connection_dropped_by_the_server_is_made_again(postgres_url):
    import psycopg

    store = PostgresWindowStore(postgres_url, "stats-dropped")
    with store.locked() as state:
        state["sent"] = [1.0]
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # a restart or a failover
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip
    with store.locked() as state:
        assert state["sent"] == [1.0]
    store.close()
