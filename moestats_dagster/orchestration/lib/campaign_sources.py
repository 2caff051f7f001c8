"""Which of MoEngage's three campaign-metadata endpoints a workspace gets its names from.

`auto` tries, in order: the source that worked last time (one call saved, the same shape of
rows as before); v5/campaigns/search when a Campaigns key is configured (the current API, and a
key someone created on purpose; it adds revisions, archived campaigns and `updated_at`);
v1/campaigns/search (the Campaign report key the stats already use, nothing to set up); Campaign
Meta last (Early Access: the rarest, though the only one with reachability). A source that
refuses this workspace (401/403, no key, 404 at a proxy) is skipped with its reason; any other
failure (429s past the retry budget, no answer) fails the run, since the next source would not
fare better against the same host.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import duckdb
from dagster import AssetExecutionContext, AssetKey, AssetRecordsFilter

from moestats_dagster.config import WorkspaceSettings
from moestats_dagster.lakehouse.warehouse import table_name
from moestats_dagster.model import checks
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW
from moestats_dagster.moengage import (
    AccessDeniedError,
    AuthenticationError,
    MoEngageError,
    RequestFailed,
)
from moestats_dagster.orchestration.lib.resources import MissingApiKeyError, MoEngageResource

AUTO_ORDER = ("v5", "search", "meta")
ENDPOINTS = {
    "search": "v1/campaigns/search",
    "meta": "v1/campaigns/meta (Campaign Meta)",
    "v5": "v5/campaigns/search",
}
ASK_FOR = {
    "search": "MoEngage (support or CSM) to enable the Campaigns API v1/campaigns/search",
    "meta": "MoEngage to enable Campaign Meta and Reachability (Early Access)",
    "v5": "a Campaigns API key with the Campaigns View permission (Settings > Account > API "
    "keys), named in campaigns_api_key_env",
}


def sources(ws: WorkspaceSettings, remembered: str | None) -> list[str]:
    """The endpoints to try, in order (see the module's docstring)."""
    if ws.campaign_metadata == "off":
        return []
    if ws.campaign_metadata != "auto":
        return [ws.campaign_metadata]
    order = [s for s in AUTO_ORDER if s != "v5" or ws.campaigns_api_key_env or ws.is_sandbox]
    if remembered in order:
        order.remove(remembered)
        order.insert(0, remembered)
    return order


def stats_campaigns(
    conn: duckdb.DuckDBPyConnection, workspace_id: str, days: int | None = None
) -> list[str]:
    """The campaign ids in the workspace's stats (of its last `days` days, if given)."""
    raw = table_name(conn, CAMPAIGN_STATS_RAW)
    recent = ""
    params: list[Any] = [workspace_id]
    if days is not None:
        recent = f" AND stat_date > (SELECT max(stat_date) FROM {raw} WHERE workspace_id = ?) - ?"
        params += [workspace_id, days]
    rows = conn.execute(
        f"SELECT DISTINCT campaign_id FROM {raw} WHERE workspace_id = ?{recent} ORDER BY 1",
        params,
    ).fetchall()
    return [r[0] for r in rows]


def refused(exc: Exception, endpoint: str) -> str | None:
    """Why `endpoint` refused this workspace, when `exc` is a refusal that no retry cures (no
    key, 401, 403, 404 at a proxy); None for any other failure, which the caller raises."""
    if isinstance(exc, (AuthenticationError, AccessDeniedError, MissingApiKeyError)):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RequestFailed) and exc.status == 404:
        return f"HTTP 404: {endpoint} is not served at this host"
    return None


def first_answer(
    moengage: MoEngageResource,
    workspace_id: str,
    order: list[str],
    ask: Callable[[Any], Any],
    log: logging.Logger | None = None,
) -> tuple[str | None, Any, dict[str, str], int]:
    """(the first source in `order` that answers `ask(client)` or None, its answer, why each
    source before it was skipped, calls made). A refusal skips to the next source; any other
    failure is raised."""
    tried: dict[str, str] = {}
    calls = 0
    for source in order:
        try:
            with moengage.campaign_client(workspace_id, source, logger=log) as client:
                try:
                    answer = ask(client)
                finally:
                    calls += client.counters.calls
        except (MoEngageError, MissingApiKeyError) as exc:
            why = refused(exc, ENDPOINTS[source])
            if why is None:
                raise
            tried[source] = why
            if log is not None:
                log.info(f"{workspace_id}: {ENDPOINTS[source]} skipped — {why}")
            continue
        return source, answer, tried, calls
    return None, None, tried, calls


def fetch_metadata(
    context: AssetExecutionContext,
    moengage: MoEngageResource,
    workspace_id: str,
    seen: list[str],
    order: list[str],
) -> tuple[str | None, list[dict[str, Any]], dict[str, str], int]:
    """(the source that answered or None, its campaign objects, why each skipped source was
    skipped, calls made). With no campaign in the stats, one probe call finds the source."""

    def ask(client) -> list[dict[str, Any]]:
        if seen:
            return client.fetch_campaigns(seen)
        client.probe()  # nothing to name: one call proves the source for next time
        return []

    source, found, tried, calls = first_answer(moengage, workspace_id, order, ask, context.log)
    return source, found or [], tried, calls


def previous_unavailable(
    context: AssetExecutionContext, key: AssetKey, partition: str
) -> dict[str, str] | None:
    """What the last materialization of this partition said was unavailable (None: never
    materialized, or it had a source)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    entry = materialization.metadata.get("unavailable") if materialization else None
    return entry.value if entry is not None else None


def source_outcome(
    ws: WorkspaceSettings,
    tried: dict[str, str],
    previous: dict[str, str] | None,
    source: str | None = None,
) -> checks.Outcome:
    """`metadata_source_available`: which source answered, or what to ask for. The same
    unavailability as last time is marked `already_reported`, so Slack hears it once."""
    unavailable = {s: reason.split(":", 1)[0] for s, reason in tried.items()}
    if source is not None:
        return checks.Outcome(
            True,
            metadata={"source": ENDPOINTS[source], "summary": f"names from {ENDPOINTS[source]}",
                      "skipped": tried, "unavailable": unavailable},
        )  # fmt: skip
    if ws.campaign_metadata == "off":
        return checks.Outcome(
            True, metadata={"summary": "campaign_metadata: off", "unavailable": {}}
        )
    options = list(tried) + (["v5"] if ws.campaign_metadata == "auto" and "v5" not in tried else [])
    ask = "; or ".join(ASK_FOR[s] for s in options)
    summary = (
        f"{ws.id}: no campaign metadata source answers ({', '.join(ENDPOINTS[s] for s in tried)}"
        f"), so campaigns show as bare ids; nothing was fetched and the last metadata is kept. "
        f"Ask for {ask}"
    )
    return checks.Outcome(
        False,
        metadata={
            "summary": summary,
            "reasons": tried,
            "unavailable": unavailable,
            "already_reported": previous == unavailable,
            "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
