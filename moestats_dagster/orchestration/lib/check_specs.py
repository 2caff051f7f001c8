"""The asset checks: names, descriptions, severities, and their results as Dagster objects.

The logic lives in `moestats_dagster.model.checks`; here each check gets the name and the words a data
engineer reads in the UI. Checks are emitted by the asset that writes the partition, so they see
exactly that partition's rows.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Failure,
    MetadataValue,
)

from moestats_dagster.model import checks
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, PERFORMANCE_STATS, Table

WARN, ERROR = AssetCheckSeverity.WARN, AssetCheckSeverity.ERROR


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    severity: AssetCheckSeverity
    run: Callable[[pd.DataFrame], checks.Outcome]

    @property
    def blocking(self) -> bool:
        # ERROR checks guard the pipeline: downstream assets must not run on bad input.
        return self.severity == ERROR


def _rate_check(rate: str) -> Check:
    formula = checks.RATE_FORMULAS[rate][0]
    return Check(
        f"{rate}_matches_formula",
        f"Source data (WARN): MoEngage's {rate} equals {formula} within the API's 2-decimal "
        f"rounding (±{checks.RATE_TOLERANCE:.3f}); zero denominators expect 0; rows missing an "
        "operand are skipped. We report MoEngage's numbers, we never fix them.",
        WARN,
        lambda frame: checks.rate_matches_formula(frame, rate),
    )


def table_checks(table: Table) -> list[Check]:
    keys = ", ".join(table.keys)
    out = [
        Check(
            "keys_unique",
            f"Pipeline (ERROR, blocking): no two rows share the key ({keys}).",
            ERROR,
            lambda frame: checks.keys_unique(frame, table),
        ),
        Check(
            "key_columns_not_null",
            f"Pipeline (ERROR, blocking): every key column ({keys}) is filled.",
            ERROR,
            lambda frame: checks.keys_not_null(frame, table),
        ),
    ]
    if table.columns_of("BIGINT"):
        out.append(
            Check(
                "counts_not_negative",
                "Pipeline (ERROR, blocking): no count is below zero.",
                ERROR,
                lambda frame: checks.counts_not_negative(frame, table),
            )
        )
    if "extra_metrics" in table.names:
        out.append(
            Check(
                "no_undocumented_metric_keys",
                "Schema drift (WARN): the API sent metric keys that neither its page nor its "
                "published schema documents; they are kept in extra_metrics and listed by name.",
                WARN,
                checks.undocumented_metrics,
            )
        )
    if table is PERFORMANCE_STATS:
        out += [_rate_check(rate) for rate in checks.RATE_FORMULAS]
    return out


HEADLINE = Check(
    "headline_numbers_within_usual_range",
    "Business (WARN): the day's sent and delivered (first metric type) and conversions and "
    "revenue (first attribution type), each campaign counted once, are inside a robust band of "
    "the workspace's trailing 28 days: median ± 4 MAD, at the weekday's level, never narrower "
    "than ±15 %. Needs 14 loaded days; conversions and revenue are judged once the day leaves "
    "the restatement window. Names the metric, the value and the band.",
    WARN,
    lambda frame: checks.Outcome(True),  # judged after publishing, against the stored history
)

COMPLETE_NAME = "raw_complete_against_total_campaigns"
RAW_CHECKS = [
    Check(
        COMPLETE_NAME,
        "Pipeline (ERROR, blocking): for every metric type x attribution type, the campaigns "
        "stored equal the API's total_campaigns, each once. A partial day is refused before it "
        "is written, so a failure here means nothing was stored. When the API sent no "
        "total_campaigns, the day cannot be proven whole: reported as a WARN, with why.",
        ERROR,
        lambda frame: checks.Outcome(True),  # replaced at run time with the API's totals
    ),
    Check(
        "performance_identical_across_attribution_types",
        "Source data (WARN): performance, delivery funnel and failure breakdown do not depend on "
        "the attribution type, so for each campaign they must be identical in every "
        "attribution type's answer (the tables take them from the first configured one).",
        WARN,
        checks.identical_across_attribution,
    ),
    *[c for c in table_checks(CAMPAIGN_STATS_RAW) if c.name.startswith("key")],
]


def specs(key: AssetKey, table_or_checks: Table | list[Check]) -> list[AssetCheckSpec]:
    defs = table_or_checks if isinstance(table_or_checks, list) else table_checks(table_or_checks)
    return [
        AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking)
        for c in defs
    ]


def result(key: AssetKey, check: Check, outcome: checks.Outcome) -> AssetCheckResult:
    return AssetCheckResult(asset_key=key, **_fields(check, outcome))


def evaluation(
    key: AssetKey, check: Check, outcome: checks.Outcome, partition: str
) -> AssetCheckEvaluation:
    """The same result as an event of one partition, for a run of several days (a range run's
    step has no single partition that a yielded `AssetCheckResult` could belong to)."""
    return AssetCheckEvaluation(
        asset_key=key, blocking=check.blocking, partition=partition, **_fields(check, outcome)
    )


def _fields(check: Check, outcome: checks.Outcome) -> dict:
    return {
        "check_name": check.name,
        "passed": outcome.passed,
        "severity": _severity(check, outcome),
        "metadata": _metadata(outcome),
        "description": check.description,
    }


def _severity(check: Check, outcome: checks.Outcome) -> AssetCheckSeverity:
    return AssetCheckSeverity(outcome.severity) if outcome.severity else check.severity


def _metadata(outcome: checks.Outcome) -> dict:
    metadata = {
        k: MetadataValue.json(v) if isinstance(v, dict | list) else v
        for k, v in outcome.metadata.items()
    }
    if outcome.rows is not None and len(outcome.rows):
        metadata["failing_rows"] = MetadataValue.md(
            outcome.rows.astype("string").fillna("NULL").to_markdown(index=False)
        )
    return metadata


def results(key: AssetKey, frame: pd.DataFrame, defs: list[Check]) -> list[AssetCheckResult]:
    return [result(key, c, c.run(frame)) for c in defs]


def refuse_if_blocking(
    where: str, what: str, audited: dict[AssetKey, list[tuple[Check, checks.Outcome]]]
) -> None:
    """Write-audit-publish's gate: raise a Failure naming every blocking check that failed on
    the new data (nothing is published then; the last good data stays). An outcome downgraded to
    WARN (e.g. completeness that cannot be proven) does not block."""
    blocking = [
        (key, check, outcome)
        for key, outcomes in audited.items()
        for check, outcome in outcomes
        if check.blocking and not outcome.passed and outcome.severity is None
    ]
    if not blocking:
        return
    raise Failure(
        description=f"{where}: {len(blocking)} blocking check(s) failed on the new {what}, so "
        "nothing was published and the last good data is kept: "
        + "; ".join(f"{k.path[-1]}.{c.name}" for k, c, _ in blocking),
        metadata={
            f"{k.path[-1]}.{c.name}": MetadataValue.json(
                {**o.metadata, "failing_rows": _records(o.rows)}
            )
            for k, c, o in blocking
        },
        allow_retries=False,  # the same data fails the same check: run_retries leave it alone
    )


def _records(rows: pd.DataFrame | None) -> list[dict]:
    if rows is None or not len(rows):
        return []
    return rows.astype("string").fillna("NULL").head(20).to_dict(orient="records")


RECONCILED = Check(
    "lake_matches_moengage",
    "Completeness (WARN; ERROR when a campaign is missing): for every campaign, the month's "
    "range as the Stats API answers it (TOTAL: sent, delivered, impressions, clicks, and "
    "conversions and revenue per attribution type and goal) equals the sum of its days in the "
    "lake. Names the counts per status and the first differences; the days of a month that "
    "does not match are re-fetched by themselves (the heal sensor). api_inconsistent: the "
    "difference survived a re-fetch of every day, MoEngage's range and days disagree.",
    WARN,
    lambda frame: checks.Outcome(True),  # judged on the month's comparison at run time
)
