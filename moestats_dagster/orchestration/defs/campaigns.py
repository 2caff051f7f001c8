"""`moestats/campaigns`: every campaign's metadata, per workspace."""

import datetime as dt

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
)

from moestats_dagster.lakehouse.warehouse import (
    read_slice,
    replace_slices,
)
from moestats_dagster.model import checks
from moestats_dagster.model.frames import campaigns_frame
from moestats_dagster.model.schemas import (
    CAMPAIGN_STATS_RAW,
    CAMPAIGNS,
)
from moestats_dagster.orchestration.lib.campaign_sources import (
    fetch_metadata,
    previous_unavailable,
    source_outcome,
    sources,
    stats_campaigns,
)
from moestats_dagster.orchestration.lib.check_specs import (
    ERROR,
    WARN,
    Check,
    refuse_if_blocking,
    result,
    table_checks,
)
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
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


def build_campaigns_asset(
    partitions_def: StaticPartitionsDefinition, naming: Naming = DEFAULT_NAMING
):
    KEY = naming.key(CAMPAIGNS)  # noqa: N806 (a constant of this build)

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

    return campaigns
