"""`moestats/campaign_stats_raw`: the Stats API's answers for one day x workspace, verbatim."""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    MultiPartitionsDefinition,
    asset,
)

from .. import checks
from ..frames import raw_frame
from ..moengage import MoEngageError
from ..partitions import split_partition_key
from ..resources import MoEngageResource, WarehouseResource
from ..schemas import CAMPAIGN_STATS_RAW
from ..warehouse import replace_slices
from .check_specs import COMPLETE_NAME, RAW_CHECKS, result, results, specs
from .metadata import GROUP, OWNERS, asset_key, preview, static_metadata

KEY = asset_key(CAMPAIGN_STATS_RAW)


def build_raw_asset(
    partitions_def: MultiPartitionsDefinition, freshness_policy: FreshnessPolicy | None = None
):
    @asset(
        key=KEY,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
        group_name=GROUP,
        kinds={"moengage", "duckdb", "pandas"},
        owners=OWNERS,
        metadata=static_metadata(CAMPAIGN_STATS_RAW),
        check_specs=specs(KEY, RAW_CHECKS),
        freshness_policy=freshness_policy,
    )
    def campaign_stats_raw(
        context: AssetExecutionContext, moengage: MoEngageResource, warehouse: WarehouseResource
    ):
        """Every campaign's Stats API payload for the partition's day and workspace: one row per
        metric type x attribution type x campaign, the API's JSON kept verbatim.

        Fetched completely (every campaign exactly once, proven against `total_campaigns`) or not
        at all: if any call fails, nothing is written and the previous slice stays.
        """
        workspace_id, stat_date = split_partition_key(context.partition_key)
        ws = moengage.workspace(workspace_id)
        combinations = [(m, a) for m in ws.metric_types for a in ws.attribution_types]
        fetched_at = dt.datetime.now(dt.UTC)
        with moengage.client(workspace_id, logger=context.log) as client:
            try:
                days = client.fetch_days(
                    stat_date=stat_date,
                    combinations=combinations,
                    campaign_ids=list(ws.campaign_ids) or None,
                )
            except MoEngageError as exc:  # already worded for people; say which day, too
                raise Failure(
                    description=f"{stat_date}|{workspace_id}: nothing was written, the previous "
                    f"slice is kept. {exc}",
                    metadata={"error": type(exc).__name__, **client.counters.as_dict()},
                ) from None
            counters = client.counters
        frame = raw_frame(
            days, workspace_id=workspace_id, stat_date=stat_date, fetched_at=fetched_at
        )
        totals = {(d.metric_type, d.attribution_type): d.total_campaigns for d in days}
        complete = checks.raw_complete(frame, totals)
        if not complete.passed and complete.severity is None:  # refused before it is written
            raise Failure(
                description=f"{workspace_id} {stat_date}: the fetched day is incomplete; nothing "
                "was written and the previous slice is kept. Re-run the partition.",
                metadata=result(KEY, RAW_CHECKS[0], complete).metadata,
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
            },
            check_results=[
                result(KEY, RAW_CHECKS[0], complete),
                *results(KEY, frame, [c for c in RAW_CHECKS if c.name != COMPLETE_NAME]),
            ],
        )

    return campaign_stats_raw
