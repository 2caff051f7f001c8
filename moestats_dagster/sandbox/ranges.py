"""The sandbox's answer for a date range: each campaign's days, combined as MoEngage counts.

A TOTAL count over a range is the sum of the days. A UNIQUE count is distinct users over the
range: at least the largest day's, at most the sum of the days, and below that sum when the
campaign ran on several days (the same users come back): here the largest day's plus a share of
the rest, fixed per campaign. Revenue adds up; rates and ratios are the days' mean (the
sandbox's simplification: MoEngage does not document how it computes them over a range).
"""

from __future__ import annotations

from typing import Any

from moestats_dagster.sandbox.generator import seeded

SUMMED_FLOATS = ("revenue",)


def combine(days: list[Any], metric_type: str, returning: float) -> Any:
    """The days' `data[campaign_id]` lists combined into the range's (same shape each day)."""
    if len(days) == 1:
        return days[0]
    return _combine(days, metric_type, returning, None)


def returning_share(workspace_id: str, campaign_id: str) -> float:
    """How much of a campaign's later days' UNIQUE users are new (0.25-0.6)."""
    return seeded(workspace_id, campaign_id, "returning").uniform(0.25, 0.6)


def _combine(values: list[Any], metric_type: str, share: float, key: str | None) -> Any:
    first = values[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(k for v in values for k in v)
        return {k: _combine([v[k] for v in values if k in v], metric_type, share, k) for k in keys}
    if isinstance(first, list):
        return [
            _combine([v[i] for v in values if i < len(v)], metric_type, share, key)
            for i in range(len(first))
        ]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, int):
        total = sum(values)
        if metric_type != "UNIQUE":
            return total
        largest = max(values)
        return largest + int((total - largest) * share)
    if key in SUMMED_FLOATS:
        return round(sum(values), 2)
    return round(sum(values) / len(values), 2)
