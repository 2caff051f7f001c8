"""Definitions: wires settings, partitions, assets, resources, jobs and schedules. Nothing else."""

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
    get_dagster_logger,
    in_process_executor,
)

from .alerts import build_alert_sensors
from .assets import build_stats_asset
from .assets.automation import build_automation_sensor
from .assets.campaigns import build_campaign_assets
from .assets.freshness import build_freshness_check, build_freshness_sensor, freshness_policy
from .assets.metadata import DEFAULT_NAMING, Naming
from .assets.report import build_report_asset
from .config import Settings, lake_path, load_settings, rate_window, workspaces_file_path
from .doctor_job import moestats_doctor
from .partitions import build_partitions, build_workspace_partitions
from .resources import MoEngageResource, WarehouseResource
from .schedules import build_schedules
from .warehouse import POSTGRES_URL_ENV

JOB_NAME = DEFAULT_NAMING.name("daily")
FRESHNESS_JOB = DEFAULT_NAMING.name("freshness")
CAMPAIGNS_JOB = DEFAULT_NAMING.name("campaigns")

# backfill_policy is a deliberate choice (see README); its "beta" notice is noise for our users.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)


def build_definitions(
    settings: Settings,
    *,
    database: str,
    moengage: MoEngageResource | None = None,
    naming: Naming = DEFAULT_NAMING,
) -> Definitions:
    """Everything for the workspaces in `settings`, the warehouse at `database` (a lake
    folder), assets under `naming`'s key prefix and group. The one build path: `defs` below and
    the `MoEngageStats` component both call this."""
    # Production profile: with MOESTATS_POSTGRES_URL, the lake's catalog and every workspace's
    # rate window live in PostgreSQL, shared by all hosts (EnvVar: the URL never shows in the UI).
    shared = {"postgres_url": EnvVar(POSTGRES_URL_ENV)} if os.environ.get(POSTGRES_URL_ENV) else {}
    partitions = build_partitions(settings)
    by_workspace = build_workspace_partitions(settings)
    freshness = freshness_policy(settings)
    stats_assets = [build_stats_asset(partitions, freshness, naming)]
    campaign_assets = [
        *build_campaign_assets(by_workspace, naming),
        build_report_asset(by_workspace, naming),
    ]
    freshness_check = build_freshness_check(settings, naming)
    daily = define_asset_job(
        naming.name("daily"),
        selection=AssetSelection.assets(*stats_assets) - AssetSelection.checks(freshness_check),
        partitions_def=partitions,
        description="Fetch, store and normalize one day x workspace of campaign stats.",
    )
    campaigns_job = define_asset_job(
        naming.name("campaigns"),
        selection=AssetSelection.assets(*campaign_assets),
        partitions_def=by_workspace,
        description="Refresh campaign metadata, the summary views and the report of one "
        "workspace (the automation sensor does this by itself after new stats).",
    )
    alert_sensors, alert_resources = build_alert_sensors(settings.alerts.slack, naming)
    freshness_job = define_asset_job(
        naming.name("freshness"), selection=AssetSelection.checks(freshness_check)
    )
    return Definitions(
        assets=[*stats_assets, *campaign_assets],
        asset_checks=[freshness_check],
        jobs=[daily, campaigns_job, freshness_job, moestats_doctor],
        schedules=build_schedules(settings, daily, naming),
        sensors=[
            build_automation_sensor(campaign_assets, naming),
            build_freshness_sensor(freshness_check, naming),
            *alert_sensors,
        ],
        resources={
            "moengage": moengage
            or MoEngageResource(
                workspaces_file=settings.source, window_seconds=rate_window(), **shared
            ),
            "warehouse": WarehouseResource(database=str(Path(database)), **shared),
            **alert_resources,
        },
        # Both steps of a run are sequential; one process per run saves a process per step.
        executor=in_process_executor,
    )


_settings = load_settings(workspaces_file_path())
if _settings.uses_sandbox:  # said where a user looks: the code server's log (and asset metadata)
    get_dagster_logger("moestats_dagster").warning(
        f"moestats: workspaces {[ws.id for ws in _settings.workspaces if ws.is_sandbox]} of "
        f"{_settings.source} use the bundled MoEngage sandbox (synthetic data, no network)"
    )
defs = build_definitions(_settings, database=lake_path())
