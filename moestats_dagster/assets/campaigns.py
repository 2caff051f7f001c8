"""`moestats/campaigns` (metadata per workspace) and `moestats/campaign_daily_summary` (views)."""

import datetime as dt
import warnings

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    BetaWarning,
    Failure,
    MaterializeResult,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
    TableColumnDep,
    TableColumnLineage,
    asset,
)

from .. import checks
from ..frames import campaigns_frame
from ..moengage import AccessDeniedError
from ..resources import MoEngageResource, WarehouseResource
from ..schemas import (
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGN_STATS_RAW,
    CAMPAIGNS,
    CONVERSION_GOAL_STATS,
    PARENT_CAMPAIGN_DAILY_SUMMARY,
    PERFORMANCE_STATS,
)
from ..summary import rollup_sql, summary_sql
from ..warehouse import replace_slices, table_name
from .automation import REFRESH_AFTER_STATS
from .check_specs import ERROR, WARN, Check, refuse_if_blocking, result, table_checks
from .metadata import DEFAULT_NAMING, OWNERS, Naming, column_schema, preview, static_metadata

with warnings.catch_warnings():  # a "beta" notice; the mapping is what the lineage means
    warnings.simplefilter("ignore", BetaWarning)
    BY_WORKSPACE = MultiToSingleDimensionPartitionMapping(partition_dimension_name="workspace")

# The stats' policy too: one backfill dialog, one policy (no "varying backfill policies" notice).
ONE_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)

HAS_METADATA = Check(
    "every_stats_campaign_has_metadata",
    "Source data (WARN): every campaign id in the stats has metadata; lists the missing ids "
    "(their summary rows have no name, channel or parent).",
    WARN,
    lambda frame: checks.Outcome(True),  # run with the ids seen in the stats
)
NO_CYCLES = Check(
    "no_parent_cycles",
    "Source data (ERROR, blocking): following parent_campaign_id never loops; a cycle would make "
    "rolling children up to their parent meaningless, so the summary does not run.",
    ERROR,
    checks.no_parent_cycles,
)
CAMPAIGN_CHECKS = [HAS_METADATA, NO_CYCLES, *table_checks(CAMPAIGNS)]


def build_campaign_assets(
    partitions_def: StaticPartitionsDefinition, naming: Naming = DEFAULT_NAMING
):
    KEY, SUMMARY_KEY = naming.key(CAMPAIGNS), naming.key(CAMPAIGN_DAILY_SUMMARY)  # noqa: N806

    @asset(
        key=KEY,
        partitions_def=partitions_def,
        deps=[AssetDep(naming.key(CAMPAIGN_STATS_RAW), partition_mapping=BY_WORKSPACE)],
        group_name=naming.group,
        kinds={"moengage", "duckdb", "pandas"},
        owners=OWNERS,
        metadata=static_metadata(CAMPAIGNS) | {"partition_expr": "workspace_id"},
        automation_condition=REFRESH_AFTER_STATS,
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.moengage, naming.warehouse},
        check_specs=[
            AssetCheckSpec(c.name, asset=KEY, description=c.description, blocking=c.blocking)
            for c in CAMPAIGN_CHECKS
        ],
    )
    def campaigns(context: AssetExecutionContext):
        """Name, channel, platforms, status, delivery type, tags, creator, start time (UTC),
        parent and reachability of every campaign id seen in this workspace's stats, from the
        Campaign Meta and Reachability API. A parent has no parent_campaign_id (MoEngage's FAQ):
        this is what tells periodic and flow children from their parents.

        Partitioned by workspace, refreshed after the stats: one row per campaign, replaced whole.
        """
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        with warehouse.get_connection() as conn:
            seen = [
                r[0]
                for r in conn.execute(
                    f"SELECT DISTINCT campaign_id FROM {table_name(conn, CAMPAIGN_STATS_RAW)} "
                    "WHERE workspace_id = ? ORDER BY 1",
                    [workspace_id],
                ).fetchall()
            ]
        with moengage.meta_client(workspace_id, logger=context.log) as client:
            try:
                found = client.fetch_campaigns(seen)
            except AccessDeniedError as exc:  # Early Access: only this asset fails
                raise Failure(
                    description=str(exc),
                    metadata={"workspace": workspace_id, "campaigns_in_stats": len(seen)},
                    allow_retries=False,
                ) from None
            counters = client.counters
        frame = campaigns_frame(
            found, workspace_id=workspace_id, fetched_at=dt.datetime.now(dt.UTC)
        )
        # Audit before publishing, as the stats step does: a blocking check that fails keeps the
        # last good metadata (and, failing the run, keeps the summary from running).
        outcomes = [(HAS_METADATA, checks.metadata_complete(seen, frame))] + [
            (c, c.run(frame)) for c in CAMPAIGN_CHECKS[1:]
        ]
        refuse_if_blocking(workspace_id, "campaign metadata", {KEY: outcomes})
        with warehouse.get_connection() as conn:
            replace_slices(conn, {CAMPAIGNS.name: frame}, workspace_id=workspace_id)
        context.log.info(
            f"{workspace_id}: metadata for {len(frame)} of {len(seen)} campaigns in "
            f"{counters.calls} calls"
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "campaigns_in_stats": len(seen),
                "parents": int(frame.is_parent.sum()),
                "api_calls": counters.calls,
                "api_429s": counters.throttled,
                "preview": preview(frame.drop(columns=["metadata"])),
            },
            check_results=[result(KEY, c, o) for c, o in outcomes],
        )

    @asset(
        key=SUMMARY_KEY,
        partitions_def=partitions_def,
        deps=[
            AssetDep(naming.key(PERFORMANCE_STATS), partition_mapping=BY_WORKSPACE),
            AssetDep(naming.key(CONVERSION_GOAL_STATS), partition_mapping=BY_WORKSPACE),
            KEY,
        ],
        group_name=naming.group,
        kinds={"duckdb", "sql"},
        owners=OWNERS,
        automation_condition=REFRESH_AFTER_STATS,
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.warehouse},
        metadata={
            "dagster/column_schema": column_schema(CAMPAIGN_DAILY_SUMMARY),
            "dagster/table_name": f"duckdb.{CAMPAIGN_DAILY_SUMMARY.qualified}",
            "dagster/column_lineage": _summary_lineage(naming),
        },
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
            conn.execute(
                summary_sql(names["performance_stats"], names["conversion_goal_stats"],
                            names["campaigns"], names["campaign_daily_summary"])
            )  # fmt: skip
            conn.execute(
                rollup_sql(names["campaign_daily_summary"], names["campaigns"],
                           names["parent_campaign_daily_summary"])
            )  # fmt: skip
            frame = conn.execute(
                f"SELECT * FROM {names['campaign_daily_summary']} WHERE workspace_id = ? "
                "ORDER BY stat_date DESC, sent DESC NULLS LAST",
                [workspace_id],
            ).fetchdf()
        return MaterializeResult(
            metadata={"dagster/row_count": len(frame), "preview": preview(frame, columns=14)}
        )

    return [campaigns, campaign_daily_summary]


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
