"""MoEngage campaign Stats API -> daily, per-workspace, checked DuckDB warehouse, run from Dagster."""
