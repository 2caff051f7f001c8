"""One day x workspace of campaign stats: fetch (or replay), normalize, audit and publish.

Write-audit-publish: the raw answers and the four tables of a partition come from the same fetch,
every blocking (ERROR) check is evaluated on the new slices *before* anything is published, and
the five slices are published in one DuckLake transaction. The asset (stats.py) runs this for each
day of its run and reports what it produced.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import duckdb
import pandas as pd
from dagster import AssetExecutionContext, Failure, MetadataValue

from moestats_dagster.lakehouse.lake import explained
from moestats_dagster.lakehouse.ledger import ledger_frame
from moestats_dagster.lakehouse.warehouse import (
    PublishedThenFailed,
    read_slice,
    replace_slices,
)
from moestats_dagster.messages import said
from moestats_dagster.model import anomalies, checks
from moestats_dagster.model.frames import raw_frame
from moestats_dagster.model.normalize import (
    MalformedPayloadError,
    normalize_partition,
    rows_in_chunks,
)
from moestats_dagster.model.schemas import (
    ANSWERS,
    CAMPAIGN_STATS_RAW,
    NORMALIZED_TABLES,
    PERFORMANCE_STATS,
)
from moestats_dagster.moengage import DayStats, MoEngageError
from moestats_dagster.orchestration.lib.check_specs import (
    COMPLETE_NAME,
    HEADLINE,
    RAW_CHECKS,
    Check,
    refuse_if_blocking,
    table_checks,
)
from moestats_dagster.orchestration.lib.flow_sources import FlowsFound, run_flows
from moestats_dagster.orchestration.lib.headlines import Headlines, headline_outcome
from moestats_dagster.orchestration.lib.metadata import Naming
from moestats_dagster.orchestration.lib.partitions import (
    DayNotOver,
    RunDay,
    loaded_days,
    refuse_unfinished_day,
)
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource

SANDBOX_NOTICE = (
    "the bundled MoEngage sandbox: synthetic data, no network (base_url: sandbox in the "
    "workspaces file; point MOESTATS_WORKSPACES_FILE at your own file for real workspaces)"
)


@dataclass
class DayLoaded:
    """What one day's fetch, audit and publish produced, for its materializations and checks."""

    raw: pd.DataFrame
    raw_metadata: dict
    frames: dict[str, pd.DataFrame]
    audited: dict
    after_commit: str | None = None  # published, then this failed (reported, not hidden)


@dataclass
class Known:
    """What a stats run learns once about one workspace and keeps for all its days: the days
    loaded before (asked of the instance), the headline numbers of the run's window (read from
    the lake), and the workspace's flows (found through the Flows API)."""

    first: dt.date  # the workspace's first and last day in the run
    last: dt.date
    loaded: set[dt.date] | None = None
    headlines: Headlines | None = None
    flows: FlowsFound | None = None
    flows_failed: str | None = None  # discovery failed so: the run's other days fail with it


def load_day(
    context: AssetExecutionContext,
    replay: bool,
    naming: Naming,
    day: RunDay,
    conn: duckdb.DuckDBPyConnection,
    known: Known,
) -> DayLoaded:
    """Fetch (or replay), normalize, audit and publish one day x workspace on the run's
    connection; `known` is what the run keeps of the day's workspace for all its days. A
    failure is raised for the run to judge (stats.py: a run of one day fails with it, a run of
    several goes on with its other days)."""
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    moengage: MoEngageResource = getattr(context.resources, naming.moengage)
    warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
    workspace_id, stat_date, where = day.workspace_id, day.stat_date, day.key
    # No half-days: refused before anything is fetched, and never retried.
    try:
        refuse_unfinished_day(moengage.settings(), workspace_id, stat_date)
    except DayNotOver as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    ws = moengage.workspace(workspace_id)
    if replay:
        raw = read_slice(conn, CAMPAIGN_STATS_RAW, workspace_id=workspace_id, stat_date=stat_date)
        totals = _stored_totals(raw)
        raw_metadata: dict = {"replayed_from_stored_raw": True}
    else:
        if known.flows_failed is not None:  # found once per run, failed once per run
            raise Failure(description=f"{where}: {known.flows_failed}", allow_retries=False)
        if known.flows is None:
            try:
                known.flows = run_flows(
                    context, moengage, warehouse, conn, workspace_id, where, known.first
                )
            except Failure as exc:
                known.flows_failed = (exc.description or "").removeprefix(f"{where}: ")
                raise
        fetched_at = dt.datetime.now(dt.UTC)
        raw, totals, raw_metadata, named = fetch_stats(
            context, moengage, workspace_id, stat_date, flows=known.flows
        )
        ledger = ledger_frame(workspace_id, stat_date, fetched_at, raw.campaign_id.unique(),
                              named, known.flows.flow_of())  # fmt: skip
    frames = normalized(raw, where, workspace_id, stat_date, ws.attribution_types)

    # Audit: every check on the new slices, before anything is visible.
    audited = {raw_key: _raw_outcomes(raw, totals)}
    for table in NORMALIZED_TABLES:
        frame = frames[table.name]
        audited[naming.key(table)] = [(c, c.run(frame)) for c in table_checks(table)]
    refuse_if_blocking(where, "data", audited)

    # Publish: the five slices (four on replay) in one transaction.
    published = {t.name: frames[t.name] for t in NORMALIZED_TABLES}
    if not replay:  # a replay keeps the ledger of the fetch it replays
        published[CAMPAIGN_STATS_RAW.name] = raw
        published[ANSWERS.name] = ledger
    after_commit = None  # what failed once the day was published, if anything
    try:
        replace_slices(
            conn,
            published,
            workspace_id=workspace_id,
            stat_date=stat_date,
            retry_seconds=warehouse.retry_seconds,
        )
    except PublishedThenFailed as exc:  # the catalog says it committed: published it is
        after_commit = str(exc)
    context.log.info(
        f"{where}: published {', '.join(f'{n} {len(f)}' for n, f in published.items())}"
    )
    # Business anomalies, against the stored history (after publishing: WARN only). From
    # here on the day is published: a failure is said as what it is, never "not published".
    try:
        with explained(warehouse.lake):  # a lake's error as a person can act on it
            headline = judged(context, moengage, raw_key, day, conn, frames, known)
    except Exception as exc:  # noqa: BLE001 (published stays published; said below)
        # the error's own "nothing was written" is about the read back: the day is published
        cause = re.sub(r"[;.,]?\s*[Nn]othing was written\.?", "", said(exc, 600))
        note = f"published {where}; the anomaly check could not read it back: {cause}"
        headline = checks.Outcome(False, metadata={"summary": note}, severity="WARN")
        after_commit = after_commit or note
    if known.loaded is not None:
        known.loaded.add(stat_date)
    audited[naming.key(PERFORMANCE_STATS)].append((HEADLINE, headline))
    return DayLoaded(raw, raw_metadata, frames, audited, after_commit)


def judged(
    context: AssetExecutionContext,
    moengage: MoEngageResource,
    raw_key,
    day: RunDay,
    conn: duckdb.DuckDBPyConnection,
    frames: dict[str, pd.DataFrame],
    known: Known,
) -> checks.Outcome:
    """The day's headline numbers judged against the workspace's history (the anomaly check).

    The workspace's first day of the run reads its headline numbers back from the lake, the day
    just published included, over the run's whole window (`known`); its later days are set
    from their own frames, as published, instead of reading the lake again."""
    if known.loaded is None:
        known.loaded = loaded_days(context.instance, raw_key, day.workspace_id)
    if known.headlines is None:
        known.headlines = Headlines.from_lake(
            conn, moengage, day.workspace_id, known.first - dt.timedelta(days=anomalies.WINDOW_DAYS),
            known.last,
        )  # fmt: skip
    else:
        known.headlines.set_day(day.stat_date, frames)
    return headline_outcome(
        moengage, known.headlines, day.workspace_id, day.stat_date, known.loaded
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
    flows: FlowsFound | None = None,
    metric_types: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, dict, dict, dict[str, bool]]:
    """The day (or the range to `end_date`) from the API: raw rows, the API's totals, what it
    cost (for metadata), and each campaign named by id with whether it answered (for the
    ledger). Then the flow-linked campaigns of `flows` that may answer and were not answered
    already, named 10 a call (the Stats API leaves them out otherwise). `metric_types`: the
    workspace's unless given."""
    where = f"{stat_date}{f'..{end_date}' if end_date else ''}|{workspace_id}"
    ws = moengage.workspace(workspace_id)
    combinations = [(m, a) for m in metric_types or ws.metric_types for a in ws.attribution_types]
    named: dict[str, bool] = {}
    fetched_at = dt.datetime.now(dt.UTC)
    flow_metadata: dict = flows.metadata if flows else {}
    with moengage.client(workspace_id, logger=context.log) as client:
        try:
            days = client.fetch_days(
                stat_date=stat_date,
                end_date=end_date,
                combinations=combinations,
                campaign_ids=list(ws.campaign_ids) or None,
            )
            if flows and flows.flows:
                days, flow_metadata, named = _with_flow_campaigns(
                    client, days, flows, stat_date, end_date, combinations
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
        **flow_metadata,
    }
    return raw, totals, metadata, named


def _with_flow_campaigns(
    client, days: list, flows: FlowsFound, stat_date: dt.date, end_date: dt.date | None,
    combinations: list[tuple[str, str]],
) -> tuple[list, dict, dict[str, bool]]:  # fmt: skip
    """Each combination's answer with the flow campaigns that were not in it, asked by id; and
    the metadata that proves every id asked was answered or had no stats."""
    may_send = flows.campaign_ids(stat_date, end_date or stat_date)
    answered = {c for d in days for c in d.campaigns}
    asked = [c for c in may_send if c not in answered]
    calls_before = client.counters.calls
    named = client.fetch_days(stat_date=stat_date, end_date=end_date, combinations=combinations,
                              campaign_ids=asked) if asked else []  # fmt: skip
    got = {c for d in named for c in d.campaigns}
    without = [c for c in asked if c not in got]
    merged = [
        DayStats(
            d.stat_date, d.metric_type, d.attribution_type,
            None if d.total_campaigns is None or n.total_campaigns is None
            else d.total_campaigns + n.total_campaigns,
            {**d.campaigns, **n.campaigns}, {**d.request_ids, **n.request_ids},
        )  # fmt: skip
        for d, n in zip(days, named, strict=True)
    ] if named else days  # fmt: skip
    metadata = {
        **flows.metadata,
        "flow_campaigns_asked": len(asked),
        "flow_campaigns_answered": len(got),
        "flow_campaigns_without_stats": len(without),
        "flow_campaigns_in_unnamed_pages": len(set(may_send) & answered),
        "flow_stats_calls": client.counters.calls - calls_before,
        **({"flow_campaigns_without_stats_ids": MetadataValue.json(without[:50])}
           if without else {}),
    }  # fmt: skip
    return merged, metadata, {c: c in got for c in asked}


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
