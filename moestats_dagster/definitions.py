"""Definitions: wires settings, partitions, assets, resources, jobs and schedules. Nothing else."""

from __future__ import annotations

import warnings
from pathlib import Path

from dagster import (
    AssetSelection,
    BetaWarning,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from .assets import build_raw_asset, build_table_assets
from .config import Settings, duckdb_path, load_settings, workspaces_file_path
from .partitions import build_partitions
from .resources import MoEngageResource, WarehouseResource

JOB_NAME = "moestats_daily"

# backfill_policy is a deliberate choice (see README); its "beta" notice is noise for our users.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)


def build_definitions(
    settings: Settings,
    *,
    database: str,
    moengage: MoEngageResource | None = None,
) -> Definitions:
    partitions = build_partitions(settings)
    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.groups("moestats"),
        partitions_def=partitions,
        description="Fetch, store and normalize one day x workspace of campaign stats.",
    )
    return Definitions(
        assets=[build_raw_asset(partitions), build_table_assets(partitions)],
        jobs=[job],
        resources={
            "moengage": moengage or MoEngageResource(workspaces_file=settings.source),
            "warehouse": WarehouseResource(database=str(Path(database))),
        },
        # Both steps of a run are sequential; one process per run saves a process per step.
        executor=in_process_executor,
    )


defs = build_definitions(load_settings(workspaces_file_path()), database=duckdb_path())
