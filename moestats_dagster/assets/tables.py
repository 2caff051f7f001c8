"""The four normalized tables, derived from the raw slice in one step and written atomically."""

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    FreshnessPolicy,
    MaterializeResult,
    MultiPartitionsDefinition,
    multi_asset,
)

from ..normalize import normalize_partition
from ..partitions import split_partition_key
from ..resources import MoEngageResource, WarehouseResource
from ..schemas import CAMPAIGN_STATS_RAW, NORMALIZED_TABLES
from ..warehouse import read_slice, replace_slices
from .check_specs import results, specs, table_checks
from .metadata import GROUP, OWNERS, asset_key, lineage_from_raw, preview, static_metadata


def _spec(table, freshness_policy: FreshnessPolicy | None) -> AssetSpec:
    return AssetSpec(
        freshness_policy=freshness_policy,
        key=asset_key(table),
        deps=[asset_key(CAMPAIGN_STATS_RAW)],
        description=f"{table.description}. One row per {', '.join(table.keys)}.",
        group_name=GROUP,
        kinds={"duckdb", "pandas"},
        owners=OWNERS,
        metadata={
            **static_metadata(table),
            "dagster/column_lineage": lineage_from_raw(table, CAMPAIGN_STATS_RAW),
        },
    )


def build_table_assets(
    partitions_def: MultiPartitionsDefinition, freshness_policy: FreshnessPolicy | None = None
):
    @multi_asset(
        name="campaign_stats_tables",
        specs=[_spec(t, freshness_policy) for t in NORMALIZED_TABLES],
        check_specs=[s for t in NORMALIZED_TABLES for s in specs(asset_key(t), t)],
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
        can_subset=False,
    )
    def campaign_stats_tables(
        context: AssetExecutionContext, moengage: MoEngageResource, warehouse: WarehouseResource
    ):
        """Normalize the raw slice into performance, conversion, funnel and failure tables.

        Pure normalization (no API call), so a partition can be rebuilt from stored payloads.
        The four slices are replaced in one transaction.
        """
        workspace_id, stat_date = split_partition_key(context.partition_key)
        ws = moengage.workspace(workspace_id)
        with warehouse.connection() as conn:
            raw = read_slice(
                conn, CAMPAIGN_STATS_RAW, workspace_id=workspace_id, stat_date=stat_date
            )
        rows = raw[["metric_type", "attribution_type", "campaign_id", "payload"]].itertuples(
            index=False, name=None
        )
        frames = normalize_partition(
            rows,
            workspace_id=workspace_id,
            stat_date=stat_date,
            attribution_order=ws.attribution_types,
        )
        with warehouse.connection() as conn:
            replace_slices(conn, frames, workspace_id=workspace_id, stat_date=stat_date)
        for table in NORMALIZED_TABLES:
            frame = frames[table.name]
            key = asset_key(table)
            yield MaterializeResult(
                asset_key=key,
                metadata={"dagster/row_count": len(frame), "preview": preview(frame)},
                check_results=results(key, frame, table_checks(table)),
            )

    return campaign_stats_tables
