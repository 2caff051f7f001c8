"""`moestats demo`: the last N days of every workspace, launched as the UI launches a backfill
of the job `moestats_daily` from its page (`moestats backfill` the same for chosen days).

The runs go through the Dagster instance (DAGSTER_HOME): a backfill record per workspace, runs
of the job (listed under it on the Runs page and the timeline) queued with their tags, the daemon's run queue and its per-workspace limits, then the automation sensor
refreshing metadata, summary and report. They show on the UI's Overview timeline and Runs page
like any other. A daemon is started for the demo unless one is running (`dg dev`).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from tqdm import tqdm

from moestats_dagster.config import Settings, load_settings
from moestats_dagster.lakehouse.lake import lake_path
from moestats_dagster.lakehouse.warehouse import connection, table_name
from moestats_dagster.model.schemas import CAMPAIGN_DAILY_SUMMARY, TABLES
from moestats_dagster.operations.launch import (
    LaunchError,
    RunWatcher,
    backfill_runs,
    cancel_backfill,
    daemon,
    failed_days,
    submit_job_backfill,
)
from moestats_dagster.operations.plan import confirmed, plan_backfill
from moestats_dagster.orchestration.build import JOB_NAME, build_definitions
from moestats_dagster.orchestration.defs.report import REPORT
from moestats_dagster.orchestration.defs.schedules import KIND_TAG
from moestats_dagster.orchestration.defs.stats import days_per_run
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.orchestration.lib.run_tags import partition_count, where, workspace_of
from moestats_dagster.sandbox.embedded import STATE_ENV as SANDBOX_STATE_ENV

STALL_SECONDS = 300  # nothing finished and no rate wait logged for this long: stop, say where
REFRESH_SECONDS = 150  # after the stats, bound on the automation sensor's refresh (ticks: 30 s)
BACKFILL_OVER = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS,
                 BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED,
                 BulkActionStatus.CANCELED}  # fmt: skip
AUTOMATED = "dagster/from_automation_condition"
LOCATION = "moestats_dagster"  # the code location's name, as in workspace.yaml and pyproject


def demo_days(
    settings: Settings, days: int, zone: str | None = None, today: dt.date | None = None
) -> list[dt.date]:
    """Yesterday and the `days - 1` before it (in `zone`, default the file's), not before
    start_date."""
    today = today or dt.datetime.now(ZoneInfo(zone or settings.timezone)).date()
    wanted = [today - dt.timedelta(days=n) for n in range(days, 0, -1)]
    return [d for d in wanted if d >= settings.start_date]


def run_demo(days: int, workspaces: list[str] | None = None) -> int:
    """The last `days` days of every (or the chosen) workspace, as one backfill."""
    return run_backfill(
        lambda settings, ws: demo_days(settings, days, settings.zone(ws)),
        workspaces,
        kind="demo",
        title=lambda n: f"moestats demo: {days} days x {n} workspaces",
    )


def run_history(
    first: dt.date, last: dt.date, workspaces: list[str] | None = None, yes: bool = False
) -> int:
    """`moestats backfill`: the days from `first` to `last`, as the UI's backfill — said first
    (operations/plan.py), confirmed above 90 days of a workspace, refused when empty."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}; swap them")
    settings = load_settings()
    plan = plan_backfill(settings, chosen_workspaces(settings, workspaces), first, last)
    print("\n".join(plan.lines()), flush=True)
    if not plan.partitions:
        print(f"Nothing to load: {plan.why_nothing()}. Nothing was launched.")
        return 1
    if not confirmed(plan, yes, sys.stdin, sys.stdout):
        return 1
    days = {w.workspace_id: w.days for w in plan.workspaces}
    return run_backfill(
        lambda settings, ws: days[ws],
        workspaces,
        kind="backfill",
        title=lambda n: f"moestats backfill: {first} to {last} x {n} workspaces",
    )


def chosen_workspaces(settings: Settings, workspaces: list[str] | None) -> list[str]:
    """The workspaces asked for (all when none), each one the file configures."""
    chosen = workspaces or [ws.id for ws in settings.workspaces]
    unknown = [w for w in chosen if w not in {ws.id for ws in settings.workspaces}]
    if unknown:  # before anything runs
        raise ValueError(
            f"unknown workspace(s) {unknown}; {settings.source} configures "
            f"{[ws.id for ws in settings.workspaces]}"
        )
    return chosen


def run_backfill(days_of, workspaces: list[str] | None, *, kind: str, title) -> int:
    """Launch the stats of `days_of(settings, workspace)` for every chosen workspace as one
    backfill, follow it in a progress bar, print what landed. Exit code 0 when all succeeded."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
    print(f"Dagster instance: DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    settings = load_settings()
    print(f"Workspaces file: {settings.source}")
    if settings.uses_sandbox:
        print("Using the bundled MoEngage sandbox (synthetic data, no network, no credentials).")
        # The sandbox remembers the answers it gave across the runs' processes, so WS_ALPHA's
        # days are first answered before their late conversions are in (sandbox/late.py).
        state = Path(os.environ["DAGSTER_HOME"]) / "data" / "sandbox-answers.sqlite"
        state.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(SANDBOX_STATE_ENV, str(state))
    chosen = chosen_workspaces(settings, workspaces)
    database = lake_path()
    build_definitions(settings, database=database)  # a bad file fails here, before any run
    instance = DagsterInstance.get()
    dates = {ws: days_of(settings, ws) for ws in chosen}
    keys = [str(partition_key(d, ws)) for ws in chosen for d in dates[ws]]
    all_dates = sorted({d for ds in dates.values() for d in ds})
    if not keys:
        print(
            f"No day to load: the days asked for are before start_date "
            f"({settings.start_date}) or not over yet."
        )
        return 0
    log_path = Path(os.environ["DAGSTER_HOME"]) / "logs" / f"{kind}-daemon.log"
    started_at = time.time()
    cursor = instance.event_log_storage.get_maximum_record_id() or 0
    with daemon(instance, "moestats_dagster.definitions", LOCATION, log_path) as ours:
        print("Dagster daemon: " + (f"started for this backfill (log: {log_path})" if ours
              else "already running (dg dev?), using it"))  # fmt: skip
        backfill_ids: list[str] = []
        try:  # from the first launch on, a Ctrl-C cancels what was launched
            for ws in chosen:  # one backfill per workspace: a run never mixes two workspaces
                if dates[ws]:
                    backfill_ids.append(submit_job_backfill(
                        instance, JOB_NAME, LOCATION,
                        [str(partition_key(d, ws)) for d in dates[ws]],
                        tags={KIND_TAG: kind}, title=f"{title(len(chosen))}: {ws}",
                    ))  # fmt: skip
            print(f"Backfill {', '.join(backfill_ids)}: {len(keys)} partitions of the job "
                  f"{JOB_NAME}, up to {days_per_run()} days of a workspace per run (UI: "
                  "Overview > Backfills, or the job's runs)", flush=True)  # fmt: skip
            failures = follow(instance, backfill_ids, len(keys), chosen, cursor, started_at)
        except KeyboardInterrupt:
            # Cancelled while the daemon still runs: it cancels the queued and running runs
            # and marks the backfills CANCELED; leaving first would leave them CANCELING.
            print("\nInterrupted: cancelling the backfills (the daemon stops their runs); what "
                  "was published stays published.", flush=True)  # fmt: skip
            settled = cancel_and_wait(instance, backfill_ids)
            print("Backfills " + ("cancelled." if settled else "still cancelling: the next "
                  "daemon (make dev) finishes it."))  # fmt: skip
            return 130
        except LaunchError as exc:
            print(f"\n{exc}")
            return 1
    print_summary(settings, database, all_dates, chosen)
    if failures:
        print(f"\n{len(failures)} run(s) failed; see them in the Dagster UI (Runs, filter Failed):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    if kind == "demo":
        show_reconciliation(chosen)
    print_reports(database, chosen)
    print("\nSee the runs, assets and the report in the Dagster UI: make dev  (then open "
          "http://127.0.0.1:3000; make dev PORT=3001 when 3000 is taken)")  # fmt: skip
    return 0


CANCEL_SECONDS = 120


def show_reconciliation(chosen: list[str]) -> None:
    """The lake checked against MoEngage's own totals for the month of yesterday."""
    from moestats_dagster.operations.reconcile import run  # it builds on this module

    print("\nReconciliation with MoEngage's range totals (moestats.reconciliation):", flush=True)
    if run(chosen, None, heal=False):
        print("A month that differs has its days fetched again by the heal sensor (make dev) "
              "and is reconciled once more; by hand: moestats reconcile --heal")  # fmt: skip


def cancel_and_wait(instance: DagsterInstance, backfill_ids: list[str]) -> bool:
    """Ask for the backfills to be cancelled and wait (bounded) until the daemon has: True when
    every one ended. A second Ctrl-C stops waiting."""
    for backfill_id in backfill_ids:
        cancel_backfill(instance, backfill_id)
    deadline = time.monotonic() + CANCEL_SECONDS
    try:
        while time.monotonic() < deadline:
            states = [instance.get_backfill(b) for b in backfill_ids]
            if all(s is None or s.status in BACKFILL_OVER for s in states):
                return True
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return False


def command(name: str = "moestats") -> str:
    """How to run one of our commands from here: the bare name when the shell finds ours, else
    its path (`.venv/bin/moestats` when the venv is not activated)."""
    ours = Path(sys.executable).parent / name
    if not ours.exists() or shutil.which(name) == str(ours):
        return name
    try:
        return str(ours.relative_to(Path.cwd()))
    except ValueError:
        return str(ours)


def print_reports(database: str, chosen: list[str]) -> None:
    """Where each workspace's report is (HTML for people, PNG for Slack and the UI)."""
    from moestats_dagster.report import reports_path

    folder = reports_path(database)
    pages = [(ws, folder / ws / "report.html") for ws in chosen]
    present = [(ws, page) for ws, page in pages if page.exists()]
    if not present:
        return
    print("\nReports (open in a browser):")
    for ws, page in present:
        print(f"  {ws:<12} {page}")


def follow(
    instance: DagsterInstance,
    backfill_ids: list[str],
    total: int,
    chosen: list[str],
    cursor: int,
    started_at: float,
) -> list[str]:
    """Show the backfills' runs and then the automation's refresh in one bar until all are
    done; return the failed runs. Bounded: a stall or a missing refresh raises, naming it."""
    watcher = RunWatcher(instance)
    bar = tqdm(total=total + len(chosen), unit="partition",
               desc="stats, then metadata + report")  # fmt: skip
    last_change, last_seen, stats_over_at = time.monotonic(), -1, None
    try:
        while True:
            runs = backfill_runs(instance, backfill_ids)
            refresh_runs = instance.get_runs(RunsFilter(
                tags={AUTOMATED: "true"},
                created_after=dt.datetime.fromtimestamp(started_at, dt.UTC)))  # fmt: skip
            active = [r for r in (*runs, *refresh_runs) if not r.is_finished]
            watcher.poll([r.run_id for r in active])
            finished = [r for r in runs if r.is_finished]
            loaded = {_workspace(r) for r in finished if r.status == DagsterRunStatus.SUCCESS}
            refreshed = _refreshed(instance, cursor, chosen) | {
                _workspace(r) for r in refresh_runs
                if r.status == DagsterRunStatus.FAILURE
            }  # fmt: skip
            backfills = [instance.get_backfill(b) for b in backfill_ids]
            stats_over = all(
                b is not None and b.status in BACKFILL_OVER for b in backfills
            ) and len(finished) == len(runs)
            done = sum(partition_count(r.tags) for r in finished) + len(refreshed & loaded)
            bar.n = done
            activity = watcher.waiting() or _activity(runs, active, loaded - refreshed)
            bar.set_postfix_str(activity, refresh=False)
            bar.refresh()
            if stats_over and loaded <= refreshed:
                break
            now = time.monotonic()
            if done != last_seen or watcher.waiting():
                last_change, last_seen = now, done
            if now - last_change > STALL_SECONDS:
                raise LaunchError(
                    f"nothing finished for {STALL_SECONDS} s; last seen: "
                    f"{activity or 'no run (is the daemon up? see its log)'}"
                )
            broken = _failed_automation(instance, started_at)
            if broken:
                raise LaunchError(
                    f"the automation sensor's refresh failed before any run started: {broken}"
                )
            if stats_over:
                stats_over_at = stats_over_at or now
                if now - stats_over_at > REFRESH_SECONDS and not active:
                    raise LaunchError(
                        f"the stats are in, but campaign metadata, summary and report were not "
                        f"refreshed within {REFRESH_SECONDS} s for {sorted(loaded - refreshed)}: "
                        "is the sensor moestats_automation running (UI: Automation)? Or run "
                        "the job moestats_campaigns for those workspaces."
                    )
            time.sleep(1)
    finally:
        bar.close()
    return [failed_days(instance, r) for r in (*runs, *refresh_runs)
            if r.status == DagsterRunStatus.FAILURE]  # fmt: skip


def _failed_automation(instance: DagsterInstance, since: float) -> str | None:
    """The error of a backfill the automation sensor launched since `since` and that failed
    (Dagster runs an automation tick's requests as one backfill)."""
    for backfill in instance.get_backfills(status=BulkActionStatus.FAILED, limit=10):
        if backfill.backfill_timestamp >= since and backfill.tags.get(AUTOMATED):
            error = backfill.error.message.splitlines()[-1] if backfill.error else "no error"
            return f"backfill {backfill.backfill_id}: {error[:400]}"
    return None


def _workspace(run) -> str | None:
    return workspace_of(run.tags)  # from the partition tags, whatever the run coordinator


def _refreshed(instance: DagsterInstance, cursor: int, chosen: list[str]) -> set[str]:
    report = AssetKey([*DEFAULT_NAMING.prefix, REPORT])
    return set(instance.get_materialized_partitions(report, after_cursor=cursor)) & set(chosen)


def _running(active) -> str:
    names = [where(r) for r in active if r.status == DagsterRunStatus.STARTED]
    return ("running " + ", ".join(names[:3])) if names else ""


def _activity(runs, active, unrefreshed: set[str]) -> str:
    """What the bar is waiting for when no rate wait is logged: so no stretch is silent."""
    if running := _running(active):
        return running
    if active:
        starting = [where(r) for r in active if r.status == DagsterRunStatus.STARTING]
        queued = len(active) - len(starting)
        text = ("starting " + ", ".join(starting[:3])) if starting else "dequeuing the next run"
        return text + (f" ({queued} queued)" if queued else "")  # created or in the queue
    if not runs:
        return "the daemon is turning the backfill into runs"
    if unrefreshed:  # the automation sensor evaluates every 30 s
        return f"waiting for moestats_automation to refresh {', '.join(sorted(unrefreshed))}"
    return ""


TOP_CAMPAIGNS = """
SELECT s.workspace_id, s.campaign_id, any_value(s.campaign_name) AS name,
    any_value(s.channel) AS channel, sum(s.sent) AS sent, sum({conversions}) AS conversions
FROM {summary} s
WHERE s.metric_type = 'TOTAL' AND s.stat_date BETWEEN ? AND ? AND s.workspace_id = ?
GROUP BY ALL ORDER BY conversions DESC NULLS LAST, s.campaign_id LIMIT 3
"""


def print_summary(
    settings: Settings, database: str, dates: list[dt.date], chosen: list[str]
) -> None:
    with connection(database) as conn:
        print(f'\nWarehouse (DuckLake): {database}  — query it: {command()} query "SELECT …"')
        print(f"{'table':<34}{'rows (these days)':>18}{'rows (all)':>12}")
        for table in TABLES.values():
            name = table_name(conn, table)
            part = total = conn.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            if dates and "stat_date" in table.names:
                part = conn.execute(
                    f"SELECT count(*) FROM {name} WHERE stat_date BETWEEN ? AND ? "
                    "AND list_contains(?, workspace_id)",
                    [min(dates), max(dates), chosen],
                ).fetchall()[0][0]
            print(f"{table.qualified:<34}{part:>18,}{total:>12,}")
        if not dates:
            return
        summary = table_name(conn, CAMPAIGN_DAILY_SUMMARY)
        print(f"\nTop campaigns by conversions, {min(dates)} to {max(dates)} (TOTAL, all goals,")
        print("first configured attribution type; from moestats.campaign_daily_summary):")
        for ws_id in chosen:
            attribution = settings.workspace(ws_id).attribution_types[0]
            top = conn.execute(
                TOP_CAMPAIGNS.format(
                    summary=summary, conversions=f"conversions_{attribution.lower()}"
                ),
                [min(dates), max(dates), ws_id],
            ).fetchall()
            for _, campaign_id, name, channel, sent, conversions in top:
                sent_text = f"{sent:,}" if sent is not None else "-"  # NULL: not a sending channel
                print(f"  {ws_id:<9} {campaign_id}  {name or '?':<22} {channel or '?':<20} "
                      f"sent {sent_text:>9}  conversions {conversions or 0:>8,} ({attribution})")  # fmt: skip
