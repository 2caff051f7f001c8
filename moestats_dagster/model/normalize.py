"""Raw Stats API payloads -> the four tables. Pure functions, no I/O, no Dagster.

Numbers are taken as the API sends them. Numbers sent as strings, or counts sent as whole floats,
are coerced losslessly; anything else that is not a number (or null) fails the partition with an
error naming the campaign and the path, so nothing is ever silently dropped or zeroed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from moestats_dagster.model.schemas import (
    CONVERSION_GOAL_STATS,
    DELIVERY_FUNNEL,
    FAILURE_BREAKDOWN,
    FUNNEL_METRICS,
    GOAL_METRICS,
    PERFORMANCE_METRICS,
    PERFORMANCE_STATS,
    to_pandas,
)
from moestats_dagster.moengage.answers import NonFiniteNumber, decode_json

PERF_KEYS = tuple(PERFORMANCE_METRICS)
PERF_INDEX = {k: i for i, k in enumerate(PERF_KEYS)}
PERF_TYPES = tuple(t for t, _ in PERFORMANCE_METRICS.values())
FUNNEL_KEYS = tuple(FUNNEL_METRICS)
FUNNEL_INDEX = {k: i for i, k in enumerate(FUNNEL_KEYS)}
FUNNEL_TYPES = ("BIGINT",) * len(FUNNEL_KEYS)
GOAL_KEYS = tuple(GOAL_METRICS)
GOAL_INDEX = {k: i for i, k in enumerate(GOAL_KEYS)}
GOAL_TYPES = tuple(t for t, _ in GOAL_METRICS.values())
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# Names of the columns each row tuple below carries, after workspace_id and stat_date.
_BLOCK = ("metric_type", "campaign_id", "entry_index", "platform", "locale", "variation")

RawRow = tuple[str, str, str, Any]  # metric_type, attribution_type, campaign_id, payload


class MalformedPayloadError(ValueError):
    """A payload value that cannot be taken losslessly; names the campaign and the path."""


CHUNK = 500  # campaigns parsed at a time: bounds the Python objects alive at once


def rows_in_chunks(frame: pd.DataFrame, columns: Sequence[str], chunk: int = CHUNK):
    """A frame's rows as tuples of `columns`, `chunk` rows at a time: a large day's payloads stay
    in the frame's Arrow buffers instead of all becoming Python strings at once."""
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start : start + chunk]
        yield from zip(*(part[c].tolist() for c in columns), strict=True)


def normalize_partition(
    rows: Iterable[RawRow],
    *,
    workspace_id: str,
    stat_date: dt.date,
    attribution_order: Sequence[str],
    attributions_present: Iterable[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Raw rows of one (workspace, day) -> {table name: DataFrame in that table's schema}.

    Clean payloads take a fast path (no per-value work in Python beyond collecting; each column's
    types are verified at once). Anything unclean is walked again value by value, which coerces
    what can be coerced losslessly and otherwise raises naming the campaign and the path.
    Given `attributions_present`, `rows` is consumed lazily, CHUNK rows at a time, so a large
    day's payloads never all exist as Python objects at once.
    """
    if attributions_present is None:
        rows = list(rows)
        attributions_present = {r[1] for r in rows}
    present = set(attributions_present)
    primary = next((a for a in attribution_order if a in present), min(present, default=None))
    rows = iter(rows)
    const = {"workspace_id": workspace_id, "stat_date": stat_date}
    chunks: dict[str, list[pa.Table]] = {t.name: [] for t in _TABLES}
    # The parsed payloads and rows are acyclic: the cyclic GC would only re-scan them, over and
    # over, as they grow (it doubles the run time). Chunks keep Python objects few at a time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while chunk := list(itertools.islice(rows, CHUNK)):
            parsed = [(m, a, c, _loads(p, c)) for m, a, c, p in chunk]
            del chunk
            try:
                tables = _arrow(_collect_fast(parsed, primary), const)
            except _Unclean:
                tables = _arrow(_collect_strict(parsed, primary), const)
            for name, table in tables.items():
                chunks[name].append(table)
            del parsed, tables
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        t.name: to_pandas(pa.concat_tables(chunks[t.name])) if chunks[t.name] else t.frame()
        for t in _TABLES
    }


_NAMES = {
    PERFORMANCE_STATS.name: (*_BLOCK, *PERF_KEYS, "extra_metrics"),
    CONVERSION_GOAL_STATS.name: (
        "metric_type", "attribution_type", *_BLOCK[1:], "goal_key", *GOAL_KEYS, "extra_metrics"
    ),
    DELIVERY_FUNNEL.name: (*_BLOCK, *FUNNEL_KEYS, "extra_metrics"),
    FAILURE_BREAKDOWN.name: (*_BLOCK, "reason", "count"),
}  # fmt: skip
_TABLES = (PERFORMANCE_STATS, CONVERSION_GOAL_STATS, DELIVERY_FUNNEL, FAILURE_BREAKDOWN)
_NONE = type(None)
_ALLOWED = {
    "BIGINT": {int, _NONE},
    "INTEGER": {int},
    "DOUBLE": {int, float, _NONE},
    "VARCHAR": {str, _NONE},
}


class _Unclean(Exception):
    """The fast path met something it does not take as it is; the strict path will say what."""


def _loads(payload: Any, campaign_id: str) -> Any:
    if isinstance(payload, str | bytes):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        try:  # the standard library's error text, and the path of any NaN/Infinity
            return decode_json(payload.encode() if isinstance(payload, str) else payload)
        except NonFiniteNumber as exc:
            raise MalformedPayloadError(
                f"campaign {campaign_id}: data[{campaign_id!r}]{exc.path} = {exc.token} is not a "
                "number; the partition was not written — report it to MoEngage"
            ) from None
    return payload


def _arrow(collected: dict[str, list[tuple]], const: dict[str, Any]) -> dict[str, pa.Table]:
    out = {}
    for table in _TABLES:
        rows = collected[table.name]
        names = _NAMES[table.name]
        columns = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
        for column in table.columns:
            allowed = _ALLOWED.get(column.type)
            if (
                allowed
                and column.name in columns
                and not set(map(type, columns[column.name])) <= allowed
            ):
                raise _Unclean(table.name, column.name)
        data: dict[str, object] = {k: [v] * len(rows) for k, v in const.items()}
        data.update(columns)
        try:
            out[table.name] = table.arrow(data, length=len(rows))
        except (OverflowError, pa.ArrowInvalid) as exc:
            raise _Unclean(table.name) from exc  # the strict path names campaign and path
    return out


@dataclass(slots=True)
class _Rows:
    """The rows a walk over payloads collects, one list per table."""

    perf: list[tuple] = field(default_factory=list)
    conv: list[tuple] = field(default_factory=list)
    funnel: list[tuple] = field(default_factory=list)
    fails: list[tuple] = field(default_factory=list)

    def by_table(self) -> dict[str, list[tuple]]:
        return {
            PERFORMANCE_STATS.name: self.perf,
            CONVERSION_GOAL_STATS.name: self.conv,
            DELIVERY_FUNNEL.name: self.funnel,
            FAILURE_BREAKDOWN.name: self.fails,
        }


def _collect_fast(parsed: list[tuple[str, str, str, Any]], primary: str | None) -> dict[str, list]:
    """Rows of the four tables, trusting the documented shape; raises _Unclean otherwise."""
    rows = _Rows()
    perf, conv, funnel, fails = rows.perf, rows.conv, rows.funnel, rows.fails  # the hot loop's
    perf_set, funnel_set, goal_set = set(PERF_KEYS), set(FUNNEL_KEYS), set(GOAL_KEYS)
    try:
        for metric, attribution, cid, entries in parsed:
            if type(entries) is not list:
                raise _Unclean
            is_primary = attribution == primary
            for ei, entry in enumerate(entries):
                for pk, platform in entry["platforms"].items():
                    for lk, locale in platform["locales"].items():
                        for vk, block in locale["variations"].items():
                            key = (metric, cid, ei, pk, lk, vk)
                            if is_primary:
                                stats = block.get("performance_stats")
                                if stats is not None:
                                    extra = _extra(stats, perf_set)
                                    perf.append((*key, *map(stats.get, PERF_KEYS), extra))
                                stats = block.get("delivery_funnel")
                                if stats is not None:
                                    extra = _extra(stats, funnel_set)
                                    funnel.append((*key, *map(stats.get, FUNNEL_KEYS), extra))
                                stats = block.get("failure_breakdown")
                                if stats is not None:
                                    for reason, count in stats.items():
                                        if type(count) is dict:
                                            fails += [(*key, *rc) for rc in _nested(reason, count)]
                                        else:
                                            fails.append((*key, reason, count))
                            goals = block.get("conversion_goal_stats")
                            if goals is not None:
                                for goal, values in goals.items():
                                    extra = _extra(values, goal_set)
                                    conv.append(
                                        (
                                            metric,
                                            attribution,
                                            *key[1:],
                                            goal,
                                            *map(values.get, GOAL_KEYS),
                                            extra,
                                        )
                                    )
    except (KeyError, AttributeError, TypeError) as exc:
        raise _Unclean from exc
    return rows.by_table()


def _nested(prefix: str, counts: dict[str, Any]):
    """Nested failure reasons as ('parent.child', count)."""
    for key, value in counts.items():
        if type(value) is dict:
            yield from _nested(f"{prefix}.{key}", value)
        else:
            yield f"{prefix}.{key}", value


def _extra(stats: dict[str, Any], known: set[str]) -> str | None:
    """JSON of the keys the API page does not document, or None when there are none."""
    if stats.keys() <= known:
        return None
    return json.dumps({k: v for k, v in stats.items() if k not in known}, sort_keys=True)


def _collect_strict(
    parsed: list[tuple[str, str, str, Any]], primary: str | None
) -> dict[str, list]:
    """The same rows, every value checked and coerced, or an error naming campaign and path."""
    rows = _Rows()
    for metric, attribution, campaign_id, entries in parsed:
        _walk(entries, _Where(campaign_id, metric, attribution), attribution == primary, rows)
    return rows.by_table()


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


def _walk(entries: Any, where: _Where, primary: bool, rows: _Rows) -> None:
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
                            rows.perf.append(
                                key + _metrics(stats, PERF_INDEX, PERF_TYPES, where, p)
                            )
                        stats = block.get("delivery_funnel")
                        if stats is not None:
                            p = [*bpath, "delivery_funnel"]
                            rows.funnel.append(
                                key + _metrics(stats, FUNNEL_INDEX, FUNNEL_TYPES, where, p)
                            )
                        stats = block.get("failure_breakdown")
                        if stats is not None:
                            p = [*bpath, "failure_breakdown"]
                            for reason, count in _flatten(_mapping(stats, where, p), where, p):
                                rows.fails.append((*key, reason, count))
                    goals = block.get("conversion_goal_stats")
                    if goals is not None:
                        gpath = [*bpath, "conversion_goal_stats"]
                        for goal, values in _mapping(goals, where, gpath).items():
                            values = _metrics(values, GOAL_INDEX, GOAL_TYPES, where, [*gpath, goal])
                            rows.conv.append((metric, attribution, *key[1:], goal, *values))


def _metrics(
    stats: Any, index: dict[str, int], types: tuple[str, ...], where: _Where, path: list[object]
) -> tuple:
    """Known fields in column order (checked against their column type), then the JSON of
    unknown ones (or None)."""
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
        elif types[i] == "DOUBLE":
            values[i] = _rate(value, where, [*path, key])
        elif types[i] == "VARCHAR":
            if not isinstance(value, str):
                raise where.error([*path, key], f"= {value!r:.60} is not a string")
            values[i] = value
        else:
            values[i] = _count(value, where, [*path, key])
    values.append(json.dumps(extra, sort_keys=True) if extra else None)
    return tuple(values)


def _count(value: Any, where: _Where, path: list[object]) -> int:
    if type(value) is int:
        if BIGINT_MIN <= value <= BIGINT_MAX:
            return value
        raise where.error(path, f"= {value} does not fit in a BIGINT count (overflow)")
    if isinstance(value, float) and value.is_integer():
        return _count(int(value), where, path)
    if isinstance(value, str):
        text = value.strip()
        try:
            return _count(int(text), where, path)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return _count(int(number), where, path)
    raise where.error(path, f"= {value!r:.60} is not a whole number")


def _rate(value: Any, where: _Where, path: list[object]) -> float:
    number: float | None = None
    if type(value) in (float, int):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise where.error(path, f"= {value!r:.60} is not a (finite) number")
    return value if type(value) is float else number


def _flatten(stats: dict[str, Any], where: _Where, path: list[object], prefix: str = ""):
    """Failure reasons; nested objects become 'parent.child' reasons."""
    for key, value in stats.items():
        if isinstance(value, dict):
            yield from _flatten(value, where, [*path, key], f"{prefix}{key}.")
        elif value is None:
            yield f"{prefix}{key}", None
        else:
            count = _count(value, where, [*path, key])
            yield f"{prefix}{key}", count


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
