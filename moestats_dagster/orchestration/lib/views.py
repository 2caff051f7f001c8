"""What a summary view's materialization shows: its rows for one workspace."""

from dagster import MaterializeResult

from moestats_dagster.orchestration.lib.metadata import preview


def view_result(conn, view: str, workspace_id: str, columns: int) -> MaterializeResult:
    """A summary view's materialization: its rows for the workspace, newest and biggest first."""
    frame = conn.execute(
        f"SELECT * FROM {view} WHERE workspace_id = ? ORDER BY stat_date DESC, sent DESC NULLS LAST",
        [workspace_id],
    ).fetchdf()
    return MaterializeResult(
        metadata={"dagster/row_count": len(frame), "preview": preview(frame, columns=columns)}
    )
