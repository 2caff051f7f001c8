"""Declarative automation: campaign metadata, the summary and the report refresh by themselves
after new stats land (nightly runs, backfills, manual runs alike), as lib/conditions.py says."""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, Naming

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
