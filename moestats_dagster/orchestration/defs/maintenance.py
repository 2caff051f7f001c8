"""`moestats/lake_maintenance`: the weekly merge, expiry and cleanup of the lake (maintenance.py),
on a schedule that is on by default."""

from dagster import (
    AssetExecutionContext,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
    in_process_executor,
)

from moestats_dagster.config import Settings
from moestats_dagster.lakehouse.maintenance import maintain
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, OWNERS, Naming
from moestats_dagster.orchestration.lib.resources import WarehouseResource

MAINTENANCE = "lake_maintenance"


def build_maintenance(settings: Settings, naming: Naming = DEFAULT_NAMING):
    """The asset, its job and its weekly schedule (Sundays, 12 h after the nightly run)."""
    key = naming.key_of(MAINTENANCE)
    keep = settings.keep_snapshots_days

    @asset(
        key=key,
        group_name=naming.group,
        kinds={"duckdb"},
        owners=OWNERS,
        required_resource_keys={naming.warehouse},
        description=(
            "Keeps the lake fast and small: merges each table's small Parquet files, expires "
            f"snapshots older than {keep} days (keep_snapshots_days: time travel reaches back that "
            "far), deletes files no snapshot references and files killed runs left behind. Runs "
            "while no publish is in flight; publishes wait for it (the lake's maintenance lock)."
        ),
    )
    def lake_maintenance(context: AssetExecutionContext):
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        done = maintain(warehouse.lake, keep_days=keep)
        before, after = done.before, done.after
        context.log.info(
            f"lake maintenance: {before.files} -> {after.files} current files, "
            f"{before.stored_files} -> {after.stored_files} tracked, {before.snapshots} -> "
            f"{after.snapshots} snapshots, {done.files_on_disk_before} -> "
            f"{done.files_on_disk_after} Parquet files on disk"
        )
        return MaterializeResult(
            metadata={
                "current_files": after.files,
                "current_files_before": before.files,
                "tracked_files": after.stored_files,
                "tracked_files_before": before.stored_files,
                "snapshots": after.snapshots,
                "snapshots_before": before.snapshots,
                "megabytes": MetadataValue.float(after.megabytes),
                "files_on_disk": done.files_on_disk_after,
                "files_on_disk_before": done.files_on_disk_before,
                "keep_snapshots_days": keep,
            }
        )

    job = define_asset_job(
        naming.name("lake_maintenance"),
        selection=[key],
        executor_def=in_process_executor,
        description="Merge small files, expire old snapshots, delete unreferenced files.",
    )
    schedule = ScheduleDefinition(
        name=naming.name("weekly_maintenance"),
        job=job,
        cron_schedule=f"0 {(settings.schedule_hour + 12) % 24} * * 0",
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Sundays at {(settings.schedule_hour + 12) % 24:02d}:00 {settings.timezone}: "
        "lake maintenance, away from the nightly runs.",
    )
    return lake_maintenance, job, schedule
