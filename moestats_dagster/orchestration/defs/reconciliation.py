"""`moestats/reconciliation`: the lake proven against MoEngage's own totals, per workspace and
calendar month, and the days of a month that does not match re-fetched by themselves.

When: the running month every Monday, a closed month once its restatement window has passed (on
day restatement_days + 2 of the next month) and again a month later (the reconcile schedule, each
workspace at its nightly hour + 2); older months on demand (`moestats reconcile --month`, or the
asset's partitions in the UI). Healing starts right after a reconciliation that differs: the heal
sensor (every minute) launches the month's days that were not fetched since, as ranges, oldest
first, at most `reconcile_heal_days` days per workspace per day and never a day twice in a day;
once they are all in, it reconciles the month again.
"""

import datetime as dt
import json
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import duckdb
from dagster import (
    AssetExecutionContext,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MultiPartitionKey,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    in_process_executor,
    schedule,
    sensor,
)

from moestats_dagster.config import Settings
from moestats_dagster.lakehouse.lake import WarehouseNotFound, connect
from moestats_dagster.lakehouse.ledger import fetched_days, months_reconciled
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, RECONCILIATION
from moestats_dagster.orchestration.defs.periods import (
    PERIOD,
    build_period_partitions,
    period_bounds,
)
from moestats_dagster.orchestration.defs.schedules import contiguous, range_request
from moestats_dagster.orchestration.defs.stats import days_per_run
from moestats_dagster.orchestration.lib.check_specs import RECONCILED, result, specs
from moestats_dagster.orchestration.lib.metadata import (
    DEFAULT_NAMING,
    OWNERS,
    Naming,
    preview,
    static_metadata,
)
from moestats_dagster.orchestration.lib.partitions import ONE_PER_RUN, WORKSPACE
from moestats_dagster.orchestration.lib.reconciling import (
    MONTH,
    month_range,
    not_over,
    reconcile_month,
)
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource
from moestats_dagster.orchestration.lib.retries import retried_only_if_curable

HEAL_KIND = "heal"  # moestats/kind of the runs healing launches


def build_reconciliation(settings: Settings, daily_job, naming: Naming = DEFAULT_NAMING):
    """The asset, its job, its schedule and the heal sensor."""
    key = naming.key_of(RECONCILIATION.name)
    partitions = build_period_partitions(settings, MONTH)

    @asset(
        key=key,
        partitions_def=partitions,
        deps=[naming.key(CAMPAIGN_STATS_RAW)],
        group_name=naming.group,
        kinds={"moengage", "duckdb"},
        owners=OWNERS,
        metadata=static_metadata(RECONCILIATION),
        check_specs=specs(key, [RECONCILED]),
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.moengage, naming.warehouse},
        description=(
            "Each campaign's calendar month as the Stats API answers the range (TOTAL, every "
            "configured attribution type, flow steps named) against the sum of its days in the "
            f"lake: {RECONCILIATION.qualified}, one status per campaign, metric and goal (match, "
            "lake_short, lake_over, api_only, lake_only, api_inconsistent). A month that differs "
            "has its days re-fetched by the heal sensor, then is reconciled again."
        ),
    )
    def reconciliation(context: AssetExecutionContext):
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        keys = context.partition_key.keys_by_dimension
        workspace_id = keys[WORKSPACE]
        month = dt.date.fromisoformat(keys[PERIOD])
        first, last = month_range(settings, workspace_id, *period_bounds(MONTH, month))
        if last < first:
            raise not_over(settings, workspace_id, month)
        where = f"month {month:%Y-%m}|{workspace_id}"
        with retried_only_if_curable(context, where):
            done = reconcile_month(context, moengage, warehouse, workspace_id, month, first, last)
        outcome = done.outcome()
        (context.log.info if outcome.passed else context.log.warning)(outcome.metadata["summary"])
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(done.rows),
                "period_start": first.isoformat(),
                "period_end": last.isoformat(),
                **done.counts,
                "api_calls": done.calls,
                "api_429s": done.api_429s,
                "preview": preview(
                    done.rows[done.rows.status != "match"] if not outcome.passed else done.rows
                ),  # fmt: skip
            },
            check_results=[result(key, RECONCILED, outcome)],
        )

    job = define_asset_job(
        naming.name("reconcile"),
        selection=[key],
        partitions_def=partitions,
        executor_def=in_process_executor,
        description="Reconcile one workspace-month with MoEngage's range totals.",
    )
    return (
        reconciliation,
        job,
        _schedule(settings, job, naming),
        _heal_sensor(settings, daily_job, job, naming),
    )


def months_due(settings: Settings, today: dt.date) -> list[dt.date]:
    """The months a workspace's day `today` reconciles: the running one on Mondays, the one
    before once its restatement window has passed (day restatement_days + 2), and the one before
    that again a month later."""
    this = today.replace(day=1)
    before = (this - dt.timedelta(days=1)).replace(day=1)
    due = [this] if today.weekday() == 0 and today > this else []
    if today.day == settings.restatement_days + 2:
        due += [before, (before - dt.timedelta(days=1)).replace(day=1)]
    return sorted(m for m in due if period_bounds(MONTH, m)[1] >= settings.start_date)


def _schedule(settings: Settings, job, naming: Naming):
    hour = (settings.schedule_hour + 2) % 24

    @schedule(
        name=naming.name("reconcile"),
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        job=job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"At {hour:02d}:00 in each workspace's time zone: the running month on Mondays, a "
            f"closed month on day {settings.restatement_days + 2} of the next (its restatement "
            "window passed) and again a month later. Start it with the nightly schedule."
        ),
    )
    def reconcile(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        requests = []
        for ws in settings.workspaces:
            local = tick.astimezone(ZoneInfo(settings.zone(ws.id)))
            if local.hour != hour:
                continue
            for month in months_due(settings, local.date()):
                key = MultiPartitionKey({PERIOD: month.isoformat(), WORKSPACE: ws.id})
                requests.append(RunRequest(run_key=f"{local.date()}:{key}", partition_key=key,
                                           tags={"moestats/kind": "reconcile"}))  # fmt: skip
        return requests or SkipReason("no workspace is at its reconciliation hour")

    return reconcile


def heal_plan(
    differing: Mapping[tuple[str, dt.date], tuple[dt.datetime, dt.date, dt.date]],
    fetched: Mapping[tuple[str, dt.date], Mapping[dt.date, dt.datetime]],
    launched_today: Mapping[str, set[dt.date]],
    most_per_day: int,
) -> tuple[dict[str, list[dt.date]], list[tuple[str, dt.date]]]:
    """What healing does now. `differing`: (workspace, month) -> (when it was reconciled, its
    first and last day) for months whose latest reconciliation differs (not api_inconsistent); `fetched`:
    when each of their days was last fetched. Returns the days to launch per workspace (not
    fetched since the reconciliation, not launched today, at most `most_per_day` a workspace
    a day, oldest first) and the months to reconcile again (every day fetched since)."""
    launch: dict[str, list[dt.date]] = {}
    again = []
    for (ws, month), (reconciled_at, first, last) in sorted(differing.items()):
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        stale = [d for d in days if not fetched[(ws, month)].get(d) or
                 fetched[(ws, month)][d] <= reconciled_at]  # fmt: skip
        if not stale:
            again.append((ws, month))
            continue
        room = most_per_day - len(launched_today.get(ws, set())) - len(launch.get(ws, []))
        wanted = [d for d in stale if d not in launched_today.get(ws, set())][: max(room, 0)]
        if wanted:
            launch.setdefault(ws, []).extend(wanted)
    return launch, again


def _heal_sensor(settings: Settings, daily_job, reconcile_job, naming: Naming):
    @sensor(
        name=naming.name("heal"),
        jobs=[daily_job, reconcile_job],
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        required_resource_keys={naming.warehouse},
        description=(
            "Right after a reconciliation finds a month short or over, re-fetches its days (runs "
            "of consecutive days, oldest first, kind heal; at most reconcile_heal_days "
            f"({settings.reconcile_heal_days}) per workspace per day, never a day twice in a "
            "day), then reconciles the month again once every day is in."
        ),
    )
    def heal(context: SensorEvaluationContext):
        if not settings.reconcile_heal_days:
            return SkipReason("reconcile_heal_days is 0: reconciliation never heals by itself")
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        cursor = json.loads(context.cursor) if context.cursor else {}
        if cursor.get("day") != today:
            cursor = {"day": today, "launched": {}, "reconciled": []}
        launched = {ws: {dt.date.fromisoformat(d) for d in days}
                    for ws, days in cursor["launched"].items()}  # fmt: skip
        try:
            differing, fetched = _differing(warehouse, settings.start_date)
        except (WarehouseNotFound, duckdb.CatalogException):
            return SkipReason("no lake, or no reconciliation in it, yet")
        launch, again = heal_plan(differing, fetched, launched, settings.reconcile_heal_days)
        requests = []
        for ws, days in launch.items():
            for run in contiguous(sorted(days), days_per_run()):
                requests.append(range_request(dt.date.fromisoformat(today), run, ws, HEAL_KIND,
                                              daily_job.name))  # fmt: skip
            cursor["launched"][ws] = sorted({*cursor["launched"].get(ws, []),
                                             *(d.isoformat() for d in days)})  # fmt: skip
            context.log.info(f"{ws}: re-fetching {len(days)} day(s) a reconciliation found "
                             f"different: {', '.join(d.isoformat() for d in days)}")  # fmt: skip
        for ws, month in again:
            mark = f"{ws}|{month}|{differing[(ws, month)][0].isoformat()}"
            if mark in cursor["reconciled"]:
                continue
            cursor["reconciled"].append(mark)
            key = MultiPartitionKey({PERIOD: month.isoformat(), WORKSPACE: ws})
            requests.append(RunRequest(run_key=f"heal:{mark}", partition_key=key,
                                       job_name=reconcile_job.name,
                                       tags={"moestats/kind": HEAL_KIND}))  # fmt: skip
        context.update_cursor(json.dumps(cursor))
        return requests or SkipReason("every reconciled month matches, or is being healed")

    return heal


def _differing(warehouse: WarehouseResource, start_date: dt.date):
    """Months whose latest reconciliation differs in a way a re-fetch may heal (MoEngage's own
    differences left alone), and when each of their days was last fetched (the ledger)."""
    conn = connect(warehouse.lake, read_only=True)
    try:
        differing = {(m.workspace_id, m.month): (m.reconciled_at, max(m.month, start_date), m.end)
                     for m in months_reconciled(conn) if m.healable}  # fmt: skip
        fetched = {(ws, month): fetched_days(conn, ws, first, last)
                   for (ws, month), (_, first, last) in differing.items()}  # fmt: skip
    finally:
        conn.close()
    return differing, fetched
