"""`moestats/campaign_stats_raw`: the Stats API's answers for one day x workspace, verbatim."""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    MultiPartitionsDefinition,
    asset,
)

from ..normalize import raw_frame
from ..partitions import split_partition_key
from ..resources import MoEngageResource, WarehouseResource
from ..schemas import CAMPAIGN_STATS_RAW
from ..warehouse import replace_slices
from .metadata import GROUP, OWNERS, PREFIX, preview, static_metadata


def build_raw_asset(partitions_def: MultiPartitionsDefinition):
    @asset(
        key=[PREFIX, CAMPAIGN_STATS_RAW.name],
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
        group_name=GROUP,
        kinds={"moengage", "duckdb", "pandas"},
        owners=OWNERS,
        metadata=static_metadata(CAMPAIGN_STATS_RAW),
    )
    def campaign_stats_raw(
        context: AssetExecutionContext, moengage: MoEngageResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        """Every campaign's Stats API payload for the partition's day and workspace: one row per
        metric type x attribution type x campaign, the API's JSON kept verbatim.

        Fetched completely (every campaign exactly once, proven against `total_campaigns`) or not
        at all: if any call fails, nothing is written and the previous slice stays.
        """
        workspace_id, stat_date = split_partition_key(context.partition_key)
        ws = moengage.workspace(workspace_id)
        combinations = [(m, a) for m in ws.metric_types for a in ws.attribution_types]
        fetched_at = dt.datetime.now(dt.UTC)
        with moengage.client(workspace_id) as client:
            days = client.fetch_days(
                stat_date=stat_date,
                combinations=combinations,
                campaign_ids=list(ws.campaign_ids) or None,
            )
            counters = client.counters
        frame = raw_frame(
            days, workspace_id=workspace_id, stat_date=stat_date, fetched_at=fetched_at
        )
        with warehouse.connection() as conn:
            replace_slices(
                conn,
                {CAMPAIGN_STATS_RAW.name: frame},
                workspace_id=workspace_id,
                stat_date=stat_date,
            )
        campaigns = len({c for d in days for c in d.campaigns})
        context.log.info(
            f"{workspace_id} {stat_date}: {campaigns} campaigns, {len(frame)} rows from "
            f"{counters.calls} calls ({counters.retries} retries, {counters.throttled} x 429) "
            f"in {counters.seconds:.1f}s"
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "campaigns": campaigns,
                "api_calls": counters.calls,
                "api_pages": counters.pages,
                "api_retries": counters.retries,
                "api_429s": counters.throttled,
                "api_seconds": MetadataValue.float(round(counters.seconds, 3)),
                "total_campaigns": {
                    f"{d.metric_type}/{d.attribution_type}": d.total_campaigns for d in days
                },  # fmt: skip
                "preview": preview(frame.drop(columns=["payload"])),
            }
        )

    return campaign_stats_raw
