"""The campaign stats asset: five tables of one day x workspace, one step, all or nothing.

Each day of a run is fetched, normalized, audited and published by stats_day.py (write-audit-
publish: a run killed anywhere, or a failing blocking check, leaves the last good slices of all
five tables in place, never a mix); this module declares the five assets and their checks, takes
the run's days, and reports each day's materializations and check results as its own partition.
"""

import os
import time
from collections.abc import Iterator

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    MultiPartitionsDefinition,
    PartitionKeyRange,
    multi_asset,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from pydantic import Field

from moestats_dagster.lakehouse.maintenance import merge_small_files
from moestats_dagster.messages import said
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, NORMALIZED_TABLES, PERFORMANCE_STATS
from moestats_dagster.orchestration.lib.check_specs import (
    HEADLINE,
    RAW_CHECKS,
    evaluation,
    result,
    specs,
)
from moestats_dagster.orchestration.lib.metadata import (
    DEFAULT_NAMING,
    OWNERS,
    Naming,
    lineage_from_raw,
    preview,
    static_metadata,
)
from moestats_dagster.orchestration.lib.partitions import RunDay
from moestats_dagster.orchestration.lib.resources import WarehouseResource
from moestats_dagster.orchestration.lib.retries import permanent, retried_only_if_curable
from moestats_dagster.orchestration.lib.stats_day import DayLoaded, Known, load_day


class StatsRunConfig(Config):
    replay: bool = Field(
        False,
        description="Rebuild the four tables from the stored raw slice, without calling the API "
        "(after a normalizer fix, or to re-check a day). The raw slice is kept as it is.",
    )


def _specs(freshness_policy: FreshnessPolicy | None, naming: Naming) -> list[AssetSpec]:
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    raw = AssetSpec(
        key=raw_key,
        description="Every campaign's Stats API payload for the partition's day and workspace: one "
        "row per metric type x attribution type x campaign, the API's JSON kept verbatim. "
        "Fetched completely (every campaign exactly once, proven against total_campaigns) or "
        "not at all.",
        group_name=naming.group,
        kinds={"moengage", "duckdb", "pandas"},
        owners=OWNERS,
        metadata=static_metadata(CAMPAIGN_STATS_RAW),
        freshness_policy=freshness_policy,
    )
    tables = [
        AssetSpec(
            key=naming.key(table),
            deps=[raw_key],
            description=f"{table.description}. One row per {', '.join(table.keys)}.",
            group_name=naming.group,
            kinds={"duckdb", "pandas"},
            owners=OWNERS,
            metadata={
                **static_metadata(table),
                "dagster/column_lineage": lineage_from_raw(table, CAMPAIGN_STATS_RAW, naming),
            },
            freshness_policy=freshness_policy,
        )
        for table in NORMALIZED_TABLES
    ]
    return [raw, *tables]


def build_stats_asset(
    partitions_def: MultiPartitionsDefinition,
    freshness_policy: FreshnessPolicy | None = None,
    naming: Naming = DEFAULT_NAMING,
):
    RAW_KEY = naming.key(CAMPAIGN_STATS_RAW)  # noqa: N806 (a constant of this build)

    @multi_asset(
        # `ops: {campaign_stats: {config: {replay: true}}}` in run config; unique per prefix.
        name="campaign_stats" if naming == DEFAULT_NAMING else naming.name("campaign_stats"),
        specs=_specs(freshness_policy, naming),
        check_specs=[
            *specs(RAW_KEY, RAW_CHECKS),
            *(s for t in NORMALIZED_TABLES for s in specs(naming.key(t), t)),
            *specs(naming.key(PERFORMANCE_STATS), [HEADLINE]),
        ],
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=days_per_run()),
        # Subsets are welcome (`--select moestats/campaign_stats_raw`); the step still publishes
        # the five tables together and reports the ones not selected as events.
        can_subset=True,
        required_resource_keys={naming.moengage, naming.warehouse},
    )
    def campaign_stats(context: AssetExecutionContext, config: StatsRunConfig):
        """Fetch the day from the Stats API (or, with `replay`, take the stored raw slice),
        normalize it into performance, conversion, funnel and failure tables, run every check on
        the new slices, and publish all five together — or nothing, if a blocking check fails.

        A backfill's run may hold several days of one workspace (BACKFILL_DAYS_PER_RUN): each
        day is still fetched, audited and published on its own, materialized and checked as its
        own partition, and fails on its own; the run fails at the end naming the days that did."""
        days = run_days(context)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        # What the run learns once per workspace (days loaded before, headline numbers of the
        # run's window, flows) and keeps for all of that workspace's days.
        known = {
            ws: Known(first=min(d.stat_date for d in days if d.workspace_id == ws),
                      last=max(d.stat_date for d in days if d.workspace_id == ws))
            for ws in dict.fromkeys(d.workspace_id for d in days)
        }  # fmt: skip
        alone = len(days) == 1
        failed: dict[str, Exception] = {}
        published_then: dict[str, str] = {}  # published, then something failed
        with (
            retried_only_if_curable(
                context, days[0].key if alone else f"{days[0].key} to {days[-1].key}"
            ),  # fmt: skip
            # One connection for all the days (attaching the lake is the costly part of
            # opening one); each day still publishes in a transaction of its own.
            warehouse.get_connection() as conn,
        ):
            for day in days:
                try:
                    loaded = load_day(context, config.replay, naming, day, conn,
                                      known[day.workspace_id])  # fmt: skip
                except Exception as exc:
                    if alone:  # the run's only day: its failure decides the retry (above)
                        raise
                    failed[day.key] = exc  # this day only: the next days still load
                    context.log.error(f"{day.key}: {_said(exc).removeprefix(f'{day.key}: ')}")
                    continue
                if alone:  # a day's run shows previews and yields its results
                    yield from _outputs(context, naming, day.key, loaded)
                else:
                    for event in _events(naming, day.key, loaded):
                        context.log_event(event)
                if loaded.after_commit:
                    published_then[day.key] = loaded.after_commit
                    if not alone:
                        context.log.error(f"{day.key}: {loaded.after_commit}")
            if not alone:  # a history load's runs keep the lake's files few
                _merge_small_files(context, conn, warehouse.retry_seconds)
            if failed:
                raise _range_failure([d.key for d in days], failed, published_then)
            if published_then:  # recorded as materialized above; the failure said as it is
                raise _after_commit_failure(published_then)

    return campaign_stats


def _merge_small_files(context: AssetExecutionContext, conn, lock_seconds: float) -> None:
    """A history load's runs keep the lake's files few (lakehouse.maintenance.merge_small_files):
    each day's queries and publishes read the tables' file lists, which otherwise grow by five
    files a day. The days are published: a merge that cannot run now is left to the next run
    or the weekly maintenance, never a failure of this one."""
    started = time.monotonic()
    try:
        merged = merge_small_files(conn, lock_seconds)
    except Exception as exc:  # noqa: BLE001 (published days stay published; said, not raised)
        context.log.warning(f"small files not merged this time ({_said(exc)}); the next run or "
                            "the weekly lake maintenance will")  # fmt: skip
        return
    if merged:
        context.log.info(f"merged the lake's small files: {merged[0]} -> {merged[1]} files in "
                         f"{time.monotonic() - started:.1f}s")  # fmt: skip


def run_days(context: AssetExecutionContext) -> list[RunDay]:
    """The run's partitions, each key parsed once. Written by hand because Dagster gets one case wrong: a backfill
    launched from the job's page (as `moestats backfill` and the demo launch theirs) tags each
    run with its range and also with the first key's per-dimension tags, and then gives the
    step only that first key (dagster-io/dagster#28861, open in 1.13): a run of 15 days would
    load one. The range tags are what the backfill meant."""
    keys = list(context.partition_keys)
    tags = context.run.tags
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if len(keys) == 1 and start and end and start != end:
        partitions = context.assets_def.partitions_def
        keys = partitions.get_partition_keys_in_range(PartitionKeyRange(start, end))
    return [RunDay.of(key) for key in keys]


DAYS_PER_RUN_ENV = "MOESTATS_BACKFILL_DAYS_PER_RUN"
BACKFILL_DAYS_PER_RUN = 45
"""A backfill's runs take up to this many days of one workspace each (MOESTATS_BACKFILL_DAYS_PER_RUN;
1: a run per day): a run's process start, imports and lake attach are paid once per 45 days,
not per day (docs/benchmarks.md, "Measurements behind the code"). A workspace's runs go one at a time anyway (its rate limit is not shared),
so longer runs cost a one-workspace load no parallelism; what they cost is a retry, which loads
the run's days again (replacing them, never doubling them). Schedules and catch-up still
request one day per run."""


def days_per_run() -> int:
    value = os.environ.get(DAYS_PER_RUN_ENV, "").strip()
    if not value:
        return BACKFILL_DAYS_PER_RUN
    if not value.isdigit() or not 1 <= int(value) <= 366:
        raise ValueError(
            f"{DAYS_PER_RUN_ENV}={value[:20]!r}: write a whole number of days from 1 (a run per "
            f"day) to 366; unset, a backfill's run takes {BACKFILL_DAYS_PER_RUN} days"
        )
    return int(value)


def _materializations(
    naming: Naming, day: DayLoaded, previews: bool = True
) -> Iterator[tuple[AssetKey, dict]]:
    """Each stats asset's materialization metadata for one day. `previews`: the first rows as a
    table — a day's run shows them; a history run's days keep their row counts only (rendering
    five previews is a large share of a history day's CPU)."""
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    raw = {"preview": preview(day.raw.drop(columns=["payload"]))} if previews else {}
    yield raw_key, {"dagster/row_count": len(day.raw), **day.raw_metadata, **raw}
    for table in NORMALIZED_TABLES:
        frame = day.frames[table.name]
        shown = {"preview": preview(frame)} if previews else {}
        yield naming.key(table), {"dagster/row_count": len(frame), **shown}


def _outputs(context: AssetExecutionContext, naming: Naming, key: str, day: DayLoaded):
    """One day's run: a MaterializeResult (with its checks) per selected asset. The step always
    publishes all five tables together, so the ones not selected are reported as events."""
    selected = context.selected_asset_keys
    for asset_key, metadata in _materializations(naming, day):
        outcomes = day.audited[asset_key]
        if asset_key in selected:
            yield MaterializeResult(
                asset_key=asset_key,
                metadata=metadata,
                check_results=[result(asset_key, c, o) for c, o in outcomes],
            )
        else:
            context.log_event(AssetMaterialization(asset_key, partition=key, metadata=metadata))
            for c, o in outcomes:
                context.log_event(evaluation(asset_key, c, o, key))


def _events(naming: Naming, key: str, day: DayLoaded) -> Iterator:
    """One day of a several-day run: its materializations and check results as events of its
    own partition."""
    for asset_key, metadata in _materializations(naming, day, previews=False):
        yield AssetMaterialization(asset_key, partition=key, metadata=metadata)
        for c, o in day.audited[asset_key]:
            yield evaluation(asset_key, c, o, key)


def _said(exc: Exception) -> str:
    if isinstance(exc, Failure) and exc.description:
        return exc.description.strip().splitlines()[0][:500]
    return said(exc, 500)


def _after_commit_failure(published_then: dict[str, str]) -> Failure:
    """Days that were published and materialized, then something failed: said as that."""
    return Failure(
        description="; ".join(published_then.values())
        + ". The day is in the lake and materialized; its anomaly check runs again with the "
        "next run of the day",
        metadata={"published_partitions": MetadataValue.json(list(published_then))},
        allow_retries=False,  # a retry would fetch and publish the same day again
    )


def _range_failure(
    keys: list[str], failed: dict[str, Exception], published_then: dict[str, str] | None = None
) -> Failure:
    """The run's failure once every day has had its turn: which days, and why."""
    loaded = len(keys) - len(failed)
    then = "; ".join((published_then or {}).values())
    return Failure(
        description=f"{len(failed)} of {len(keys)} days failed ({loaded} published and "
        "materialized); each keeps its last good slices: "
        + "; ".join(f"{k}: {_said(e).removeprefix(f'{k}: ')}" for k, e in failed.items())
        + (f". Published, then: {then}" if then else ""),
        metadata={"failed_partitions": MetadataValue.json(list(failed))},
        # Retry only when a retry may cure one of them (the published days are replaced as they
        # are: a retry repeats them, it never doubles them).
        allow_retries=not all(permanent(e) for e in failed.values()),
    )
