"""`moestats/campaign_daily_summary`: the views a dashboard reads, per workspace."""

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    StaticPartitionsDefinition,
    TableColumnDep,
    TableColumnLineage,
)

from moestats_dagster.lakehouse.warehouse import replace_views, table_name
from moestats_dagster.model.schemas import (
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGNS,
    CONVERSION_GOAL_STATS,
    PARENT_CAMPAIGN_DAILY_SUMMARY,
    PERFORMANCE_STATS,
)
from moestats_dagster.model.summary import rollup_sql, summary_sql
from moestats_dagster.orchestration.lib.metadata import (
    DEFAULT_NAMING,
    Naming,
)
from moestats_dagster.orchestration.lib.partitions import BY_WORKSPACE
from moestats_dagster.orchestration.lib.resources import WarehouseResource
from moestats_dagster.orchestration.lib.views import view_asset, view_result


def build_summary_asset(
    partitions_def: StaticPartitionsDefinition, naming: Naming = DEFAULT_NAMING
):
    @view_asset(
        naming,
        partitions_def,
        CAMPAIGN_DAILY_SUMMARY,
        deps=[
            AssetDep(naming.key(PERFORMANCE_STATS), partition_mapping=BY_WORKSPACE),
            AssetDep(naming.key(CONVERSION_GOAL_STATS), partition_mapping=BY_WORKSPACE),
            naming.key(CAMPAIGNS),
        ],
        lineage=_summary_lineage(naming),
    )
    def campaign_daily_summary(context: AssetExecutionContext):
        """The table a dashboard reads: per workspace x day x metric type x campaign, name,
        channel and parent with sent, delivered, impressions, clicks and conversions for each
        attribution type, each campaign counted once across platforms, locales and variations.

        Two DuckDB views over the tables, always current: `moestats.campaign_daily_summary`, and
        `moestats.parent_campaign_daily_summary` with children rolled up to their parent.
        """
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        with warehouse.get_connection() as conn:
            names = {
                t.name: table_name(conn, t)
                for t in (PERFORMANCE_STATS, CONVERSION_GOAL_STATS, CAMPAIGNS,
                          CAMPAIGN_DAILY_SUMMARY, PARENT_CAMPAIGN_DAILY_SUMMARY)
            }  # fmt: skip
            replace_views(conn, [
                summary_sql(names["performance_stats"], names["conversion_goal_stats"],
                            names["campaigns"], names["campaign_daily_summary"]),
                rollup_sql(names["campaign_daily_summary"], names["campaigns"],
                           names["parent_campaign_daily_summary"]),
            ], warehouse.retry_seconds)  # fmt: skip
            return view_result(conn, names["campaign_daily_summary"], workspace_id, 14)

    return campaign_daily_summary


def _summary_lineage(naming: Naming) -> TableColumnLineage:
    perf, conv, meta = (
        naming.key(t) for t in (PERFORMANCE_STATS, CONVERSION_GOAL_STATS, CAMPAIGNS)
    )

    def dep(key: AssetKey, column: str) -> TableColumnDep:
        return TableColumnDep(asset_key=key, column_name=column)

    deps = {
        k: [dep(perf, k), dep(conv, k)]
        for k in ("workspace_id", "stat_date", "metric_type", "campaign_id")
    }
    deps |= {k: [dep(meta, k)] for k in ("campaign_name", "channel", "parent_campaign_id")}
    deps["rollup_campaign_id"] = [dep(meta, "parent_campaign_id"), dep(perf, "campaign_id")]
    deps |= {"sent": [dep(perf, "sent")], "delivered": [dep(perf, "delivered")],
             "impressions": [dep(perf, "impression")], "clicks": [dep(perf, "click")]}  # fmt: skip
    for column in CAMPAIGN_DAILY_SUMMARY.names:
        for metric in ("conversions", "revenue"):
            if column.startswith(f"{metric}_"):
                deps[column] = [dep(conv, metric), dep(conv, "attribution_type")]
    return TableColumnLineage(deps)
