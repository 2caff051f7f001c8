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
    MaterializeResult,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
    TableColumnDep,
    TableColumnLineage,
    asset,
)

from moestats_dagster.lakehouse.warehouse import (
    read_slice,
    replace_slices,
    replace_views,
    table_name,
)
from moestats_dagster.model import checks
from moestats_dagster.model.frames import campaigns_frame
from moestats_dagster.model.schemas import (
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGN_STATS_RAW,
    CAMPAIGNS,
    CONVERSION_GOAL_STATS,
    PARENT_CAMPAIGN_DAILY_SUMMARY,
    PERFORMANCE_STATS,
)
from moestats_dagster.model.summary import rollup_sql, summary_sql
from moestats_dagster.orchestration.assets.automation import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.assets.campaign_sources import (
    fetch_metadata,
    previous_unavailable,
    source_outcome,
    sources,
    stats_campaigns,
)
from moestats_dagster.orchestration.assets.check_specs import (
    ERROR,
    WARN,
    Check,
    refuse_if_blocking,
    result,
    table_checks,
)
from moestats_dagster.orchestration.assets.metadata import (
    DEFAULT_NAMING,
    OWNERS,
    Naming,
    column_schema,
    preview,
    static_metadata,
)
from moestats_dagster.orchestration.assets.retries import retried_only_if_curable
from moestats_dagster.orchestration.resources import MoEngageResource, WarehouseResource

with warnings.catch_warnings():  # a "beta" notice; the mapping is what the lineage means
    warnings.simplefilter("ignore", BetaWarning)
    BY_WORKSPACE = MultiToSingleDimensionPartitionMapping(partition_dimension_name="workspace")

# The stats' policy too: one backfill dialog, one policy (no "varying backfill policies" notice).
ONE_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)

NAMES_WINDOW_DAYS = 28
SOURCE_AVAILABLE = Check(
    "metadata_source_available",
    "Source (WARN): one of the three metadata endpoints answers this workspace; when none does, "
    "says which permission or key to ask MoEngage for (posted to Slack once, not every night).",
    WARN,
    lambda frame: checks.Outcome(True),  # run with what the sources answered
)
HAS_NAMES = Check(
    "stats_campaigns_have_names",
    f"Source data (WARN): every campaign with stats in the last {NAMES_WINDOW_DAYS} days has a "
    "name; says how many have none and lists a few ids (their summary rows show bare ids).",
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
CAMPAIGN_CHECKS = [SOURCE_AVAILABLE, HAS_NAMES, NO_CYCLES, *table_checks(CAMPAIGNS)]


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
        parent (and, by source, reachability, team, revision, archived) of every campaign id
        seen in this workspace's stats. A parent has no parent_campaign_id (MoEngage's FAQ): this
        is what tells periodic and flow children from their parents.

        From the workspace's `campaign_metadata` source: v1/campaigns/search, Campaign Meta or
        v5/campaigns/search; `auto` takes the first that answers (the one that worked last time
        first). When none does, nothing is fetched, the last metadata is kept, and the check
        `metadata_source_available` (WARN) says which permission or key to ask for.

        Partitioned by workspace, refreshed after the stats: one row per campaign, replaced whole.
        """
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        ws = moengage.workspace(workspace_id)
        with warehouse.get_connection() as conn:
            seen = stats_campaigns(conn, workspace_id)
            recent = stats_campaigns(conn, workspace_id, days=NAMES_WINDOW_DAYS)
            stored = read_slice(conn, CAMPAIGNS, workspace_id=workspace_id)
        remembered = stored.source.dropna().iloc[0] if stored.source.notna().any() else None
        with retried_only_if_curable(context, workspace_id):
            source, found, tried, calls = fetch_metadata(
                context, moengage, workspace_id, seen, sources(ws, remembered)
            )
        previous = previous_unavailable(context, KEY, workspace_id)
        if source is None:
            # Keep the last metadata; say once (not every night) what would bring names back.
            names = checks.names_present(recent, stored, NAMES_WINDOW_DAYS)
            available = source_outcome(ws, tried, previous)
            context.log.warning(available.metadata["summary"])
            outcomes = [(SOURCE_AVAILABLE, available), (HAS_NAMES, names)] + [
                (c, checks.Outcome(True, metadata={"skipped": "nothing fetched"}))
                for c in CAMPAIGN_CHECKS[2:]
            ]
            return MaterializeResult(
                metadata={
                    "metadata_source": "none",
                    "fetched": False,
                    "dagster/row_count": len(stored),
                    "campaigns_in_stats": len(seen),
                    "reasons": dict(tried),
                    "unavailable": available.metadata["unavailable"],
                },
                check_results=[result(KEY, c, o) for c, o in outcomes],
            )
        frame = campaigns_frame(
            found, workspace_id=workspace_id, fetched_at=dt.datetime.now(dt.UTC), source=source
        )
        # Audit before publishing, as the stats step does: a blocking check that fails keeps the
        # last good metadata (and, failing the run, keeps the summary from running).
        available = source_outcome(ws, tried, previous, source)
        outcomes = [
            (SOURCE_AVAILABLE, available),
            (HAS_NAMES, checks.names_present(recent, frame, NAMES_WINDOW_DAYS)),
        ] + [(c, c.run(frame)) for c in CAMPAIGN_CHECKS[2:]]
        with retried_only_if_curable(context, workspace_id):
            refuse_if_blocking(workspace_id, "campaign metadata", {KEY: outcomes})
        with warehouse.get_connection() as conn:
            replace_slices(conn, {CAMPAIGNS.name: frame}, workspace_id=workspace_id)
        context.log.info(
            f"{workspace_id}: metadata for {len(frame)} of {len(seen)} campaigns from "
            f"{source} in {calls} calls"
        )
        return MaterializeResult(
            metadata={
                "metadata_source": source,
                "fetched": True,
                "dagster/row_count": len(frame),
                "campaigns_in_stats": len(seen),
                "parents": int(frame.is_parent.sum()),
                "api_calls": calls,
                "reasons": dict(tried),
                "unavailable": available.metadata["unavailable"],
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
            replace_views(conn, [
                summary_sql(names["performance_stats"], names["conversion_goal_stats"],
                            names["campaigns"], names["campaign_daily_summary"]),
                rollup_sql(names["campaign_daily_summary"], names["campaigns"],
                           names["parent_campaign_daily_summary"]),
            ], warehouse.retry_seconds)  # fmt: skip
            return view_result(conn, names["campaign_daily_summary"], workspace_id, 14)

    return [campaigns, campaign_daily_summary]


def view_result(conn, view: str, workspace_id: str, columns: int) -> MaterializeResult:
    """A summary view's materialization: its rows for the workspace, newest and biggest first."""
    frame = conn.execute(
        f"SELECT * FROM {view} WHERE workspace_id = ? ORDER BY stat_date DESC, sent DESC NULLS LAST",
        [workspace_id],
    ).fetchdf()
    return MaterializeResult(
        metadata={"dagster/row_count": len(frame), "preview": preview(frame, columns=columns)}
    )


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
