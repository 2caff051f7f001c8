"""A dbt `sources.yml` for the lake: every table and view, its columns and descriptions from
model/schemas.py, each source carrying the Dagster asset key that writes it (`meta.dagster.
asset_key`, which dagster-dbt reads), so a team's models hang off our assets in the lineage."""

from __future__ import annotations

import yaml
from dagster import AssetKey

from moestats_dagster.model.schemas import (
    ANSWERS,
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGN_MONTHLY_SUMMARY,
    CAMPAIGN_PERIOD_GOAL_STATS,
    CAMPAIGN_PERIOD_STATS,
    CAMPAIGN_STATS_RAW,
    PARENT_CAMPAIGN_DAILY_SUMMARY,
    SCHEMA,
    TABLES,
    VIEWS,
    Table,
)
from moestats_dagster.orchestration.lib.metadata import PERIOD_ASSET_NAMES as ASSET_NAMES
from moestats_dagster.orchestration.lib.metadata import Naming

SOURCE = "moestats"  # the dbt source name: {{ source('moestats', 'performance_stats') }}
DATABASE = "lake"  # the name the lake is attached under (lakehouse/dbt_plugin.py)

# A view is written by the asset that (re)creates it; the period tables by the week's and the
# month's asset alike, so each period has a source of its own over the one table.
_WRITTEN_BY = {
    ANSWERS.name: CAMPAIGN_STATS_RAW.name,  # the ledger is published with each day's stats
    PARENT_CAMPAIGN_DAILY_SUMMARY.name: CAMPAIGN_DAILY_SUMMARY.name,
    CAMPAIGN_MONTHLY_SUMMARY.name: ASSET_NAMES["month"],
}
_PERIOD_SOURCES = {  # source name -> (table, period)
    f"campaign_{kind}ly_{suffix}": (table, kind)
    for kind in ("week", "month")
    for suffix, table in (
        ("stats", CAMPAIGN_PERIOD_STATS),
        ("goal_stats", CAMPAIGN_PERIOD_GOAL_STATS),
    )
}


def _source_table(name: str, table: Table, key: AssetKey, note: str = "") -> dict:
    entry: dict = {"name": name}
    if name != table.name:
        entry["identifier"] = table.name
    entry["description"] = table.description + note
    entry["meta"] = {"dagster": {"asset_key": list(key.path)}}
    entry["columns"] = [
        {"name": c.name, "description": c.description, "data_type": c.type} for c in table.columns
    ]
    return entry


def sources(naming: Naming) -> dict:
    """The sources.yml document for assets named by `naming` (its key prefix included)."""
    tables = []
    period_tables = {t.name for t, _ in _PERIOD_SOURCES.values()}
    for name, table in sorted({**TABLES, **VIEWS}.items()):
        if name in period_tables:
            continue
        tables.append(_source_table(name, table, naming.key_of(_WRITTEN_BY.get(name, name))))
    for name, (table, period) in sorted(_PERIOD_SOURCES.items()):
        asset = ASSET_NAMES[period]
        note = f". The rows of period = '{period}' are this source's (written by {asset})"
        tables.append(_source_table(name, table, naming.key_of(asset), note))
    return {
        "version": 2,
        "sources": [
            {
                "name": SOURCE,
                "description": "The moestats_dagster warehouse: MoEngage campaign stats, loaded "
                "and checked by Dagster (read-only here; attached as `lake`).",
                "database": DATABASE,
                "schema": SCHEMA,
                "tables": tables,
            }
        ],
    }


def sources_yaml(naming: Naming) -> str:
    """`sources(naming)` as YAML, with a header saying how it was made."""
    prefix = "/".join(naming.prefix)
    header = (
        "# Written by `moestats dbt sources"
        + (f" --key-prefix {prefix}" if naming.prefix != ("moestats",) else "")
        + "`: run it again after upgrading moestats_dagster, do not edit.\n"
        "# Each source's meta.dagster.asset_key is the Dagster asset that writes it.\n"
    )
    return header + yaml.safe_dump(sources(naming), sort_keys=False, allow_unicode=True, width=100)
