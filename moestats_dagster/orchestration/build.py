"""`build_definitions`: wires settings, partitions, assets, checks, resources, jobs, schedules and
sensors into one `Definitions`. The one build path: the standalone project (`definitions.py`)
and the `MoEngageStats` component both call it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from dagster import (
    AssetSelection,
    BetaWarning,
    Definitions,
    EnvVar,
    define_asset_job,
    in_process_executor,
)

from moestats_dagster.config import Settings, rate_window
from moestats_dagster.lakehouse.lake import POSTGRES_URL_ENV
from moestats_dagster.lakehouse.object_store import is_url
from moestats_dagster.model.schemas import RECONCILIATION
from moestats_dagster.orchestration.defs.alerts import build_alert_sensors
from moestats_dagster.orchestration.defs.automation import build_automation_sensor
from moestats_dagster.orchestration.defs.campaigns import build_campaigns_asset
from moestats_dagster.orchestration.defs.coverage import (
    build_coverage_asset,
    build_freshness_sensor,
)
from moestats_dagster.orchestration.defs.doctor_job import build_doctor_job
from moestats_dagster.orchestration.defs.flows import build_flow_assets
from moestats_dagster.orchestration.defs.maintenance import build_maintenance
from moestats_dagster.orchestration.defs.periods import build_period_assets
from moestats_dagster.orchestration.defs.reconciliation import build_reconciliation
from moestats_dagster.orchestration.defs.report import build_report_asset
from moestats_dagster.orchestration.defs.schedules import build_schedules
from moestats_dagster.orchestration.defs.stats import build_stats_asset
from moestats_dagster.orchestration.defs.summary import build_summary_asset
from moestats_dagster.orchestration.lib.freshness import freshness_policy
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, Naming
from moestats_dagster.orchestration.lib.partitions import (
    build_partitions,
    build_workspace_partitions,
)
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource

JOB_NAME = DEFAULT_NAMING.name("daily")
FRESHNESS_JOB = DEFAULT_NAMING.name("freshness")
CAMPAIGNS_JOB = DEFAULT_NAMING.name("campaigns")

# backfill_policy is a deliberate choice (see docs/operations.md); its "beta" notice is noise for our users.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)


def build_definitions(
    settings: Settings,
    *,
    database: str,
    moengage: MoEngageResource | None = None,
    naming: Naming = DEFAULT_NAMING,
    postgres_url_env: str = POSTGRES_URL_ENV,
    own_executor: bool = True,
    dbt_project: str | Path | None = None,
) -> Definitions:
    """Everything for the workspaces in `settings`, the warehouse at `database` (a lake
    folder), assets under `naming`'s key prefix and group. The one build path: `defs` in
    definitions.py and the `MoEngageStats` component both call this. `own_executor=False` leaves
    the code location's executor to the project the component is part of. `dbt_project`: a dbt
    project on the lake whose models become assets downstream of ours (the `dbt` extra)."""
    # Production profile: with the URL in `postgres_url_env` (MOESTATS_POSTGRES_URL), the lake's
    # catalog and every workspace's rate window live in PostgreSQL, shared by all hosts (EnvVar:
    # the URL never shows in the UI).
    shared = {"postgres_url": EnvVar(postgres_url_env)} if os.environ.get(postgres_url_env) else {}
    partitions = build_partitions(settings)
    by_workspace = build_workspace_partitions(settings)
    freshness = freshness_policy(settings)
    stats_assets = [build_stats_asset(partitions, freshness, naming)]
    period_assets = build_period_assets(settings, naming)
    campaign_assets = [
        build_campaigns_asset(by_workspace, naming),
        build_summary_asset(by_workspace, naming),
        *build_flow_assets(by_workspace, naming),
        build_report_asset(
            by_workspace,
            naming,
            (*(a.key for a in period_assets), naming.key_of(RECONCILIATION.name)),
        ),  # fmt: skip
    ]
    coverage = build_coverage_asset(settings, naming)
    maintenance, maintenance_job, maintenance_schedule = build_maintenance(settings, naming)
    daily = define_asset_job(
        naming.name("daily"),
        selection=AssetSelection.assets(*stats_assets),
        partitions_def=partitions,
        executor_def=in_process_executor,
        description="Fetch, store and normalize one day x workspace of campaign stats.",
    )
    campaigns_job = define_asset_job(
        naming.name("campaigns"),
        selection=AssetSelection.assets(*campaign_assets),
        partitions_def=by_workspace,
        executor_def=in_process_executor,
        description="Refresh campaign metadata, flows, the summary views and the report of one "
        "workspace (the automation sensor does this by itself after new stats).",
    )
    reconciliation, reconcile_job, reconcile_schedule, heal_sensor = build_reconciliation(
        settings, daily, naming
    )
    job_names = frozenset(naming.name(n) for n in ("daily", "campaigns", "freshness",
                                                   "lake_maintenance", "doctor", "reconcile"))  # fmt: skip
    alert_sensors = build_alert_sensors(settings.alerts.slack, naming, job_names,
                                        tuple(ws.id for ws in settings.workspaces))  # fmt: skip
    freshness_job = define_asset_job(
        naming.name("freshness"),
        selection=AssetSelection.assets(coverage),
        executor_def=in_process_executor,
        description="Which days are loaded, late or missing (the deadline sensor runs it daily).",
    )
    dbt_assets, dbt_resources = ([], {}) if dbt_project is None else _dbt(dbt_project, naming)
    return Definitions(
        assets=[
            *stats_assets,
            *campaign_assets,
            *period_assets,
            coverage,
            maintenance,
            reconciliation,
            *dbt_assets,
        ],  # fmt: skip
        jobs=[
            daily,
            campaigns_job,
            freshness_job,
            maintenance_job,
            reconcile_job,
            build_doctor_job(naming),
        ],  # fmt: skip
        schedules=[
            *build_schedules(settings, daily, partitions, naming),
            maintenance_schedule,
            reconcile_schedule,
        ],  # fmt: skip
        sensors=[
            build_automation_sensor([*campaign_assets, *period_assets, *dbt_assets], naming),
            build_freshness_sensor(coverage, naming),
            heal_sensor,
            *alert_sensors,
        ],
        resources={
            naming.moengage: moengage
            or MoEngageResource.for_settings(settings, window_seconds=rate_window(), **shared),
            naming.warehouse: WarehouseResource(
                database=database if is_url(database) else str(Path(database)), **shared
            ),
            **dbt_resources,
        },
        # A run is one step (stats) or a few sequential ones (metadata, summary, report): one
        # process per run saves a process per step. Our jobs say so themselves, too.
        executor=in_process_executor if own_executor else None,
    )


def _dbt(project_dir: str | Path, naming: Naming) -> tuple[list, dict]:
    from moestats_dagster.orchestration.defs.dbt import build_dbt_assets  # the optional extra

    models, resources = build_dbt_assets(project_dir, naming)
    return [models], resources
