"""Rate-limit efficiency: achieved calls per window against the sandbox's sliding-window limit."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from benchmarks import tiny
from moestats_dagster.moengage import ATTRIBUTION_TYPES, METRIC_TYPES, StatsClient
from moestats_dagster.moengage.pgstate import PostgresWindowStore
from moestats_dagster.sandbox import Faults, SandboxApp, SandboxServer, SandboxWorkspace

COMBOS = [(m, a) for m in METRIC_TYPES for a in ATTRIBUTION_TYPES]  # 10 per day
DAY = dt.date(2024, 12, 2)


def _fetch(url: str, limit: int, window: float, state_file: str, barrier, pg: str = "") -> None:
    shared = {"limiter_store": PostgresWindowStore(pg, "bench")} if pg else {}
    client = StatsClient(
        workspace_id="WS_BENCH",
        api_key="bench-key",
        base_url=url,
        rate_limit_per_minute=limit,
        window_seconds=window,
        limiter_state_file=state_file,
        **shared,
    )
    barrier.wait()
    client.fetch_days(stat_date=DAY, combinations=COMBOS)


def measure(limit: int, window: float, latency: float, runs: int, pg: str = "") -> dict:
    """`runs` processes fetch at once; together their day needs 3 windows' worth of calls."""
    per_run_calls = 3 * limit // runs
    campaigns = per_run_calls // len(COMBOS) * 10
    app = SandboxApp(
        [
            SandboxWorkspace(
                "WS_BENCH",
                "bench-key",
                rate_limit=limit,
                campaigns_per_day=campaigns,
                universe=campaigns,
            )
        ],  # fmt: skip
        window_seconds=window,
        faults=Faults(latency_seconds=latency),
    )
    with SandboxServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        state = str(Path(tmp) / "window.json")
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(runs)
        procs = [
            # with `pg`, each process has its own state file (as separate hosts would) and the
            # window is shared only through PostgreSQL
            ctx.Process(
                target=_fetch,
                args=(server.url, limit, window, state + str(n) if pg else state, barrier, pg),
            )  # fmt: skip
            for n in range(runs)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        arrivals = sorted(c.at for c in app.calls if c.status == 200)
        throttled = sum(1 for c in app.calls if c.status == 429)
    n = len(arrivals)
    busiest = max(sum(1 for t in arrivals if s <= t < s + window) for s in arrivals)
    # Under a sliding window of `limit` calls, call i + limit may go exactly one window after
    # call i. How close each slot's reuse comes to that is the efficiency: window / mean gap.
    gaps = [arrivals[i + limit] - arrivals[i] for i in range(n - limit)]
    efficiency = window / (sum(gaps) / len(gaps)) if gaps else 0.0
    span = arrivals[-1] - arrivals[0]
    return {
        "shared_through": "PostgreSQL" if pg else "state file",
        "runs": runs,
        "latency_s": latency,
        "limit_per_window": limit,
        "window_s": window,
        "calls": n,
        "http_429": throttled,
        "busiest_window_calls": busiest,
        "achieved_pct_of_limit": round(100 * efficiency, 1),
        "calls_per_window_whole_run": round(n / span * window, 1) if span else None,
        "seconds": round(span, 1),
        "failed_runs": len(failed),
    }


def run(limit: int = 60, window: float = 12.0) -> list[dict]:
    """100/min scaled in time: `limit` calls per `window` seconds (60 per 12 s = 300/min)."""
    results = []
    if tiny():
        limit, window = 6, 0.5
    for latency in (0.05,) if tiny() else (0.3, 1.0):
        for runs in (1, 2) if tiny() else (1, 3):
            started = time.monotonic()
            row = measure(limit, window, latency, runs)
            row["wall_s"] = round(time.monotonic() - started, 1)
            results.append(row)
            _say(row, limit)
    # Two "hosts" sharing the workspace's window through PostgreSQL only (scripts/with-postgres
    # provides the server; `make bench` runs under it).
    pg = "" if tiny() else os.environ.get("MOESTATS_TEST_POSTGRES_URL", "")
    if pg:
        for latency in (0.3, 1.0):
            started = time.monotonic()
            row = measure(limit, window, latency, 2, pg=pg)
            row["wall_s"] = round(time.monotonic() - started, 1)
            results.append(row)
            _say(row, limit)
    return results


def _say(row: dict, limit: int) -> None:
    print(
        f"  rate limit ({row['shared_through']}): latency {row['latency_s']:.1f}s, "
        f"{row['runs']} run(s): {row['calls']} calls, {row['achieved_pct_of_limit']}% of the "
        f"limit, {row['http_429']} x 429, busiest window {row['busiest_window_calls']}/{limit}",
        flush=True,
    )
