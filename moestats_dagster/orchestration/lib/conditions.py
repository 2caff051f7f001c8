"""When the per-workspace assets (and a team's dbt models) refresh by themselves."""

from dagster import AutomationCondition

# Dagster's `eager()` without its "no dependency partition is missing" term: a workspace's
# metadata depends on every day of that workspace, and days that were never loaded (before a
# backfill reaches them) would hold it back for ever. What is kept: run once after any new
# upstream materialization (a run that also targeted this asset does not count), and not while
# anything upstream is still running or queued — a 90-day backfill ends in one refresh, not 90.
REFRESH_AFTER_STATS = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after new upstream data, once nothing upstream is running")
