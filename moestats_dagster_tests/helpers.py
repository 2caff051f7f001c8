"""Helpers shared by the Dagster-level tests."""

from __future__ import annotations

import datetime as dt

from dagster import DagsterInstance, MultiPartitionsDefinition, materialize

from moestats_dagster.config import load_settings
from moestats_dagster.lakehouse.warehouse import connection, read_slice
from moestats_dagster.model.schemas import TABLES
from moestats_dagster.orchestration.build import build_definitions
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.orchestration.lib.resources import MoEngageResource


def build(path, database: str, limiter_dir: str, **resource_options):
    """Definitions over a workspaces file, with fast retries for tests."""
    settings = load_settings(path)
    resource_options.setdefault("backoff_factor", 0.01)
    resource = MoEngageResource.for_settings(settings, limiter_dir=limiter_dir, **resource_options)
    return build_definitions(settings, database=database, moengage=resource)


def stats_assets(defs) -> list:
    """The day x workspace assets (raw and the four tables)."""
    return [
        a
        for a in defs.assets
        if isinstance(a.partitions_def, MultiPartitionsDefinition)
        and any(k.path[-1] == "campaign_stats_raw" for k in a.keys)
    ]


def run_partition(defs, day: dt.date, workspace_id: str, instance=None, raise_on_error=True):
    """Materialize the day x workspace assets for one partition, as the UI would."""
    return materialize(
        stats_assets(defs),
        partition_key=partition_key(day, workspace_id),
        resources=defs.resources,
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def slice_of(database: str, table: str, day: dt.date, workspace_id: str):
    with connection(database) as conn:
        return read_slice(conn, TABLES[table], workspace_id=workspace_id, stat_date=day)
