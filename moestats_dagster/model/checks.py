"""Check logic: pure functions over one partition's DataFrames. No Dagster here.

Each returns an `Outcome`: passed or not, figures for the UI, and up to 20 offending rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from moestats_dagster.model.normalize import rows_in_chunks, without_conversions
from moestats_dagster.model.schemas import Table

SHOWN = 20  # offending rows shown in the UI
# The API rounds rates to 2 decimals: a correct rate is within half a unit of the last place.
RATE_TOLERANCE = 0.005 + 1e-9
BLOCK = ["metric_type", "campaign_id", "entry_index", "platform", "locale", "variation"]


@dataclass(frozen=True)
class Outcome:
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    rows: pd.DataFrame | None = None  # offending rows, at most SHOWN
    severity: str | None = None  # "WARN" to report a failure without blocking (else the check's)


# rate -> (formula, numerator, denominator, subtrahend): rate = (num - sub) / den x 100
RATE_FORMULAS: dict[str, tuple[str, str, str, str | None]] = {
    "sent_rate": ("sent / attempted x 100", "sent", "attempted", None),
    "failure_rate": ("(attempted - sent) / attempted x 100", "attempted", "attempted", "sent"),
    "ctr": ("click / impression x 100 (rows with impressions)", "click", "impression", None),
    "read_rate": ("read / delivered x 100 (unique counts; TOTAL rows may use either)", "read",
                  "delivered", None),
}  # fmt: skip


def rate_matches_formula(perf: pd.DataFrame, rate: str) -> Outcome:
    """The reported rate equals its documented formula, within the API's rounding.

    Only rows where the rate and every operand are present are checked. A zero denominator
    expects 0. `read_rate` is documented over UNIQUE counts; on TOTAL rows MoEngage may report
    either reading, so a TOTAL row fails only when it matches neither its own counts nor the
    UNIQUE counts of the same block.
    """
    formula, num, den, sub = RATE_FORMULAS[rate]
    operands = [num, den] + ([sub] if sub else [])
    # NumPy over the few columns read, a DataFrame only for failing rows: pandas operations on
    # the Arrow-backed columns cost ~1 ms each, and a day runs 24 checks
    values = {c: _floats(perf, c) for c in dict.fromkeys([*operands, rate])}
    present = ~np.isnan(values[rate])
    for column in operands:
        present &= ~np.isnan(values[column])
    expected = _expected(values[num], values[den], values[sub] if sub else None)
    reported = values[rate]
    with np.errstate(invalid="ignore"):
        bad = present & (np.abs(reported - expected) > RATE_TOLERANCE)
    if rate == "read_rate" and bad.any():
        bad &= ~_matches_unique_reading(perf, bad, reported, values[num], values[den])
    failing = None
    if bad.any():
        failing = perf.loc[bad, [*BLOCK, *dict.fromkeys(operands)]].assign(
            expected=np.round(expected[bad], 4), reported=reported[bad]
        )
    return Outcome(
        passed=not bad.any(),
        metadata={
            "formula": formula,
            "tolerance": RATE_TOLERANCE,
            "rows_checked": int(present.sum()),
            "rows_failing": int(bad.sum()),
        },
        rows=None if failing is None else failing.head(SHOWN),
    )


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype="float64", na_value=np.nan)


def _expected(num: np.ndarray, den: np.ndarray, sub: np.ndarray | None) -> np.ndarray:
    numerator = num - sub if sub is not None else num
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den == 0, 0.0, numerator / den * 100).astype("float64")


def _matches_unique_reading(
    perf: pd.DataFrame,
    flagged: np.ndarray,
    reported: np.ndarray,
    numerators: np.ndarray,
    denominators: np.ndarray,
) -> np.ndarray:
    """Which flagged TOTAL rows report the rate of their block's UNIQUE counts instead."""
    metric = perf["metric_type"].to_numpy(dtype=object)
    blocks = list(zip(*(perf[c].tolist() for c in BLOCK[1:]), strict=True))
    unique = {blocks[i]: i for i in np.flatnonzero(metric == "UNIQUE")}
    out = np.zeros(len(perf), dtype=bool)
    for i in np.flatnonzero(flagged & (metric == "TOTAL")):
        j = unique.get(blocks[i])
        if j is not None:
            alternative = _expected(numerators[j : j + 1], denominators[j : j + 1], None)[0]
            out[i] = abs(reported[i] - alternative) <= RATE_TOLERANCE  # NaN: no match
    return out


def keys_unique(frame: pd.DataFrame, table: Table) -> Outcome:
    """No two rows share the table's key."""
    # on the frame with `subset`: selecting the key columns first copied them (twice the cost)
    dup = frame.duplicated(subset=table.keys, keep=False).to_numpy(dtype=bool)
    return Outcome(
        passed=not dup.any(),
        metadata={"rows_checked": len(frame), "rows_failing": int(dup.sum()), "key": table.keys},
        rows=frame.loc[dup, table.keys].head(SHOWN) if dup.any() else None,
    )


def keys_not_null(frame: pd.DataFrame, table: Table) -> Outcome:
    """Every key column is filled."""
    nulls = {k: frame[k].isna().to_numpy(dtype=bool) for k in table.keys}
    bad = np.zeros(len(frame), dtype=bool)
    for column in nulls.values():
        bad |= column
    return Outcome(
        passed=not bad.any(),
        metadata={
            "rows_checked": len(frame),
            "rows_failing": int(bad.sum()),
            "null_counts": {k: int(v.sum()) for k, v in nulls.items() if v.any()},
        },
        rows=frame.loc[bad, table.keys].head(SHOWN) if bad.any() else None,
    )


def counts_not_negative(frame: pd.DataFrame, table: Table) -> Outcome:
    """No count (BIGINT column) is below zero."""
    counts = [c for c in table.columns_of("BIGINT") if c in frame]
    # column by column in NumPy (a missing count is not negative; the sign survives the float)
    negative = {c: _floats(frame, c) < 0 for c in counts}
    bad = np.zeros(len(frame), dtype=bool)
    for column in negative.values():
        bad |= column
    per_column = {c: int(n.sum()) for c, n in negative.items() if n.any()}
    shown = [c for c in counts if per_column.get(c)]
    keys = [c for c in table.keys if c in BLOCK or c == "reason"]
    return Outcome(
        passed=not bad.any(),
        metadata={
            "rows_checked": len(frame),
            "rows_failing": int(bad.sum()),
            "negative": per_column,
        },
        rows=frame.loc[bad, keys + shown].head(SHOWN) if bad.any() else None,
    )


def undocumented_metrics(frame: pd.DataFrame) -> Outcome:
    """Schema drift: metric keys the API page does not document (caught in `extra_metrics`)."""
    keys: Counter[str] = Counter()
    example: dict[str, str] = {}
    present = frame.loc[frame.extra_metrics.notna().to_numpy(dtype=bool), [*BLOCK, "extra_metrics"]]
    for campaign_id, text in zip(present.campaign_id, present.extra_metrics, strict=True):
        for key in json.loads(text):
            keys[key] += 1
            example.setdefault(key, campaign_id)
    return Outcome(
        passed=not keys,
        metadata={
            "rows_checked": len(frame),
            "rows_with_undocumented_keys": len(present),
            "undocumented_keys": {
                k: {"rows": n, "e.g. campaign": example[k]} for k, n in keys.items()
            },
        },
        rows=present.head(SHOWN) if len(present) else None,
    )


def raw_complete(raw: pd.DataFrame, totals: Mapping[tuple[str, str], int | None]) -> Outcome:
    """For every metric x attribution asked for: distinct campaigns stored = total_campaigns, each
    stored once, and nothing stored that was not asked for.

    Where the API's answers lacked total_campaigns, paging stopped on a short page: the day may
    be whole, but it cannot be proven. That is reported (WARN, not blocking), never passed."""
    problems = []
    unproven = sorted("/".join(c) for c, total in totals.items() if total is None)
    raw = raw[["metric_type", "attribution_type", "campaign_id"]]  # groups must not copy payloads
    by_combo = {}
    for (metric, attribution), group in raw.groupby(["metric_type", "attribution_type"]):
        by_combo[(metric, attribution)] = group
    for combo in set(by_combo) - set(totals):
        problems.append({"combination": "/".join(combo), "problem": "stored but not asked for"})
    for combo, total in totals.items():
        group = by_combo.get(combo, raw.iloc[0:0])
        distinct = group.campaign_id.nunique()
        if total is None:
            total = distinct  # cannot be proven; duplicates are still refused
        if distinct != total or len(group) != distinct:
            problems.append(
                {
                    "combination": "/".join(combo),
                    "problem": f"{distinct} distinct campaigns in {len(group)} rows, API total {total}",
                }
            )
    metadata: dict[str, Any] = {
        "combinations": len(totals),
        "campaigns_expected": int(sum(t for t in totals.values() if t is not None)),
        "rows": len(raw),
        "completeness_proven": not unproven,
    }
    if unproven and not problems:
        metadata["unproven"] = unproven
        metadata["why"] = (
            "MoEngage's answers carried no total_campaigns, so paging stopped on the first short "
            "page; every campaign received was stored once, but a missing one cannot be detected"
        )
        return Outcome(passed=False, metadata=metadata, severity="WARN")
    return Outcome(
        passed=not problems,
        metadata=metadata,
        rows=pd.DataFrame(problems) if problems else None,
    )


def identical_across_attribution(raw: pd.DataFrame, chunk: int = 1000) -> Outcome:
    """Performance, funnel and failure blocks do not depend on the attribution type: for each
    metric type x campaign, payloads without their conversion goals are identical.

    Payloads are read a chunk at a time and kept only as a digest of their shape: grouping the
    frame itself copied a large day's JSON (docs/benchmarks.md, "Measurements behind the code")."""
    shapes: dict[tuple[str, str], dict[str, bytes]] = {}
    columns = ["metric_type", "campaign_id", "attribution_type", "payload"]
    for metric, campaign_id, attribution, payload in rows_in_chunks(raw, columns, chunk):
        shape = json.dumps(without_conversions(json.loads(payload)), sort_keys=True)
        digest = hashlib.blake2b(shape.encode(), digest_size=16).digest()
        shapes.setdefault((metric, campaign_id), {})[attribution] = digest
    differing = []
    checked = 0
    for (metric, campaign_id), by_attribution in sorted(shapes.items()):
        if len(by_attribution) < 2:
            continue
        checked += 1
        reference = next(iter(by_attribution.values()))
        odd = sorted(a for a, d in by_attribution.items() if d != reference)
        if odd:
            differing.append(
                {
                    "metric_type": metric,
                    "campaign_id": campaign_id,
                    "attribution_types": sorted(by_attribution),
                    "differing_from_first": odd,
                }  # fmt: skip
            )
    return Outcome(
        passed=not differing,
        metadata={"campaigns_checked": checked, "campaigns_failing": len(differing)},
        rows=pd.DataFrame(differing).head(SHOWN) if differing else None,
    )


def names_present(recent: list[str], campaigns: pd.DataFrame, days: int) -> Outcome:
    """Every campaign with stats in the last `days` days has a name in `campaigns`."""
    named = set(campaigns.campaign_id[campaigns.campaign_name.fillna("").str.strip() != ""])
    missing = sorted(set(recent) - named)
    return Outcome(
        passed=not missing,
        metadata={
            "summary": f"{len(missing)} of {len(set(recent))} campaigns with stats in the last "
            f"{days} days have no name" + (f" (e.g. {', '.join(missing[:5])})" if missing else ""),
            "campaigns_in_stats": len(set(recent)),
            "without_name": len(missing),
            "missing_ids": missing[:SHOWN],
        },
    )


def no_parent_cycles(campaigns: pd.DataFrame) -> Outcome:
    """Following parent_campaign_id never comes back to where it started."""
    parent = {
        c: p
        for c, p in zip(campaigns.campaign_id, campaigns.parent_campaign_id, strict=True)
        if isinstance(p, str)
    }
    cycles: list[list[str]] = []
    seen_in_cycle: set[str] = set()
    for start in parent:
        path, node = [], start
        while node in parent and node not in path:
            path.append(node)
            node = parent[node]
        if node in path and node not in seen_in_cycle:
            cycle = path[path.index(node) :]
            seen_in_cycle.update(cycle)
            cycles.append(cycle)
    return Outcome(
        passed=not cycles,
        metadata={"children": len(parent), "cycles": len(cycles)},
        rows=pd.DataFrame({"cycle": [" -> ".join([*c, c[0]]) for c in cycles]}) if cycles else None,
    )
