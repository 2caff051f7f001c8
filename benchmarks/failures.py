"""Time to failure of every bounded case, with the client's default settings.

Each case points a default `StatsClient` (connect 5 s, read 20 s, call deadline 30 s, two
retries of a call that got no answer, 300 s retry budget, waits capped at two windows) at a
misbehaving sandbox on loopback, or at a closed port or an unresolvable name, and measures how
long one day's fetch takes to fail and what it says. The 429 case measures the pause taken.
"""

from __future__ import annotations

import datetime as dt
import socket
import tempfile
import time
from pathlib import Path

from benchmarks import tiny
from moestats_dagster.moengage import MoEngageError, StatsClient
from moestats_dagster.sandbox import Faults, SandboxApp, SandboxServer

DAY = dt.date(2024, 12, 3)  # WS_ALPHA: 44 campaigns
KEY = "sandbox-key-alpha"
COMBOS = [(m, a) for m in ("TOTAL", "UNIQUE") for a in ("VIEW_THROUGH", "IN_SESSION")]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _case(name: str, base_url: str, state: Path, **client_options) -> dict:
    if tiny():  # every bound shrunk: the cases still fail, in seconds
        client_options = {"call_deadline_seconds": 1.0, "retry_budget_seconds": 3.0,
                          "max_retries": 1, **client_options}  # fmt: skip
    client = StatsClient(
        workspace_id="WS_ALPHA", api_key=KEY, base_url=base_url,
        limiter_state_file=str(state / f"{name}.json"), **client_options,
    )  # fmt: skip
    started = time.monotonic()
    error = ""
    try:
        client.fetch_days(stat_date=DAY, combinations=COMBOS)
    except MoEngageError as exc:
        error = str(exc)
    seconds = time.monotonic() - started
    counters = client.counters
    client.close()
    row = {"case": name, "seconds": round(seconds, 2), "calls": counters.calls,
           "failed": bool(error), "says": error[:160]}  # fmt: skip
    print(f"  {name:<34} {seconds:7.2f} s  {counters.calls:3d} calls  {error[:110]}", flush=True)
    return row


def run() -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        rows.append(_case("refused connection", f"http://127.0.0.1:{_closed_port()}", state))
        rows.append(_case("unresolvable host", "https://api-01.moestats.invalid", state))
        for name, faults in [
            ("silent server", Faults(silent_seconds=600)),
            ("body trickling 1 byte/s", Faults(trickle_bytes_per_second=1)),
            ("total_campaigns + 100,000", Faults(overreport_total=100_000)),
            ("total_campaigns + 2^63", Faults(overreport_total=2**63)),
            ("total_campaigns + 15", Faults(overreport_total=15)),
            ("500 on every call", Faults(fail_after=0)),
        ]:
            with SandboxServer(SandboxApp(faults=faults)) as server:
                rows.append(_case(name, server.url, state))
        # A 429 asking for 100,000 s: the pause taken is capped at two windows (2 x 60 s at
        # MoEngage's window; measured here with a 5 s window, so the cap is 10 s).
        faults = Faults(throttle_burst=1, retry_after="100000")
        with SandboxServer(SandboxApp(faults=faults, window_seconds=5)) as server:
            rows.append(_case("429 with Retry-After: 100000", server.url, state,
                              window_seconds=5))  # fmt: skip
    return {"cases": rows}
