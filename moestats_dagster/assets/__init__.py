"""Thin Dagster assets over the client, the normalizer and the warehouse."""

from .raw import build_raw_asset
from .tables import build_table_assets

__all__ = ["build_raw_asset", "build_table_assets"]
