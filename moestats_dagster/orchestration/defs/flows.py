"""`moestats/flows` and `moestats/flow_campaigns` (per workspace) and `moestats/flow_daily_summary`.

The stats step finds a workspace's flows before each run (flow_sources.py) and keeps them in the
lake; these assets show that cache in the UI with its lineage, schema and checks, refresh it
after new stats, and hold `flows_available`: the WARN that says once, when flow-linked campaigns
cannot be found for a workspace, what to ask MoEngage for.
"""

import datetime as dt

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    StaticPartitionsDefinition,
    TableColumnDep,
    TableColumnLineage,
    multi_asset,
)

from moestats_dagster.lakehouse.warehouse import replace_views, table_name
from moestats_dagster.model import checks
from moestats_dagster.model.flows import flow_frames
from moestats_dagster.model.schemas import (
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGN_STATS_RAW,
    FLOW_CAMPAIGNS,
    FLOW_DAILY_SUMMARY,
    FLOWS,
)
from moestats_dagster.model.summary import flow_sql
from moestats_dagster.orchestration.lib.campaign_sources import previous_unavailable
from moestats_dagster.orchestration.lib.check_specs import WARN, Check, result, table_checks
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.lib.flow_sources import availability, find_flows
from moestats_dagster.orchestration.lib.metadata import (
    DEFAULT_NAMING,
    OWNERS,
    Naming,
    preview,
    static_metadata,
)
from moestats_dagster.orchestration.lib.partitions import BY_WORKSPACE, ONE_PER_RUN
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource
from moestats_dagster.orchestration.lib.retries import retried_only_if_curable
from moestats_dagster.orchestration.lib.views import view_asset, view_result

FLOWS_AVAILABLE = Check(
    "flows_available",
    "Source (WARN): the workspace's flows can be read (Flows API, v5 key), so flow-linked "
    "campaigns, whose stats come only when named, are loaded; when they cannot, says what to ask "
    "MoEngage for or configure (posted to Slack once, not every night).",
    WARN,
    lambda frame: checks.Outcome(True),  # run with what discovery found
)
FLOW_CHECKS = [FLOWS_AVAILABLE, *table_checks(FLOWS)]
STEP_CHECKS = table_checks(FLOW_CAMPAIGNS)


def build_flow_assets(partitions_def: StaticPartitionsDefinition, naming: Naming = DEFAULT_NAMING):
    FLOWS_KEY, STEPS_KEY = naming.key(FLOWS), naming.key(FLOW_CAMPAIGNS)  # noqa: N806
    common = {"group_name": naming.group, "owners": OWNERS, "kinds": {"moengage", "duckdb"},
              "automation_condition": REFRESH_AFTER_STATS}  # fmt: skip

    @multi_asset(
        name="flows" if naming == DEFAULT_NAMING else naming.name("flows"),
        specs=[
            AssetSpec(
                FLOWS_KEY,
                deps=[AssetDep(naming.key(CAMPAIGN_STATS_RAW), partition_mapping=BY_WORKSPACE)],
                description=f"{FLOWS.description}. One row per flow; refreshed after new stats "
                "(the stats step reads this cache and asks the API only for what changed).",
                metadata=static_metadata(FLOWS) | {"partition_expr": "workspace_id"},
                **common,
            ),
            AssetSpec(
                STEPS_KEY,
                deps=[FLOWS_KEY],
                description=f"{FLOW_CAMPAIGNS.description}. One row per flow x version x "
                "campaign: what joins a stats row to its flow (on workspace_id, campaign_id).",
                metadata=static_metadata(FLOW_CAMPAIGNS) | {"partition_expr": "workspace_id"},
                **common,
            ),
        ],
        check_specs=[
            *(
                AssetCheckSpec(
                    c.name, asset=FLOWS_KEY, description=c.description, blocking=c.blocking
                )
                for c in FLOW_CHECKS
            ),
            *(
                AssetCheckSpec(
                    c.name, asset=STEPS_KEY, description=c.description, blocking=c.blocking
                )
                for c in STEP_CHECKS
            ),
        ],  # fmt: skip
        partitions_def=partitions_def,
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.moengage, naming.warehouse},
    )
    def flows(context: AssetExecutionContext):
        """Every flow of the workspace and the step campaigns of each of its versions, from the
        Flows API: a flow is read again only when its updated_at or active version changed.
        Without a v5 key or Flows API access, the flows found before are kept and the check
        `flows_available` (WARN) says what to ask for."""
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        with retried_only_if_curable(context, workspace_id), warehouse.get_connection() as conn:
            found = find_flows(moengage, conn, workspace_id, log=context.log,
                               before=dt.date.today() + dt.timedelta(days=1),
                               retry_seconds=warehouse.retry_seconds)  # fmt: skip
        flow_rows, step_rows = flow_frames(
            found.flows, workspace_id=workspace_id, fetched_at=dt.datetime.now(dt.UTC)
        )
        available = availability(
            moengage.workspace(workspace_id), found,
            previous_unavailable(context, FLOWS_KEY, workspace_id),
        )  # fmt: skip
        if not available.passed:
            context.log.warning(available.metadata["summary"])
        yield MaterializeResult(
            asset_key=FLOWS_KEY,
            metadata={
                "dagster/row_count": len(flow_rows),
                **found.metadata,
                "stored": found.stored,
                "unavailable": available.metadata["unavailable"],
                "preview": preview(flow_rows.drop(columns=["listed", "versions"])),
            },
            check_results=[result(FLOWS_KEY, FLOWS_AVAILABLE, available)]
            + [result(FLOWS_KEY, c, c.run(flow_rows)) for c in FLOW_CHECKS[1:]],
        )
        yield MaterializeResult(
            asset_key=STEPS_KEY,
            metadata={
                "dagster/row_count": len(step_rows),
                "campaigns": int(step_rows.campaign_id.nunique()),
                "preview": preview(step_rows),
            },  # fmt: skip
            check_results=[result(STEPS_KEY, c, c.run(step_rows)) for c in STEP_CHECKS],
        )

    @view_asset(
        naming,
        partitions_def,
        FLOW_DAILY_SUMMARY,
        deps=[naming.key(CAMPAIGN_DAILY_SUMMARY), FLOWS_KEY, STEPS_KEY],
        lineage=_lineage(naming),
        description=FLOW_DAILY_SUMMARY.description,
    )
    def flow_daily_summary(context: AssetExecutionContext):
        """A DuckDB view, always current: each flow's steps summed per day (TOTAL counts)."""
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        with warehouse.get_connection() as conn:
            names = [table_name(conn, t) for t in (CAMPAIGN_DAILY_SUMMARY, FLOWS, FLOW_CAMPAIGNS,
                                                   FLOW_DAILY_SUMMARY)]  # fmt: skip
            replace_views(conn, [flow_sql(*names)], warehouse.retry_seconds)
            return view_result(conn, names[-1], workspace_id, 12)

    return [flows, flow_daily_summary]


def _lineage(naming: Naming) -> TableColumnLineage:
    summary, flows, steps = (naming.key(t) for t in (CAMPAIGN_DAILY_SUMMARY, FLOWS, FLOW_CAMPAIGNS))
    deps = {c: [TableColumnDep(asset_key=summary, column_name=c)]
            for c in FLOW_DAILY_SUMMARY.names if c in CAMPAIGN_DAILY_SUMMARY.names}  # fmt: skip
    deps["flow_id"] = [TableColumnDep(asset_key=steps, column_name="flow_id")]
    deps["flow_name"] = [TableColumnDep(asset_key=flows, column_name="flow_name")]
    deps["flow_status"] = [TableColumnDep(asset_key=flows, column_name="status")]
    deps["steps_with_stats"] = [TableColumnDep(asset_key=steps, column_name="campaign_id")]
    return TableColumnLineage(deps)
