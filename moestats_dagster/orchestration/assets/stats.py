"""One day x workspace of campaign stats: fetch, normalize, audit, publish — one step, all or nothing.

Write-audit-publish: the raw answers and the four tables of a partition come from the same fetch,
every blocking (ERROR) check is evaluated on the new slices *before* anything is published, and
the five slices are published in one DuckLake transaction. A run killed anywhere, or a failing
blocking check, leaves the last good slices of all five tables in place, never a mix.
"""

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
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

from moestats_dagster.lakehouse.warehouse import read_slice, replace_slices, table_name
from moestats_dagster.model import anomalies, checks
from moestats_dagster.model.frames import raw_frame
from moestats_dagster.model.normalize import (
    MalformedPayloadError,
    normalize_partition,
    rows_in_chunks,
)
from moestats_dagster.model.schemas import (
    CAMPAIGN_STATS_RAW,
    CONVERSION_GOAL_STATS,
    NORMALIZED_TABLES,
    PERFORMANCE_STATS,
)
from moestats_dagster.model.summary import headline_sql
from moestats_dagster.moengage import MoEngageError
from moestats_dagster.orchestration.assets.check_specs import (
    COMPLETE_NAME,
    HEADLINE,
    RAW_CHECKS,
    Check,
    evaluation,
    refuse_if_blocking,
    result,
    specs,
    table_checks,
)
from moestats_dagster.orchestration.assets.metadata import (
    DEFAULT_NAMING,
    OWNERS,
    Naming,
    lineage_from_raw,
    preview,
    static_metadata,
)
from moestats_dagster.orchestration.assets.retries import permanent, retried_only_if_curable
from moestats_dagster.orchestration.partitions import split_partition_key
from moestats_dagster.orchestration.resources import MoEngageResource, WarehouseResource

SANDBOX_NOTICE = (
    "the bundled MoEngage sandbox: synthetic data, no network (base_url: sandbox in the "
    "workspaces file; point MOESTATS_WORKSPACES_FILE at your own file for real workspaces)"
)


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
        keys = run_partition_keys(context)
        if len(keys) == 1:
            day = _one_day(context, config, naming, keys[0])
            yield from _outputs(context, naming, keys[0], day)
            return
        failed: dict[str, Exception] = {}
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        with (
            retried_only_if_curable(context, f"{keys[0]} to {keys[-1]}"),
            # One connection for all the days: attaching the lake costs ~0.5 s, each day still
            # publishes in a transaction of its own.
            warehouse.get_connection() as conn,
        ):
            for key in keys:
                try:
                    day = _one_day(context, config, naming, key, conn=conn)
                except Exception as exc:  # this day only: the next days still load
                    failed[key] = exc
                    context.log.error(f"{key}: {_said(exc)}")
                    continue
                for event in _events(naming, key, day):
                    context.log_event(event)
            if failed:
                raise _range_failure(keys, failed)

    return campaign_stats


def run_partition_keys(context: AssetExecutionContext) -> list[str]:
    """The run's partitions. Written by hand because Dagster gets one case wrong: a backfill
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
    return keys


DAYS_PER_RUN_ENV = "MOESTATS_BACKFILL_DAYS_PER_RUN"
BACKFILL_DAYS_PER_RUN = 15
"""A backfill's runs take up to this many days of one workspace each (MOESTATS_BACKFILL_DAYS_PER_RUN;
1: a run per day): a run's process start and imports (seconds) are paid once per 15 days, not
per day. Schedules and catch-up still request one day per run."""


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


@dataclass
class DayLoaded:
    """What one day's fetch, audit and publish produced, for its materializations and checks."""

    raw: pd.DataFrame
    raw_metadata: dict
    frames: dict[str, pd.DataFrame]
    audited: dict


def _one_day(
    context: AssetExecutionContext,
    config: StatsRunConfig,
    naming: Naming,
    key: str,
    conn: duckdb.DuckDBPyConnection | None = None,
) -> DayLoaded:
    """Fetch (or replay), normalize, audit and publish one day x workspace. With `conn`, one day
    of a several-day run: on that run's connection, and its failure left to the run to judge once
    all its days have had their turn; without, the run's only day, whose failure decides whether
    the run is retried."""
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    moengage: MoEngageResource = getattr(context.resources, naming.moengage)
    warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
    workspace_id, stat_date = split_partition_key(key)
    where = f"{stat_date}|{workspace_id}"
    alone = conn is None
    guard = retried_only_if_curable(context, where) if alone else contextlib.nullcontext()
    opened = warehouse.get_connection() if alone else contextlib.nullcontext(conn)
    with guard, opened as conn:
        ws = moengage.workspace(workspace_id)
        if config.replay:
            raw = read_slice(
                conn, CAMPAIGN_STATS_RAW, workspace_id=workspace_id, stat_date=stat_date
            )
            totals = _stored_totals(raw)
            raw_metadata: dict = {"replayed_from_stored_raw": True}
        else:
            raw, totals, raw_metadata = fetch_stats(context, moengage, workspace_id, stat_date)
        frames = normalized(raw, where, workspace_id, stat_date, ws.attribution_types)

        # Audit: every check on the new slices, before anything is visible.
        audited = {raw_key: _raw_outcomes(raw, totals)}
        for table in NORMALIZED_TABLES:
            frame = frames[table.name]
            audited[naming.key(table)] = [(c, c.run(frame)) for c in table_checks(table)]
        refuse_if_blocking(where, "data", audited)

        # Publish: the five slices (four on replay) in one transaction.
        published = {t.name: frames[t.name] for t in NORMALIZED_TABLES}
        if not config.replay:
            published[CAMPAIGN_STATS_RAW.name] = raw
        replace_slices(
            conn,
            published,
            workspace_id=workspace_id,
            stat_date=stat_date,
            retry_seconds=warehouse.retry_seconds,
        )
        # Business anomalies, against the stored history (after publishing: WARN only).
        headline = _headline(context, moengage, conn, raw_key, workspace_id, stat_date)
        audited[naming.key(PERFORMANCE_STATS)].append((HEADLINE, headline))
        context.log.info(
            f"{where}: published {', '.join(f'{n} {len(f)}' for n, f in published.items())}"
        )
    return DayLoaded(raw, raw_metadata, frames, audited)


def _materializations(
    naming: Naming, day: DayLoaded, previews: bool = True
) -> Iterator[tuple[AssetKey, dict]]:
    """Each stats asset's materialization metadata for one day. `previews`: the first rows as a
    table — a day's run shows them; a history run's days keep their row counts only (rendering
    five previews cost ~0.1 CPU-s a day, measured)."""
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
    text = exc.description if isinstance(exc, Failure) and exc.description else str(exc)
    return (text or type(exc).__name__).splitlines()[0][:500]


def _range_failure(keys: list[str], failed: dict[str, Exception]) -> Failure:
    """The run's failure once every day has had its turn: which days, and why."""
    loaded = len(keys) - len(failed)
    return Failure(
        description=f"{len(failed)} of {len(keys)} days failed ({loaded} published and "
        "materialized); each keeps its last good slices: "
        + "; ".join(f"{k}: {_said(e)}" for k, e in failed.items()),
        metadata={"failed_partitions": MetadataValue.json(list(failed))},
        # Retry only when a retry may cure one of them (the published days are replaced as they
        # are: a retry repeats them, it never doubles them).
        allow_retries=not all(permanent(e) for e in failed.values()),
    )


def normalized(
    raw: pd.DataFrame, where: str, workspace_id: str, stat_date: dt.date, attribution_order
) -> dict[str, pd.DataFrame]:
    """The raw rows as the four tables; a malformed payload fails naming `where`."""
    try:
        return normalize_partition(
            rows_in_chunks(raw, ["metric_type", "attribution_type", "campaign_id", "payload"]),
            workspace_id=workspace_id,
            stat_date=stat_date,
            attribution_order=attribution_order,
            attributions_present=raw.attribution_type.unique().tolist(),
        )
    except MalformedPayloadError as exc:
        raise Failure(
            description=f"{where}: nothing was published, the previous slices are kept. {exc}"
        ) from None


def fetch_stats(
    context: AssetExecutionContext,
    moengage: MoEngageResource,
    workspace_id: str,
    stat_date: dt.date,
    end_date: dt.date | None = None,
) -> tuple[pd.DataFrame, dict, dict]:
    """The day (or the range to `end_date`) from the API: raw rows, the API's totals, and what
    it cost (for metadata)."""
    where = f"{stat_date}{f'..{end_date}' if end_date else ''}|{workspace_id}"
    ws = moengage.workspace(workspace_id)
    combinations = [(m, a) for m in ws.metric_types for a in ws.attribution_types]
    fetched_at = dt.datetime.now(dt.UTC)
    with moengage.client(workspace_id, logger=context.log) as client:
        try:
            days = client.fetch_days(
                stat_date=stat_date,
                end_date=end_date,
                combinations=combinations,
                campaign_ids=list(ws.campaign_ids) or None,
            )
        except MoEngageError as exc:  # already worded for people; say which day, too
            raise Failure(
                description=f"{where}: nothing was published, the previous slices are kept. {exc}",
                metadata={"error": type(exc).__name__, **client.counters.as_dict()},
            ) from None
        counters = client.counters
    campaigns = len({c for d in days for c in d.campaigns})  # before raw_frame empties them
    raw = raw_frame(days, workspace_id=workspace_id, stat_date=stat_date, fetched_at=fetched_at)
    totals = {(d.metric_type, d.attribution_type): d.total_campaigns for d in days}
    total_campaigns = {f"{d.metric_type}/{d.attribution_type}": d.total_campaigns for d in days}
    del days  # the payloads now live in the frame's Arrow buffers only
    context.log.info(
        f"{where}: {campaigns} campaigns, {len(raw)} rows from "
        f"{counters.calls} calls ({counters.retries} retries, {counters.throttled} x 429) "
        f"in {counters.seconds:.1f}s"
    )
    metadata = {
        **({"source": SANDBOX_NOTICE} if ws.is_sandbox else {}),
        "campaigns": campaigns,
        "api_calls": counters.calls,
        "api_pages": counters.pages,
        "api_retries": counters.retries,
        "api_429s": counters.throttled,
        "api_seconds": MetadataValue.float(round(counters.seconds, 3)),
        "api_waited_seconds": MetadataValue.float(round(counters.waited, 3)),
        "total_campaigns": total_campaigns,
    }
    return raw, totals, metadata


def _headline(
    context: AssetExecutionContext,
    moengage: MoEngageResource,
    conn: duckdb.DuckDBPyConnection,
    raw_key,
    workspace_id: str,
    stat_date: dt.date,
) -> checks.Outcome:
    """The day's headline numbers against the workspace's trailing 28 loaded days."""
    settings, ws = moengage.settings(), moengage.workspace(workspace_id)
    first = stat_date - dt.timedelta(days=anomalies.WINDOW_DAYS)
    loaded = {
        dt.date.fromisoformat(key.partition("|")[0])
        for key in context.instance.get_materialized_partitions(raw_key)
        if key.endswith(f"|{workspace_id}")
    } | {stat_date}
    loaded = {d for d in loaded if first <= d <= stat_date}
    rows = conn.execute(
        headline_sql(table_name(conn, PERFORMANCE_STATS), table_name(conn, CONVERSION_GOAL_STATS)),
        {"workspace": workspace_id, "first": first, "last": stat_date,
         "metric_type": ws.headline_metric_type, "attribution": ws.attribution_types[0]},
    ).fetchall()  # fmt: skip
    by_day = {row[0]: row[1:] for row in rows}
    history: dict[str, dict[dt.date, float]] = {m: {} for m in anomalies.METRICS}
    for day in loaded:  # a loaded day without rows sent nothing: 0, not unknown
        numbers = by_day.get(day, (0, 0, 0, None))
        for metric, value in zip(anomalies.METRICS, numbers, strict=True):
            if value is not None:
                history[metric][day] = float(value)
    values = {m: h.pop(stat_date) for m, h in history.items() if stat_date in h}
    today = dt.datetime.now(ZoneInfo(settings.zone(workspace_id))).date()
    return anomalies.judge(stat_date, today, settings.restatement_days, values, history)


def _stored_totals(raw: pd.DataFrame) -> dict[tuple[str, str], int | None]:
    """total_campaigns per metric x attribution as stored with the raw rows."""
    totals: dict[tuple[str, str], int | None] = {}
    for (metric, attribution), group in raw.groupby(["metric_type", "attribution_type"]):
        values = group.total_campaigns.dropna().unique()
        totals[(metric, attribution)] = int(values[0]) if len(values) == 1 else None
    return totals


def _raw_outcomes(raw: pd.DataFrame, totals: dict) -> list[tuple[Check, checks.Outcome]]:
    complete = next(c for c in RAW_CHECKS if c.name == COMPLETE_NAME)
    return [(complete, checks.raw_complete(raw, totals))] + [
        (c, c.run(raw)) for c in RAW_CHECKS if c.name != COMPLETE_NAME
    ]
