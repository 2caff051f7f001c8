"""Coverage: is every workspace's yesterday in by its deadline, and is any day missing since
start_date? One small asset, `moestats/stats_coverage`, evaluated at the daily deadline.

The two kinds of check live on their own asset, not on the stats assets: Dagster runs a stats
asset's checks whenever that asset is selected (`dagster asset materialize --select …`, the UI's
Materialize button), where "yesterday is missing" is only ever true because it is being loaded.
Here they run at the deadline, and when someone materializes the coverage asset on purpose.
"""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    asset,
)

from moestats_dagster.config import Settings
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW
from moestats_dagster.orchestration.lib.freshness import (
    backfill_command,
    deadline_cron,
    deadline_hour,
    due_day,
    missing_check_name,
    missing_ranges,
)
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, OWNERS, Naming

CHECK_NAME = "yesterday_loaded_for_every_workspace"
COVERAGE = "stats_coverage"
MAX_RANGES_SHOWN = 20  # a check's metadata names at most this many missing ranges


def build_coverage_asset(settings: Settings, naming: Naming = DEFAULT_NAMING):
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    key = naming.key_of(COVERAGE)
    workspaces = [ws.id for ws in settings.workspaces]
    names: dict[str, str] = {}
    for ws in workspaces:
        names[ws] = missing_check_name(ws, set(names.values()))

    @asset(
        key=key,
        deps=[raw_key],
        group_name=naming.group,
        kinds={"dagster"},
        owners=OWNERS,
        # At the deadline, once a day (the sensor below is on by default). Never along with a
        # stats run: nothing selects it with them.
        automation_condition=AutomationCondition.cron_tick_passed(
            deadline_cron(settings), settings.timezone
        )
        & ~AutomationCondition.in_progress(),
        check_specs=[
            AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description="Freshness (WARN): every workspace's yesterday (in its own time zone) "
                "is loaded once its deadline passed (schedule_hour + 6 h local); lists the late "
                "workspaces and their days.",
            ),
            *(
                AssetCheckSpec(
                    names[ws],
                    asset=key,
                    description=f"Coverage (WARN): no day of {ws} is missing or failed since "
                    "start_date; lists the missing ranges and the backfill that fills each.",
                )
                for ws in workspaces
            ),
        ],
        description=(
            "Which days of each workspace are loaded, late or missing since start_date. "
            f"Evaluated at {deadline_hour(settings):02d}:00 {settings.timezone} every day (sensor "
            "`" + naming.name("freshness_deadline") + "`); the nightly schedule heals the last "
            f"{settings.catch_up_days} days by itself, older holes are named here with their "
            "backfill."
        ),
    )
    def stats_coverage(context: AssetExecutionContext):
        now = dt.datetime.now(dt.UTC)
        loaded: dict[str, list[dt.date]] = {ws: [] for ws in workspaces}
        for partition in context.instance.get_materialized_partitions(raw_key):
            day, _, ws = str(partition).partition("|")
            if ws in loaded:
                loaded[ws].append(dt.date.fromisoformat(day))
        due = {ws: due_day(settings, ws, now) for ws in workspaces}
        late = {ws: day.isoformat() for ws, day in due.items() if day not in set(loaded[ws])}
        results = [
            AssetCheckResult(
                check_name=CHECK_NAME,
                passed=not late,
                severity=AssetCheckSeverity.WARN,
                metadata={
                    "due_days": {ws: day.isoformat() for ws, day in due.items()},
                    "late_workspaces": list(late),
                    "late": late,
                    "workspaces": len(workspaces),
                },
            )
        ]
        summary = {}
        for ws in workspaces:
            holes = missing_ranges(settings.start_date, due[ws], loaded[ws])
            days = sum((b - a).days + 1 for a, b in holes)
            summary[ws] = {"loaded_days": len(loaded[ws]), "missing_days": days}
            shown = holes[:MAX_RANGES_SHOWN]
            results.append(
                AssetCheckResult(
                    check_name=names[ws],
                    passed=not holes,
                    severity=AssetCheckSeverity.WARN,
                    description=(
                        f"{ws}: {days} day(s) missing in {len(holes)} range(s) since "
                        f"{settings.start_date}; fill them with a backfill (commands in the "
                        "metadata, or the UI's Materialize on campaign_stats_raw)"
                        if holes
                        else f"{ws}: every day from {settings.start_date} to {due[ws]} is loaded"
                    ),
                    metadata={
                        "workspace": ws,
                        "missing_days": days,
                        "missing_ranges": [str(a) if a == b else f"{a}..{b}" for a, b in shown],
                        "backfills": MetadataValue.md(
                            "\n".join(f"    {backfill_command(ws, a, b)}" for a, b in shown)
                            or "nothing to fill"
                        ),
                        "ranges_not_shown": len(holes) - len(shown),
                    },
                )
            )
        context.log.info(
            "coverage: "
            + "; ".join(f"{ws} {s['missing_days']} day(s) missing" for ws, s in summary.items())
        )
        return MaterializeResult(metadata={"by_workspace": summary}, check_results=results)

    return stats_coverage


def build_freshness_sensor(
    coverage_asset, naming: Naming = DEFAULT_NAMING
) -> AutomationConditionSensorDefinition:
    """Evaluates the coverage asset's condition: at the deadline, its checks run."""
    return AutomationConditionSensorDefinition(
        naming.name("freshness_deadline"),
        target=AssetSelection.assets(coverage_asset),
        default_status=DefaultSensorStatus.RUNNING,
        description="At the daily deadline: is yesterday loaded for every workspace, and is any "
        "day missing since start_date?",
    )
