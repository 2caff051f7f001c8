"""The summary views' assets: how each is declared, and what its materialization shows."""

from dagster import MaterializeResult, PartitionsDefinition, TableColumnLineage, asset

from moestats_dagster.model.schemas import Table
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.lib.metadata import OWNERS, Naming, column_schema, preview
from moestats_dagster.orchestration.lib.partitions import ONE_PER_RUN


def view_asset(
    naming: Naming,
    partitions_def: PartitionsDefinition,
    view: Table,
    deps: list,
    lineage: TableColumnLineage,
    description: str | None = None,
):
    """The decorator of a view's asset, per workspace: refreshed after its upstream data, its
    columns and lineage from the view's declaration (`description`: else the docstring)."""
    return asset(
        key=naming.key(view),
        partitions_def=partitions_def,
        deps=deps,
        group_name=naming.group,
        kinds={"duckdb", "sql"},
        owners=OWNERS,
        automation_condition=REFRESH_AFTER_STATS,
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.warehouse},
        description=description,
        metadata={
            "dagster/column_schema": column_schema(view),
            "dagster/table_name": f"duckdb.{view.qualified}",
            "dagster/column_lineage": lineage,
        },
    )


def view_result(conn, view: str, workspace_id: str, columns: int) -> MaterializeResult:
    """A summary view's materialization: its rows for the workspace, newest and biggest first."""
    frame = conn.execute(
        f"SELECT * FROM {view} WHERE workspace_id = ? ORDER BY stat_date DESC, sent DESC NULLS LAST",
        [workspace_id],
    ).fetchdf()
    return MaterializeResult(
        metadata={"dagster/row_count": len(frame), "preview": preview(frame, columns=columns)}
    )
