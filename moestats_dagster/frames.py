"""Frames of the tables the client's objects fill as they are: the raw answers and the campaign
metadata. Pure functions, no I/O, no Dagster."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa

from .normalize import MalformedPayloadError, _count, _Where
from .schemas import CAMPAIGN_STATS_RAW, CAMPAIGNS, to_pandas


def raw_frame(
    days: Iterable[Any], *, workspace_id: str, stat_date: dt.date, fetched_at: dt.datetime
) -> pd.DataFrame:
    """The client's `DayStats` -> rows of the raw table, one per metric x attribution x campaign.

    Payloads move into Arrow a chunk at a time and leave the `DayStats` as they go (their
    `campaigns` are emptied): one Arrow array built from 50,000 payloads at once grows by
    doubling and briefly holds the day's JSON three times over (measured: +450 MB for 143 MB).
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
    campaigns: Iterable[dict[str, Any]], *, workspace_id: str, fetched_at: dt.datetime
) -> pd.DataFrame:
    """Campaign Meta API objects -> rows of `moestats.campaigns` (times UTC, object verbatim)."""
    cols: dict[str, list[Any]] = {n: [] for n in CAMPAIGNS.names}
    for meta in campaigns:
        cid = meta["campaign_id"]
        where = _Where(cid, "meta", "-")
        reach = meta.get("reachability_details") or {}
        parent = meta.get("parent_campaign_id") or None
        values = {
            "campaign_id": cid,
            "campaign_name": meta.get("campaign_name"),
            "channel": meta.get("channel"),
            "platforms": json.dumps(meta.get("platform") or []),
            "campaign_status": meta.get("campaign_status"),
            "delivery_type": meta.get("campaign_delivery_type"),
            "tags": json.dumps(meta.get("campaign_tags") or []),
            "created_by": meta.get("created_by"),
            "start_time": _utc(meta.get("campaign_start_time"), where, "campaign_start_time"),
            "parent_campaign_id": parent,
            "is_parent": parent is None,
            "total_child_campaigns": meta.get("total_child_campaigns"),
            "reachability_count": reach.get("count"),
            "reachability_updated_at": _utc(
                reach.get("last_updated_time"), where, "reachability_details.last_updated_time"
            ),
            "metadata": json.dumps(meta, sort_keys=True),
        }
        for name in ("total_child_campaigns", "reachability_count"):
            if values[name] is not None and type(values[name]) is not int:
                values[name] = _count(values[name], where, [name])
        for name, value in values.items():
            cols[name].append(value)
    n = len(cols["campaign_id"])
    cols["workspace_id"] = [workspace_id] * n
    cols["fetched_at"] = [fetched_at.replace(tzinfo=None)] * n
    return CAMPAIGNS.frame(cols, length=n)


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
