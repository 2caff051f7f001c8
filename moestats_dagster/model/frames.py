"""Frames of the tables the client's objects fill as they are: the raw answers and the campaign
metadata. Pure functions, no I/O, no Dagster."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa

from moestats_dagster.model.normalize import MalformedPayloadError, _count, _Where
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, CAMPAIGNS, to_pandas


def raw_frame(
    days: Iterable[Any], *, workspace_id: str, stat_date: dt.date, fetched_at: dt.datetime
) -> pd.DataFrame:
    """The client's `DayStats` -> rows of the raw table, one per metric x attribution x campaign.

    Payloads move into Arrow a chunk at a time and leave the `DayStats` as they go (their
    `campaigns` are emptied): one Arrow array built from 50,000 payloads at once grows by
    doubling and briefly holds the day's JSON three times over (docs/benchmarks.md,
    "Measurements behind the code").
    """
    cols: dict[str, list[Any]] = {n: [] for n in CAMPAIGN_STATS_RAW.names if n != "payload"}
    chunks: list[pa.Array] = []
    pending: list[Any] = []
    for day in days:
        for campaign_id in list(day.campaigns):
            entries = day.campaigns.pop(campaign_id)
            cols["metric_type"].append(day.metric_type)
            cols["attribution_type"].append(day.attribution_type)
            cols["campaign_id"].append(campaign_id)
            pending.append(
                entries if isinstance(entries, bytes)
                else json.dumps(entries, separators=(",", ":"))
            )  # fmt: skip
            if len(pending) == _PAYLOAD_CHUNK:
                chunks.append(pa.array(pending, type=pa.string()))
                pending = []
            cols["request_id"].append(day.request_ids.get(campaign_id))
            cols["total_campaigns"].append(day.total_campaigns)
    chunks.append(pa.array(pending, type=pa.string()))
    n = len(cols["campaign_id"])
    cols["workspace_id"] = [workspace_id] * n
    cols["stat_date"] = [stat_date] * n
    cols["fetched_at"] = [fetched_at.replace(tzinfo=None)] * n
    table = CAMPAIGN_STATS_RAW.arrow(cols, length=n)
    payload = pa.chunked_array(chunks, type=pa.string())
    table = table.set_column(table.schema.get_field_index("payload"), "payload", payload)
    return to_pandas(table)


_PAYLOAD_CHUNK = 1000


def campaigns_frame(
    campaigns: Iterable[dict[str, Any]],
    *,
    workspace_id: str,
    fetched_at: dt.datetime,
    source: str = "meta",
) -> pd.DataFrame:
    """Campaign objects of one of the three metadata endpoints (`source`: search, meta, v5) ->
    rows of `moestats.campaigns` (times UTC, object verbatim)."""
    cols: dict[str, list[Any]] = {n: [] for n in CAMPAIGNS.names}
    shape = _META_SHAPE if source == "meta" else _SEARCH_SHAPE
    for found in campaigns:
        values = _campaign_row(found, source, shape)
        for name, value in values.items():
            cols[name].append(value)
    n = len(cols["campaign_id"])
    cols["workspace_id"] = [workspace_id] * n
    cols["fetched_at"] = [fetched_at.replace(tzinfo=None)] * n
    return CAMPAIGNS.frame(cols, length=n)


# Where each column's value sits in an object of each endpoint (dotted: nested).
_META_SHAPE = {
    "campaign_name": "campaign_name", "platforms": "platform", "campaign_status": "campaign_status",
    "tags": "campaign_tags", "start_time": "campaign_start_time", "team": "campaign_team",
}  # fmt: skip
_SEARCH_SHAPE = {
    "campaign_name": "basic_details.name", "platforms": "basic_details.platforms",
    "campaign_status": "status", "tags": "basic_details.tags", "start_time": "sent_time",
    "team": "basic_details.team",
}  # fmt: skip


def _at(found: dict[str, Any], path: str) -> Any:
    value: Any = found
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _campaign_row(found: dict[str, Any], source: str, shape: dict[str, str]) -> dict[str, Any]:
    cid = found["campaign_id"]
    where = _Where(cid, source, "-")
    reach = found.get("reachability_details") or {}
    parent = found.get("parent_campaign_id") or None
    status = _at(found, shape["campaign_status"])
    values = {
        "campaign_id": cid,
        "campaign_name": _text(_at(found, shape["campaign_name"])),
        "channel": _text(found.get("channel")),
        "platforms": json.dumps(_at(found, shape["platforms"]) or []),
        "campaign_status": _text(status),
        "delivery_type": _text(found.get("campaign_delivery_type")),
        "tags": json.dumps(_at(found, shape["tags"]) or []),
        "created_by": _text(found.get("created_by")),
        "start_time": _utc(_at(found, shape["start_time"]), where, shape["start_time"]),
        "parent_campaign_id": parent,
        "is_parent": parent is None,
        "total_child_campaigns": found.get("total_child_campaigns"),
        "reachability_count": reach.get("count"),
        "reachability_updated_at": _utc(
            reach.get("last_updated_time"), where, "reachability_details.last_updated_time"
        ),
        "source": source,
        "team": _text(_at(found, shape["team"])),
        "created_at": _utc(found.get("created_at"), where, "created_at"),
        "updated_at": _utc(found.get("updated_at"), where, "updated_at"),
        "version_number": found.get("version_number"),
        "is_archived": None if source == "meta" else str(status or "").upper() == "ARCHIVED",
        "metadata": json.dumps(found, sort_keys=True),
    }
    for name in ("total_child_campaigns", "reachability_count", "version_number"):
        if values[name] is not None and type(values[name]) is not int:
            values[name] = _count(values[name], where, [name])
    return values


def _text(value: Any) -> str | None:
    """A text field: kept as text, whatever JSON type the API used (None stays NULL)."""
    return None if value is None else value if isinstance(value, str) else json.dumps(value)


def _utc(value: Any, where: _Where, path: str) -> dt.datetime | None:
    """MoEngage's UTC timestamps come without a zone ("2024-03-05T10:30:00")."""
    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedPayloadError(
            f"campaign {where.campaign_id}: {path} = {value!r} is not an ISO timestamp"
        ) from None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
