"""`moestats reconcile`: the reconciliation of chosen workspace-months, by hand, in this process
on the Dagster instance at DAGSTER_HOME (the runs show in the UI); with --heal, a month that
differs has its days fetched again and is reconciled once more, as the heal sensor does."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from dagster import DagsterInstance, MultiPartitionKey, materialize

from moestats_dagster.config import load_settings
from moestats_dagster.lakehouse.lake import lake_path
from moestats_dagster.lakehouse.warehouse import connection, read_slice
from moestats_dagster.model import reconciliation
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, RECONCILIATION
from moestats_dagster.operations.demo import chosen_workspaces
from moestats_dagster.orchestration.build import build_definitions
from moestats_dagster.orchestration.defs.periods import period_bounds
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.orchestration.lib.reconciling import MONTH, month_range


def month_of(text: str) -> dt.date:
    """`YYYY-MM` as the month's first day; a clear error otherwise."""
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"--month {text!r} is not YYYY-MM (e.g. 2024-11)") from None


def run(workspaces: list[str] | None, month: dt.date | None, heal: bool) -> int:
    """Reconcile, print the table; exit code 0 when every campaign matches (or the only
    differences are MoEngage's own, api_inconsistent)."""
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    settings = load_settings()
    database = lake_path()
    defs = build_definitions(settings, database=database)
    instance = DagsterInstance.get()
    [asset] = [a for a in defs.assets if any(k.path[-1] == RECONCILIATION.name for k in a.keys)]
    stats = [a for a in defs.assets if any(k.path[-1] == CAMPAIGN_STATS_RAW.name for k in a.keys)]
    differing = 0
    for ws in chosen_workspaces(settings, workspaces):
        chosen = month or (dt.date.today() - dt.timedelta(days=1)).replace(day=1)
        first, last = month_range(settings, ws, *period_bounds(MONTH, chosen))
        if last < first:
            print(f"{ws} {chosen:%Y-%m}: no day of this month has ended since start_date")
            continue
        key = MultiPartitionKey({"period": chosen.isoformat(), "workspace": ws})

        def reconcile(key=key, ws=ws, month=chosen):
            materialize([asset], partition_key=key, resources=defs.resources,
                        instance=instance, raise_on_error=False)  # fmt: skip
            with connection(database) as conn:
                return read_slice(conn, RECONCILIATION, workspace_id=ws, period=(MONTH, month))

        rows = reconcile()
        print(_table(ws, chosen, rows))
        counts = reconciliation.counts(rows)
        if heal and any(counts[s] for s in reconciliation.DIFFERENT):
            days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
            print(f"{ws} {chosen:%Y-%m}: fetching its {len(days)} days again …", flush=True)
            for day in days:
                materialize(stats, partition_key=partition_key(day, ws), resources=defs.resources,
                            instance=instance, raise_on_error=False)  # fmt: skip
            rows = reconcile()
            print(_table(ws, chosen, rows))
            counts = reconciliation.counts(rows)
        differing += sum(counts[s] for s in reconciliation.DIFFERENT)
    return 1 if differing else 0


def _table(ws: str, month: dt.date, rows) -> str:
    counts = reconciliation.counts(rows)
    if not len(rows):
        return f"{ws} {month:%Y-%m}: not reconciled (see the run's failure in the Dagster UI)"
    head = f"{ws} {month:%Y-%m}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    lines = [head] + [f"  {line}" for line in reconciliation.first_differences(rows, 10)]
    return "\n".join(lines)
