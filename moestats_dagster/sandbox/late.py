"""Answers that change after the day, as MoEngage's do (facts.md, "After a flow stops" and
"Late conversions"):

- A stopped or completed flow sends nothing new, but people keep opening, clicking and
  converting on what they already got: for `TAIL_DAYS` after the stop some of its steps still
  answer when named, with clicks, impressions and conversions and no sends.
- Conversions arrive within each campaign's attribution window, so a day's first answer can be
  lower than its later ones: with `Faults.late_conversions` naming a workspace, the first
  answer for each campaign of its days (per metric and attribution) leaves out the late
  share of half its campaigns' conversions and revenue; every later answer, and every range,
  has them all. The answers already given are remembered in memory, or in a SQLite file
  (`Faults.late_state`) when several processes serve the same workspaces (the embedded
  sandbox of each Dagster run: `MOESTATS_SANDBOX_STATE`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from moestats_dagster.sandbox.generator import seeded

TAIL_DAYS = 12  # days after a stop on which a step may still answer
TAIL_SHARE = 0.3  # of a step's usual clicks, impressions and conversions, on its tail days
LATE_SHARE = 0.25  # of a late campaign's conversions and revenue missing from the first answer
SENDS = ("attempted", "sent", "failed", "delivered", "bounced", "hard_bounce", "soft_bounce",
         "sent_rate", "failure_rate", "delivery_rate")  # fmt: skip
TAILED = ("impression", "click", "opened", "read", "closed_click")
CONVERTED = ("conversions", "total", "unique")


def answers_after_stop(
    workspace_id: str, campaign_id: str, day: dt.date, stopped_on: dt.date
) -> bool:
    """Does a stopped flow's step answer on `day` (on or after the stop)?"""
    age = (day - stopped_on).days
    if not 0 <= age < TAIL_DAYS:
        return False
    chance = 0.8 * (1 - age / TAIL_DAYS)
    return seeded(workspace_id, "flow-tail", campaign_id, day).random() < chance


def after_stop(entries: Any) -> Any:
    """A step's entries as on a day after its flow stopped: no sends, a share of the clicks,
    impressions and conversions of a usual day."""
    return _walk(entries, _tail)


def early(entries: Any) -> Any:
    """Entries as first answered: the late share of conversions and revenue not in yet."""
    return _walk(entries, _early)


def range_drift(entries: Any) -> Any:
    """A range answer one send above its days' sum (`Faults.range_inconsistent`: a MoEngage
    whose range and days disagree, whatever is fetched again)."""

    def drift(block: dict) -> dict:
        perf = block.get("performance_stats")
        if not isinstance(perf, dict) or not isinstance(perf.get("sent"), int):
            return block
        return {**block, "performance_stats": {**perf, "sent": perf["sent"] + 1}}

    return _walk(entries, drift)


def is_late(workspace_id: str, campaign_id: str) -> bool:
    """Half the campaigns get conversions after the day."""
    return seeded(workspace_id, "late", campaign_id).random() < 0.5


def _walk(value: Any, block) -> Any:
    if isinstance(value, list):
        return [_walk(v, block) for v in value]
    if isinstance(value, dict):
        if "performance_stats" in value or "conversion_goal_stats" in value:
            return block(value)
        return {k: _walk(v, block) for k, v in value.items()}
    return value


def _scaled(value: Any, share: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return int(value * share) if isinstance(value, int) else round(value * share, 2)


def _goals(goals: Any, share: float) -> Any:
    if not isinstance(goals, dict):
        return goals
    return {
        name: {k: _scaled(v, share) if k in (*CONVERTED, "revenue") else v for k, v in g.items()}
        if isinstance(g, dict) else g
        for name, g in goals.items()
    }  # fmt: skip


def _tail(block: dict) -> dict:
    out = dict(block)
    perf = block.get("performance_stats")
    if isinstance(perf, dict):
        out["performance_stats"] = {
            k: 0 if k in SENDS else _scaled(v, TAIL_SHARE) if k in TAILED else v
            for k, v in perf.items()
        }
    if "conversion_goal_stats" in block:
        out["conversion_goal_stats"] = _goals(block["conversion_goal_stats"], TAIL_SHARE)
    if isinstance(block.get("delivery_funnel"), dict):
        out["delivery_funnel"] = {k: 0 for k in block["delivery_funnel"]}
    if isinstance(block.get("failure_breakdown"), dict):
        out["failure_breakdown"] = {}
    return out


def _early(block: dict) -> dict:
    if "conversion_goal_stats" not in block:
        return block
    return {
        **block,
        "conversion_goal_stats": _goals(block["conversion_goal_stats"], 1 - LATE_SHARE),
    }


class AnswersGiven:
    """Which day answers were given already (so the first one is early), in memory or in a
    SQLite file shared by processes."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def first_of(self, keys: Iterable[tuple]) -> set[str]:
        """Record the answers `keys` (each ending with a campaign id); the campaign ids answered
        for the first time."""
        digests = {hashlib.sha1("|".join(map(str, k)).encode()).hexdigest(): str(k[-1])
                   for k in keys}  # fmt: skip
        if self._path is None:
            with self._lock:
                new = {d for d in digests if d not in self._seen}
                self._seen |= new
        else:
            with sqlite3.connect(self._path, timeout=30) as db:
                db.execute("CREATE TABLE IF NOT EXISTS given (key TEXT PRIMARY KEY)")
                new = {d for d in digests
                       if db.execute("INSERT OR IGNORE INTO given VALUES (?)", [d]).rowcount}  # fmt: skip
        return {digests[d] for d in new}
