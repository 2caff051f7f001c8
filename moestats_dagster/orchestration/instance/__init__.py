"""Plug-ins that only dagster.yaml names (event log storage, run coordinator)."""
