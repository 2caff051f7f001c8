"""The first history load through the UI's backfill path: wall time against the API floor,
CPU-seconds per partition, runs created.

The real path: a DAGSTER_HOME with the project's dagster.yaml (queued run coordinator, one run
per workspace at a time, 4 runs at once), a backfill record as the UI's "Launch backfill" writes
it, the daemon turning it into runs (the stats asset's backfill policy: up to
BACKFILL_DAYS_PER_RUN days of one workspace per run), each run a process of its own.

Workspaces of 20 campaigns a day (2 pages) with all 10 metric x attribution combinations: 20 calls
per day. The sandbox's rate window is scaled to 100 calls per 6 s (MoEngage: per 60 s), so the
API floor of one workspace is days x 20 / 100 x 6 s, and workspaces load in parallel.

CPU-seconds are the whole process tree's (the daemon, its code server and every run process,
sampled), divided by the partitions.

python -m benchmarks.run --only history        (MOESTATS_BENCH_HISTORY=45x1 for one figure,
MOESTATS_BENCH_LAUNCH=assets for the assets' backfill instead of the job's, MOESTATS_BENCH_WINDOW=60
for MoEngage's own window: MOESTATS_BENCH_HISTORY=15x10 MOESTATS_BENCH_WINDOW=60 shows ten
workspaces taking turns at the API's pace; MOESTATS_BENCH_PROFILE=production for the production
profile: deploy/dagster.postgres.yaml, the instance, the lake's catalog and the rate windows in a
new database of the server at MOESTATS_TEST_POSTGRES_URL, whose CPU is counted too;
MOESTATS_BENCH_FLOWS=30x5 gives each workspace 30 flows of 5 steps, found and named every day)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import yaml
from dagster import DagsterEventType, DagsterInstance, RunsFilter

from benchmarks import tiny
from moestats_dagster.operations.demo import LOCATION
from moestats_dagster.operations.launch import submit_backfill, submit_job_backfill
from moestats_dagster.orchestration.build import JOB_NAME
from moestats_dagster.sandbox import SandboxApp, SandboxServer, SandboxWorkspace

from .backfill import ROOT, STATS, daemon_project, start_daemon

START = dt.date(2025, 1, 1)
PER_DAY, LIMIT = 20, 100
# MoEngage's window is 60 s; 6 s by default makes the API ten times faster than it is, so that
# the load's CPU shows (MOESTATS_BENCH_WINDOW=60: MoEngage's own pace)
WINDOW = float(os.environ.get("MOESTATS_BENCH_WINDOW", "6"))
# local: the repository's dagster.yaml (SQLite instance and catalog); production: PostgreSQL
PROFILE = os.environ.get("MOESTATS_BENCH_PROFILE", "local")
PROFILE_FILE = {
    "local": ROOT / "dagster.yaml",
    "production": ROOT / "deploy" / "dagster.postgres.yaml",
}
RUNS_AT_ONCE = yaml.safe_load(PROFILE_FILE[PROFILE].read_text())["concurrency"]["runs"][
    "max_concurrent_runs"
]
SCENARIOS = {"45x1": (45, 1), "365x1": (365, 1), "90x10": (90, 10), "30x4": (30, 4),
             "15x10": (15, 10), "3x1": (3, 1)}  # fmt: skip
DEFAULT = "45x1,365x1,90x10"  # 30x4: four runs at once on 2 cores in ~3 minutes, for A/B
# job: backfills of the job moestats_daily, one per workspace (`moestats backfill`, the demo);
# assets: one backfill of the stats assets (the assets' page in the UI)
LAUNCH = os.environ.get("MOESTATS_BENCH_LAUNCH", "job")
# MOESTATS_BENCH_FLOWS=30x5: each workspace has 30 flows of 5 steps, found and named every day
FLOWS = os.environ.get("MOESTATS_BENCH_FLOWS", "")


class TreeCpu:
    """CPU-seconds of a process and all its descendants, the exited ones included: each
    process's user + system time as last seen (sampled every 0.5 s, so a process's last half
    second may be missed: an underestimate by at most that per process)."""

    def __init__(self, *pids: int) -> None:
        self.roots, self.seen, self.roles = [psutil.Process(p) for p in pids], {}, {}
        self.first_total = 0.0  # the tree's CPU at the first sample (a server's before the load)
        self.sampled = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(psutil.Error):
                for proc in [p for r in self.roots for p in (r, *r.children(recursive=True))]:
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        key = (proc.pid, proc.create_time())
                        if key not in self.roles:
                            self.roles[key] = _role(proc.cmdline())
                        self.seen[key] = times.user + times.system
            if not self.sampled.is_set():
                self.first_total = sum(self.seen.values())
                self.sampled.set()
            self.stop.wait(0.5)

    def total(self) -> float:
        self.stop.set()
        self.thread.join()
        return sum(self.seen.values())

    def by_role(self) -> dict[str, float]:
        """CPU-seconds per kind of process: the daemon, its code server, the run workers."""
        roles: Counter[str] = Counter()
        for key, seconds in self.seen.items():
            roles[self.roles[key]] += seconds
        return {role: round(seconds, 1) for role, seconds in sorted(roles.items())}


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    # a run worker is the code server's child, started by multiprocessing (spawn)
    for marker, role in (("multiprocessing", "run workers"), ("execute_run", "run workers"),
                         ("grpc", "code server"), ("code-server", "code server"),
                         ("dagster-daemon", "daemon")):  # fmt: skip
        if marker in text:
            return role
    return "other"


@contextlib.contextmanager
def _database() -> Iterator[tuple[str, int | None]]:
    """The production profile's database: a new one on the test server, dropped afterwards, and
    the server's main process (its CPU is the load's too) when it runs on this machine."""
    if PROFILE == "local":
        yield "", None
        return
    import psycopg2

    server = os.environ.get("MOESTATS_TEST_POSTGRES_URL", "")
    if not server:
        raise SystemExit("MOESTATS_BENCH_PROFILE=production needs MOESTATS_TEST_POSTGRES_URL "
                         "(scripts/with-postgres starts a server and sets it)")  # fmt: skip
    name = f"moestats_history_{os.getpid()}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    postmaster = None
    with contextlib.suppress(psutil.Error):
        postmaster = psutil.Process(backend).parent().pid
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}", postmaster
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def load(days: int, workspaces: int) -> dict:
    ids = [f"WS_H{n:02d}" for n in range(1, workspaces + 1)]
    flows, steps = (int(n) for n in (FLOWS or "0x0").split("x"))
    app = SandboxApp(
        [SandboxWorkspace(ws, f"key-{ws}", rate_limit=LIMIT, campaigns_per_day=PER_DAY,
                          v5_key="v5-bench", flows=flows, flow_steps=steps or None)
         for ws in ids],
        window_seconds=WINDOW,
    )  # fmt: skip
    os.environ["BENCH_V5_KEY"] = "v5-bench"
    extra = ["    campaigns_api_key_env: BENCH_V5_KEY"] if flows else []  # default: flows auto
    # ignore_cleanup_errors: a run process the daemon left may still be closing its log files
    with (
        SandboxServer(app) as server,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
        _database() as (postgres_url, postmaster),
    ):
        instance, defs, env = daemon_project(
            Path(tmp), server.url, {ws: f"key-{ws}" for ws in ids}, LIMIT, WINDOW, extra,
            start=START, postgres_url=postgres_url,
        )  # fmt: skip
        keys = [f"{START + dt.timedelta(days=n)}|{ws}" for n in range(days) for ws in ids]
        if LAUNCH == "assets":  # the assets' page in the UI: one backfill, Dagster groups runs
            submit_backfill(instance, defs, STATS, keys, title="history benchmark")
        else:  # the job's page, as `moestats backfill` launches it: a backfill per workspace
            for ws in ids:
                submit_job_backfill(instance, JOB_NAME, LOCATION,
                                    [k for k in keys if k.endswith(f"|{ws}")],
                                    title=f"history benchmark: {ws}")  # fmt: skip
        started = time.time()
        daemon = start_daemon(env)
        tree = TreeCpu(*(p.pid for p in daemon.processes))
        # the server's own work for this load: its CPU while the load runs (an idle server's is
        # nil; backends of other clients would count too, so run it on a quiet server)
        server_cpu = TreeCpu(postmaster) if postmaster else None
        raw_key = STATS[0]
        try:
            while True:
                records = instance.get_run_records(RunsFilter())
                done = len(instance.get_materialized_partitions(raw_key))
                if (
                    records
                    and all(r.dagster_run.is_finished for r in records)
                    and (done == len(keys) or time.time() - started > 60 and not _pending(instance))
                ):
                    break
                if time.time() - started > 3600:
                    raise TimeoutError("the history load did not finish in an hour")
                time.sleep(1)
        finally:
            cpu = tree.total()
            if server_cpu:
                pg_cpu = server_cpu.total() - server_cpu.first_total
                cpu += pg_cpu
            daemon.stop()
        wall = max(r.end_time for r in records) - started
        for record in records:  # a figure of failed runs is no figure: say why they failed
            if record.dagster_run.status.value == "FAILURE":
                failures = instance.all_logs(record.dagster_run.run_id,
                                             of_type=DagsterEventType.STEP_FAILURE)  # fmt: skip
                why = (
                    failures[0].dagster_event.event_specific_data.error.message if failures else "?"
                )
                print(f"  run {record.dagster_run.run_id[:8]} failed: {why[:600]}", flush=True)
        calls = max(sum(1 for c in app.calls if c.workspace_id == ws and c.status == 200)
                    for ws in ids)  # fmt: skip
        throttled = sum(1 for c in app.calls if c.status == 429)
    floor = calls / LIMIT * WINDOW
    # with more workspaces than runs at once, they take turns: the API floor of the whole load
    turns = math.ceil(workspaces / RUNS_AT_ONCE)
    busy = cpu / (wall * (psutil.cpu_count() or 1))
    result = {
        "days": days,
        "workspaces": workspaces,
        "partitions": len(keys),
        "loaded": done,
        "launched_as": LAUNCH,
        "runs": len(records),
        "calls_per_workspace": calls,
        "http_429": throttled,
        "wall_s": round(wall, 1),
        "api_floor_s": round(floor, 1),
        "x_api_floor": round(wall / floor, 2),
        "window_s": WINDOW,
        "api_floor_taking_turns_s": round(floor * turns, 1),
        "x_api_floor_taking_turns": round(wall / (floor * turns), 2),
        "cpu_busy": f"{busy:.0%} of {psutil.cpu_count()} cores",
        "cpu_s_per_partition": round(cpu / len(keys), 2),
        "cpu_s_by_process": {
            **tree.by_role(),
            **({"postgres": round(pg_cpu, 1)} if server_cpu else {}),
        },
        "profile": PROFILE,
        **({"flows": FLOWS} if flows else {}),
    }
    print(f"  {days} days x {workspaces} workspace(s): {done}/{len(keys)} partitions in "
          f"{result['runs']} runs, {result['wall_s']} s = {result['x_api_floor']}x the API floor "
          f"({result['api_floor_s']} s), {result['cpu_s_per_partition']} CPU-s per partition, "
          f"{throttled} x 429; window {WINDOW:g} s; "
          f"{result['x_api_floor_taking_turns']}x the floor of {RUNS_AT_ONCE} runs at once "
          f"({result['api_floor_taking_turns_s']} s); CPU {result['cpu_busy']} busy; "
          f"CPU-s by process: {result['cpu_s_by_process']}",
          flush=True)  # fmt: skip
    return result


def _pending(instance: DagsterInstance) -> bool:
    from dagster._core.execution.backfill import BulkActionStatus

    return any(b.status == BulkActionStatus.REQUESTED for b in instance.get_backfills())


def run() -> dict:
    chosen = os.environ.get("MOESTATS_BENCH_HISTORY", "3x1" if tiny() else DEFAULT).split(",")
    return {name: load(*SCENARIOS[name]) for name in chosen}
