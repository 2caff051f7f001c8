"""UI metadata derived from the declared schemas: column schemas, lineage, previews."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetKey,
    MetadataValue,
    TableColumn,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
)

from moestats_dagster.model.schemas import Table

OWNERS = ["team:marketing-data"]
# The period assets by period kind (defs/periods.py); both write the period tables.
PERIOD_ASSET_NAMES = {"week": "campaign_weekly_stats", "month": "campaign_monthly_stats"}


@dataclass(frozen=True)
class Naming:
    """Where the assets sit in a Dagster project: the asset-key prefix and the group (the
    component's `key_prefix` and `group`). The DuckDB tables keep their names whatever these are."""

    prefix: tuple[str, ...] = ("moestats",)
    group: str = "moestats"

    def key(self, table: Table) -> AssetKey:
        return AssetKey([*self.prefix, table.name])

    def key_of(self, name: str) -> AssetKey:
        """The key of an asset that is not a table (the report, the coverage)."""
        return AssetKey([*self.prefix, name])

    def name(self, suffix: str) -> str:
        """A job, schedule, sensor or op name, unique per prefix: `moestats_daily`."""
        return "_".join([*self.prefix, suffix])

    # Resource keys, unique per prefix too: a team's own `warehouse` resource, or a second
    # component, never collides with ours.
    @property
    def moengage(self) -> str:
        return self.name("moengage")

    @property
    def warehouse(self) -> str:
        return self.name("warehouse")


DEFAULT_NAMING = Naming()


def column_schema(table: Table) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(c.name, c.type, description=c.description + (" (key)" if c.key else ""))
            for c in table.columns
        ]
    )


def lineage_from_raw(table: Table, raw: Table, naming: Naming) -> TableColumnLineage:
    """Key columns come from the raw table's same-named columns, the rest from its payload."""
    raw_key = naming.key(raw)
    return TableColumnLineage(
        {
            c.name: [
                TableColumnDep(
                    asset_key=raw_key, column_name=c.name if c.name in raw.names else "payload"
                )
            ]
            for c in table.columns
        }
    )


def static_metadata(table: Table) -> dict[str, object]:
    return {
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": f"duckdb.{table.qualified}",
        "partition_expr": {"date": "stat_date", "workspace": "workspace_id"},
    }


def preview(frame: pd.DataFrame, rows: int = 5, columns: int = 12) -> MetadataValue:
    """A small markdown table of the slice just written."""
    if frame.empty:
        return MetadataValue.md("_empty slice: the API reported no campaigns for this day_")
    shown = frame.head(rows).iloc[:, :columns].astype("string").fillna("")
    for col in shown.columns:
        shown[col] = shown[col].str.slice(0, 40)
    return MetadataValue.md(shown.to_markdown(index=False))
