"""Thin Dagster assets over the client, the normalizer and the warehouse."""

from moestats_dagster.orchestration.assets.stats import build_stats_asset

__all__ = ["build_stats_asset"]
