"""`moestats_dagster.MoEngageStats`: the whole pipeline as a Dagster Component, configured in a
`defs.yaml` inside a `dg` project. Its attributes are the workspaces file's keys, plus where the
warehouse lives and where the assets sit (key prefix, group). It builds its definitions with
`build_definitions`, exactly as the standalone project does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components import Scaffolder, ScaffoldRequest, scaffold_component, scaffold_with
from pydantic import Field

from moestats_dagster.config import Settings, settings_from_mapping
from moestats_dagster.lakehouse.lake import DEFAULT_LAKE_PATH, POSTGRES_URL_ENV
from moestats_dagster.lakehouse.object_store import is_url
from moestats_dagster.orchestration.build import build_definitions  # the one build path
from moestats_dagster.orchestration.lib.metadata import Naming

# The attributes that are the workspaces file's keys (the rest say where and under what name).
SETTINGS_KEYS = tuple(k for k in Settings.model_fields if k != "source")


class MoEngageStatsScaffolder(Scaffolder):
    """`dg scaffold defs moestats_dagster.MoEngageStats <path>`: a defs.yaml that runs as it is,
    on the bundled sandbox, with the keys to change for real workspaces."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        scaffold_component(
            request,
            {
                "start_date": "2024-01-01",
                "timezone": "UTC",
                "workspaces": [
                    # For a real workspace: data_center ("01"-"06", "101") and api_key_env
                    # (the env var holding its Campaign report API key) instead of base_url.
                    {"id": "WS_ALPHA", "base_url": "sandbox"},
                ],
                "lake_path": DEFAULT_LAKE_PATH,
                "key_prefix": ["moestats"],
                "group": "moestats",
            },
        )


@scaffold_with(MoEngageStatsScaffolder)
class MoEngageStats(dg.Component, dg.Model, dg.Resolvable):
    """MoEngage campaign Stats API -> a daily, per-workspace, checked campaign-analytics
    warehouse (DuckLake), with campaign metadata, summary views, a report per workspace, the
    nightly schedule, automation and (optional) Slack alerts.

    The attributes are those of the workspaces file (see the project README), plus `lake_path`,
    `postgres_url_env`, `key_prefix`, `group` and `dbt_project`.
    """

    start_date: str = Field(description="first daily partition (YYYY-MM-DD)")
    workspaces: list[dict[str, Any]] = Field(
        description="MoEngage workspaces: id, data_center or base_url ('sandbox' = the bundled "
        "emulator), api_key_env, and optionally attribution_types, metric_types, campaign_ids, "
        "rate_limit_per_minute, max_campaigns_per_day, timezone, flows, flow_quiet_days"
    )
    timezone: str = Field("UTC", description="the workspaces' day, unless one gives its own")
    restatement_days: int = Field(3, description="trailing days the nightly run re-fetches")
    schedule_hour: int = Field(3, description="local hour of each workspace's nightly run")
    catch_up_days: int | None = Field(
        None, description="days before the restatement window each night heals (default 14)"
    )
    keep_snapshots_days: int | None = Field(
        None, description="lake maintenance keeps snapshots this many days (default 30)"
    )
    reconcile_heal_days: int | None = Field(
        None, description="days per workspace and day healing re-fetches (default 31)"
    )
    periods: list[str] | None = Field(
        None, description="period tables: [week, month], [month] (the default) or []"
    )
    alerts: dict[str, Any] | None = Field(
        None, description="{slack: {channel, token_env, webserver_url, base_url, checks}}"
    )
    lake_path: str = Field(
        DEFAULT_LAKE_PATH,
        description="the warehouse folder (relative to the project root), or an s3:// URL",
    )
    postgres_url_env: str = Field(
        POSTGRES_URL_ENV,
        description="env var with a PostgreSQL URL for the lake's catalog and the shared rate "
        "windows (production profile); unset variable = SQLite catalog, per-host windows",
    )
    key_prefix: list[str] = Field(["moestats"], description="asset key prefix, e.g. [marketing]")
    group: str = Field("moestats", description="asset group")
    dbt_project: str | None = Field(
        None,
        description="a dbt project on the lake (its folder, relative to the project root): its "
        "models become assets downstream of ours, refreshed by automation (the dbt extra)",
    )

    def settings(self, source: str) -> Settings:
        """The workspaces-file part of the attributes, validated as the file is."""
        raw = {k: v for k, v in self.model_dump().items() if k in SETTINGS_KEYS and v is not None}
        return settings_from_mapping(raw, source, f"component MoEngageStats at {source}")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        settings = self.settings(str(context.path))
        lake = self.lake_path if is_url(self.lake_path) else Path(self.lake_path)
        if isinstance(lake, Path) and not lake.is_absolute():
            lake = Path(context.project_root) / lake
        if not self.key_prefix or not all(p.strip() for p in self.key_prefix):
            raise dg.DagsterInvalidDefinitionError(
                f"component MoEngageStats at {context.path}: key_prefix must be a non-empty list "
                "of names, e.g. [marketing, moestats]"
            )
        return build_definitions(
            settings,
            database=str(lake),
            naming=Naming(prefix=tuple(self.key_prefix), group=self.group),
            postgres_url_env=self.postgres_url_env,
            own_executor=False,  # the project's executor stays the project's
            dbt_project=None
            if self.dbt_project is None
            else Path(context.project_root) / self.dbt_project,  # an absolute path stays one
        )
