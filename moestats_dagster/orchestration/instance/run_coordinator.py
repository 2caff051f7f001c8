"""A queued run coordinator that tags every run with the MoEngage workspace it fetches.

Dagster's run queue limits runs by tag, and a run launched for one partition carries
`dagster/partition/workspace`, but a run that a UI backfill creates carries only
`dagster/asset_partition_range_start/end`. Without a common tag, `tag_concurrency_limits` could not
keep backfills to one running fetch per workspace. This coordinator adds `moestats/workspace` to
every run, however it was launched, before it enters the queue (lib/run_tags.py reads the tags).
"""

from __future__ import annotations

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun

from moestats_dagster.orchestration.lib.run_tags import WORKSPACE_TAG, workspace_of


class WorkspaceQueuedRunCoordinator(QueuedRunCoordinator):
    """`QueuedRunCoordinator` + the `moestats/workspace` tag (configured in dagster.yaml)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        workspace = workspace_of(run.tags)
        if workspace and run.tags.get(WORKSPACE_TAG) != workspace:
            self._instance.add_run_tags(run.run_id, {WORKSPACE_TAG: workspace})
            tagged = self._instance.get_run_by_id(run.run_id) or run
            context = SubmitRunContext(tagged, context.workspace)
        return super().submit_run(context)
