"""Declarative automation: campaign metadata, the summary and the report refresh by themselves
after new stats land (nightly runs, backfills, manual runs alike)."""

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, Naming

# Dagster's `eager()` without its "no dependency partition is missing" term: a workspace's
# metadata depends on every day of that workspace, and days that were never loaded (before a
# backfill reaches them) would hold it back for ever. What is kept: run once after any new
# upstream materialization (a run that also targeted this asset does not count), and not while
# anything upstream is still running or queued — a 90-day backfill ends in one refresh, not 90.
REFRESH_AFTER_STATS = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after new upstream data, once nothing upstream is running")

SENSOR_INTERVAL_SECONDS = 30


def build_automation_sensor(
    assets, naming: Naming = DEFAULT_NAMING
) -> AutomationConditionSensorDefinition:
    """On by default: evaluates the conditions above every 30 s (needs the daemon, which
    `dg dev` / `dagster dev` start)."""
    return AutomationConditionSensorDefinition(
        naming.name("automation"),
        target=AssetSelection.assets(*assets),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        description="Refreshes campaign metadata, the summary views and the report of a "
        "workspace after new stats land (nightly runs and backfills), once nothing upstream is "
        "running.",
    )
