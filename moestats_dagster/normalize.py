"""Raw Stats API payloads -> the four tables. Pure functions, no I/O, no Dagster.

Numbers are taken as the API sends them. Numbers sent as strings, or counts sent as whole floats,
are coerced losslessly; anything else that is not a number (or null) fails the partition with an
error naming the campaign and the path, so nothing is ever silently dropped or zeroed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .schemas import (
    CAMPAIGN_STATS_RAW,
    CONVERSION_GOAL_STATS,
    DELIVERY_FUNNEL,
    FAILURE_BREAKDOWN,
    FUNNEL_METRICS,
    PERFORMANCE_METRICS,
    PERFORMANCE_STATS,
    Table,
)

PERF_KEYS = tuple(PERFORMANCE_METRICS)
PERF_INDEX = {k: i for i, k in enumerate(PERF_KEYS)}
PERF_RATE = tuple(t == "DOUBLE" for t, _ in PERFORMANCE_METRICS.values())
FUNNEL_KEYS = tuple(FUNNEL_METRICS)
FUNNEL_INDEX = {k: i for i, k in enumerate(FUNNEL_KEYS)}
FUNNEL_RATE = (False,) * len(FUNNEL_KEYS)
GOAL_KEYS = ("conversions", "cvr", "uplift")
GOAL_INDEX = {k: i for i, k in enumerate(GOAL_KEYS)}
GOAL_RATE = (False, True, True)
# Names of the columns each row tuple below carries, after workspace_id and stat_date.
_BLOCK = ("metric_type", "campaign_id", "entry_index", "platform", "locale", "variation")

RawRow = tuple[str, str, str, Any]  # metric_type, attribution_type, campaign_id, payload


class MalformedPayloadError(ValueError):
    """A payload value that cannot be taken losslessly; names the campaign and the path."""


def primary_attribution(rows: Sequence[RawRow], attribution_order: Sequence[str]) -> str | None:
    """The attribution type whose payloads give performance, funnel and failures: the first
    configured one that is present (those blocks do not depend on attribution)."""
    present = {r[1] for r in rows}
    return next((a for a in attribution_order if a in present), None) or (
        min(present) if present else None
    )


def normalize_partition(
    rows: Iterable[RawRow],
    *,
    workspace_id: str,
    stat_date: dt.date,
    attribution_order: Sequence[str],
) -> dict[str, pd.DataFrame]:
    """Raw rows of one (workspace, day) -> {table name: DataFrame in that table's schema}."""
    rows = list(rows)
    primary = primary_attribution(rows, attribution_order)
    perf: list[tuple] = []
    conv: list[tuple] = []
    funnel: list[tuple] = []
    fails: list[tuple] = []
    for metric, attribution, campaign_id, payload in rows:
        entries = json.loads(payload) if isinstance(payload, str | bytes) else payload
        where = _Where(campaign_id, metric, attribution)
        _walk(entries, where, attribution == primary, perf, conv, funnel, fails)
    const = {"workspace_id": workspace_id, "stat_date": stat_date}
    perf_names = (*_BLOCK, *PERF_KEYS, "extra_metrics")
    conv_names = ("metric_type", "attribution_type", *_BLOCK[1:], "goal_name", *GOAL_KEYS)
    return {
        PERFORMANCE_STATS.name: _frame(PERFORMANCE_STATS, const, perf_names, perf),
        CONVERSION_GOAL_STATS.name: _frame(
            CONVERSION_GOAL_STATS, const, (*conv_names, "extra_metrics"), conv
        ),
        DELIVERY_FUNNEL.name: _frame(
            DELIVERY_FUNNEL, const, (*_BLOCK, *FUNNEL_KEYS, "extra_metrics"), funnel
        ),
        FAILURE_BREAKDOWN.name: _frame(
            FAILURE_BREAKDOWN, const, (*_BLOCK, "reason", "count"), fails
        ),
    }


class _Where:
    """Where in a payload we are, rendered only when an error needs it."""

    __slots__ = ("campaign_id", "metric", "attribution")

    def __init__(self, campaign_id: str, metric: str, attribution: str) -> None:
        self.campaign_id, self.metric, self.attribution = campaign_id, metric, attribution

    def error(self, path: Sequence[object], problem: str) -> MalformedPayloadError:
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        return MalformedPayloadError(
            f"campaign {self.campaign_id} ({self.metric}/{self.attribution}): "
            f"data[{self.campaign_id!r}]{dotted} {problem}; the partition was not written — "
            "report it to MoEngage, or re-run if the API answer was transient"
        )


def _mapping(value: Any, where: _Where, path: list[object]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(path, f"is {type(value).__name__} {value!r:.60}, expected an object")
    return value


def _walk(entries, where, primary, perf, conv, funnel, fails) -> None:
    if not isinstance(entries, list):
        raise where.error([], f"is {type(entries).__name__}, expected a list of entries")
    metric, attribution, cid = where.metric, where.attribution, where.campaign_id
    for ei, entry in enumerate(entries):
        platforms = _mapping(
            _mapping(entry, where, [ei]).get("platforms"), where, [ei, "platforms"]
        )
        for pk, pv in platforms.items():
            path = [ei, "platforms", pk, "locales"]
            for lk, lv in _mapping(
                _mapping(pv, where, path[:3]).get("locales"), where, path
            ).items():
                vpath = [*path, lk, "variations"]
                variations = _mapping(
                    _mapping(lv, where, vpath[:-1]).get("variations"), where, vpath
                )
                for vk, block in variations.items():
                    bpath = [*vpath, vk]
                    key = (metric, cid, ei, pk, lk, vk)
                    _mapping(block, where, bpath)
                    if primary:
                        stats = block.get("performance_stats")
                        if stats is not None:
                            p = [*bpath, "performance_stats"]
                            perf.append(key + _metrics(stats, PERF_INDEX, PERF_RATE, where, p))
                        stats = block.get("delivery_funnel")
                        if stats is not None:
                            p = [*bpath, "delivery_funnel"]
                            funnel.append(
                                key + _metrics(stats, FUNNEL_INDEX, FUNNEL_RATE, where, p)
                            )
                        stats = block.get("failure_breakdown")
                        if stats is not None:
                            p = [*bpath, "failure_breakdown"]
                            for reason, count in _flatten(_mapping(stats, where, p), where, p):
                                fails.append((*key, reason, count))
                    goals = block.get("conversion_goal_stats")
                    if goals is not None:
                        gpath = [*bpath, "conversion_goal_stats"]
                        for goal, values in _mapping(goals, where, gpath).items():
                            values = _metrics(values, GOAL_INDEX, GOAL_RATE, where, [*gpath, goal])
                            conv.append((metric, attribution, *key[1:], goal, *values))


def _metrics(
    stats: Any, index: dict[str, int], rates: tuple[bool, ...], where: _Where, path: list[object]
) -> tuple:
    """Known metrics in column order, then the JSON of unknown ones (or None)."""
    values: list[Any] = [None] * len(index)
    extra = None
    for key, value in _mapping(stats, where, path).items():
        i = index.get(key)
        if i is None:
            if extra is None:
                extra = {}
            extra[key] = value
        elif value is None:
            continue
        elif rates[i]:
            values[i] = value if type(value) in (float, int) else _rate(value, where, [*path, key])
        else:
            values[i] = value if type(value) is int else _count(value, where, [*path, key])
    values.append(json.dumps(extra, sort_keys=True) if extra else None)
    return tuple(values)


def _count(value: Any, where: _Where, path: list[object]) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
    raise where.error(path, f"= {value!r} is not a whole number")


def _rate(value: Any, where: _Where, path: list[object]) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise where.error(path, f"= {value!r} is not a number")


def _flatten(stats: dict[str, Any], where: _Where, path: list[object], prefix: str = ""):
    """Failure reasons; nested objects become 'parent.child' reasons."""
    for key, value in stats.items():
        if isinstance(value, dict):
            yield from _flatten(value, where, [*path, key], f"{prefix}{key}.")
        elif value is None:
            yield f"{prefix}{key}", None
        else:
            count = value if type(value) is int else _count(value, where, [*path, key])
            yield f"{prefix}{key}", count


def _frame(
    table: Table, const: dict[str, Any], names: Sequence[str], rows: list[tuple]
) -> pd.DataFrame:
    columns = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    data: dict[str, object] = {k: [v] * len(rows) for k, v in const.items()}
    data.update(columns)
    return table.frame(data, length=len(rows))


def without_conversions(entries: Any) -> Any:
    """A campaign's entries with every `conversion_goal_stats` removed: what must not depend on
    the attribution type. Anything not in the documented shape is returned as it is."""
    if not isinstance(entries, list):
        return entries
    out = []
    for entry in entries:
        platforms = entry.get("platforms") if isinstance(entry, dict) else None
        if not isinstance(platforms, dict):
            out.append(entry)
            continue
        stripped = {}
        for pk, platform in platforms.items():
            locales = platform.get("locales", {}) if isinstance(platform, dict) else {}
            stripped[pk] = {
                lk: {
                    vk: {k: v for k, v in block.items() if k != "conversion_goal_stats"}
                    if isinstance(block, dict)
                    else block
                    for vk, block in (locale.get("variations") or {}).items()
                }
                if isinstance(locale, dict)
                else locale
                for lk, locale in (locales if isinstance(locales, dict) else {}).items()
            }
        out.append(stripped)
    return out


def raw_frame(
    days: Iterable[Any], *, workspace_id: str, stat_date: dt.date, fetched_at: dt.datetime
) -> pd.DataFrame:
    """The client's `DayStats` -> rows of the raw table, one per metric x attribution x campaign."""
    cols: dict[str, list[Any]] = {n: [] for n in CAMPAIGN_STATS_RAW.names}
    for day in days:
        for campaign_id, entries in day.campaigns.items():
            cols["metric_type"].append(day.metric_type)
            cols["attribution_type"].append(day.attribution_type)
            cols["campaign_id"].append(campaign_id)
            cols["payload"].append(json.dumps(entries, separators=(",", ":")))
            cols["request_id"].append(day.request_ids.get(campaign_id))
            cols["total_campaigns"].append(day.total_campaigns)
    n = len(cols["campaign_id"])
    cols["workspace_id"] = [workspace_id] * n
    cols["stat_date"] = [stat_date] * n
    cols["fetched_at"] = [fetched_at.replace(tzinfo=None)] * n
    return CAMPAIGN_STATS_RAW.frame(cols, length=n)
