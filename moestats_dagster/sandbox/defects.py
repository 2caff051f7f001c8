"""Source-data defects the sandbox can be told to inject, so checks can be proven to catch them.

Each defect hits one campaign of the day: the first (in API order) whose channel reports the metric
the defect corrupts. It is written into `all_variations` of the first platform and locale.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from moestats_dagster.sandbox.generator import METRICS, Campaign

# defect -> (metric it needs, what it does to the performance_stats of the target campaign)
DEFECTS: dict[str, str] = {
    "wrong_sent_rate": "sent_rate",
    "wrong_failure_rate": "failure_rate",
    "wrong_ctr": "ctr",
    "wrong_read_rate": "read_rate",
    "negative_count": "click",
    "string_numbers": "sent",
    "bad_type": "sent",
    "null_metric": "click",
    "unknown_metrics": "sent",
    "attribution_dependent_performance": "sent",
    "nan_rate": "ctr",
    "huge_count": "click",
}
# Defects of the campaigns/meta endpoint (see sandbox/meta.py), not tied to a stats metric.
META_DEFECTS = ("missing_metadata", "parent_cycle")
RATE_SKEW = 7.5  # added to a rate by the wrong_* defects: far beyond rounding


def target(defect: str, day: Sequence[Campaign]) -> Campaign | None:
    """The campaign of the day that `defect` hits, if any has the metric it needs."""
    metric = DEFECTS[defect]
    needs_impression = defect == "wrong_ctr"
    for campaign in day:
        metrics = METRICS[campaign.channel]
        if metric in metrics and (not needs_impression or "impression" in metrics):
            return campaign
    return None


def apply(
    defects: set[str],
    day: Sequence[Campaign],
    campaign: Campaign,
    entries: list[dict[str, Any]],
    attribution_type: str,
) -> list[dict[str, Any]]:
    """`entries` with every requested defect that targets `campaign` applied (a copy if any)."""
    mine = [d for d in sorted(defects) if d in DEFECTS and target(d, day) == campaign]
    if not mine:
        return entries
    entries = copy.deepcopy(entries)
    platform = next(iter(entries[0]["platforms"].values()))
    block = platform["locales"]["all_locales"]["variations"]["all_variations"]
    perf = block["performance_stats"]
    for defect in mine:
        if defect.startswith("wrong_"):
            perf[DEFECTS[defect]] = round(perf[DEFECTS[defect]] + RATE_SKEW, 2)
        elif defect == "negative_count":
            perf["click"] = -3
        elif defect == "string_numbers":
            block["performance_stats"] = {
                k: str(v) if isinstance(v, int) else v for k, v in perf.items()
            }
        elif defect == "bad_type":
            perf["sent"] = "lots"
        elif defect == "null_metric":
            perf["click"] = None
        elif defect == "unknown_metrics":
            perf["amp_opens"] = 17
            block["delivery_funnel"]["after_dnd_removal"] = 23
        elif defect == "nan_rate":
            perf["ctr"] = float("nan")  # json.dumps writes NaN: not JSON, as a broken API would
        elif defect == "huge_count":
            perf["click"] = 2**70  # beyond BIGINT
        elif defect == "attribution_dependent_performance" and attribution_type != "VIEW_THROUGH":
            perf["sent"] += 1
    return entries
