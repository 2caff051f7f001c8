"""Business anomalies: is a day's headline number inside the usual range of its own past?

Pure: numbers in, an `Outcome` out. The band is robust (median and MAD, not mean and standard
deviation: one bad day in the history does not widen it) and weekday-aware (Mondays are compared
with Mondays' level). Judged only when there is enough history, and each metric only once it is
settled: conversions and revenue keep arriving for `restatement_days`, so a young day's low
conversions are normal, not news.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

from moestats_dagster.model.checks import Outcome

METRICS = ("sent", "delivered", "conversions", "revenue")
LATE_METRICS = ("conversions", "revenue")  # still growing during the restatement window
WINDOW_DAYS = 28
MIN_HISTORY_DAYS = 14  # fewer loaded days in the window: no verdict (a new workspace, a gap)
K = 4.0  # band half-width in MADs (scaled to a standard deviation: x 1.4826)
MIN_RELATIVE_WIDTH = 0.15  # never narrower than ±15 % of the expected value (flat histories)
MAD_SCALE = 1.4826
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Band:
    metric: str
    value: float
    expected: float
    low: float
    high: float
    history_days: int
    weekday: int

    @property
    def inside(self) -> bool:
        return self.low <= self.value <= self.high

    def describe(self) -> str:
        where = "below" if self.value < self.low else "above"
        return (
            f"{self.metric} {self.value:,.0f} is {where} its usual range "
            f"{self.low:,.0f}–{self.high:,.0f} (expected ~{self.expected:,.0f} for a "
            f"{WEEKDAYS[self.weekday]}, from {self.history_days} days)"
        )


def band(metric: str, day: dt.date, value: float, history: dict[dt.date, float]) -> Band | None:
    """The usual range of `metric` on `day` from the `history` (day -> value) of the trailing
    28 days, or None when fewer than 14 of them are known."""
    past = {
        d: v for d, v in history.items()
        if day - dt.timedelta(days=WINDOW_DAYS) <= d < day and v is not None
    }  # fmt: skip
    if len(past) < MIN_HISTORY_DAYS:
        return None
    overall = statistics.median(past.values())
    # Weekday level: the median of the same weekday relative to the overall median, when the
    # window holds at least two of them (a 28-day window holds four).
    factor = {}
    for weekday in range(7):
        same = [v for d, v in past.items() if d.weekday() == weekday]
        factor[weekday] = (
            statistics.median(same) / overall if overall > 0 and len(same) >= 2 else 1.0
        )
    # Deseasonalized history: each value divided by its weekday's level (levels of 0 stay as 1,
    # so a weekday that never sends is not divided by zero).
    level = {w: f if f > 0 else 1.0 for w, f in factor.items()}
    flat = [v / level[d.weekday()] for d, v in past.items()]
    center = statistics.median(flat)
    mad = statistics.median(abs(v - center) for v in flat) * MAD_SCALE
    expected = center * factor[day.weekday()]
    half = max(K * mad * level[day.weekday()], MIN_RELATIVE_WIDTH * expected)
    return Band(
        metric=metric,
        value=value,
        expected=expected,
        low=max(0.0, expected - half),
        high=expected + half,
        history_days=len(past),
        weekday=day.weekday(),
    )


def judge(
    day: dt.date,
    today: dt.date,
    restatement_days: int,
    values: dict[str, float],
    history: dict[str, dict[dt.date, float]],
) -> Outcome:
    """WARN outcome naming every headline metric of `day` outside its band.

    `today` is the workspace's local date: conversions and revenue are judged only once the day
    has left the restatement window. `already_reported` in the metadata is true when every
    anomaly found was already found at an earlier fetch of the same day (a restatement run):
    the alert sensor does not post it again, the check stays red in the UI.
    """
    age = (today - day).days
    settled = age > restatement_days
    judged = [m for m in METRICS if m in values and (settled or m not in LATE_METRICS)]
    bands = [band(m, day, values[m], history.get(m, {})) for m in judged]
    known = [b for b in bands if b is not None]
    if not known:
        days = max((len(h) for h in history.values()), default=0)
        return Outcome(
            True,
            {"summary": f"not judged: {days} of the last {WINDOW_DAYS} days loaded, "
                        f"{MIN_HISTORY_DAYS} needed", "judged": []},
        )  # fmt: skip
    outside = [b for b in known if not b.inside]
    # First judgement of a metric: sent/delivered at the nightly fetch (age 1), conversions and
    # revenue at the last restatement fetch; any fetch of a day older than that (a backfill,
    # a manual run) is a first judgement too.
    first_age = {m: (restatement_days + 1 if m in LATE_METRICS else 1) for m in METRICS}
    new = [b for b in outside if age == first_age[b.metric] or age > restatement_days + 1]
    metadata = {
        "summary": "; ".join(b.describe() for b in outside) if outside else "all within range",
        "judged": [b.metric for b in known],
        "already_reported": bool(outside) and not new,
        **{
            b.metric: {"value": b.value, "expected": round(b.expected, 2),
                       "low": round(b.low, 2), "high": round(b.high, 2)}
            for b in known
        },
    }  # fmt: skip
    if not settled:
        metadata["not_yet_judged"] = [m for m in LATE_METRICS if m in values]
    return Outcome(not outside, metadata)
