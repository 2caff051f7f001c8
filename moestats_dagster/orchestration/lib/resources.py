"""Dagster resources: Stats API clients per workspace, and the warehouse (a DuckLake lake)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_duckdb import DuckDBResource
from pydantic import Field

from moestats_dagster.config import Settings, WorkspaceSettings
from moestats_dagster.lakehouse import warehouse
from moestats_dagster.lakehouse.lake import Lake
from moestats_dagster.moengage import (
    CampaignLookup,
    CampaignMetaClient,
    CampaignSearchClient,
    CampaignsV5Client,
    StatsClient,
)
from moestats_dagster.moengage.flows import FlowsClient
from moestats_dagster.moengage.pgstate import PostgresWindowStore
from moestats_dagster.moengage.ratelimit import default_state_dir
from moestats_dagster.orchestration.lib.worker import claim
from moestats_dagster.sandbox.embedded import (
    embedded_sandbox_url,
    sandbox_api_key,
    sandbox_campaigns_key,
)

METADATA_CLIENTS: dict[str, type[CampaignLookup]] = {
    "search": CampaignSearchClient,
    "meta": CampaignMetaClient,
    "v5": CampaignsV5Client,
}


class MissingApiKeyError(RuntimeError):
    """The env var that should hold a workspace's API key is unset: only that workspace fails."""


@lru_cache(maxsize=8)
def _settings_from_json(text: str) -> Settings:
    return Settings.model_validate_json(text)


class MoEngageResource(ConfigurableResource):
    """Stats API clients for the workspaces of the settings it was made for (`for_settings`).

    API keys are read, through Dagster's `EnvVar`, only when a run of that workspace needs one: a
    missing variable fails that workspace's runs with a message naming it, and nothing else.
    """

    # Settings reach a run one way: validated once where the definitions are built, then carried
    # in this resource's config. A run's process builds its resources from config alone, and a
    # component's settings come from YAML attributes with no file of their own to read again.
    workspaces_file: str = Field(
        "", description="where the settings were read (a file, or a component's defs.yaml)"
    )
    settings_json: str = Field(
        "", description="the validated settings, as JSON (no secrets in it: keys are env names)"
    )
    max_workers: int = Field(8, description="concurrent calls per workspace")
    limiter_dir: str = Field(
        "",
        description="where this user's processes share each workspace's rate window "
        "('' = $MOESTATS_STATE_DIR, else ~/.local/state/moestats)",
    )
    window_seconds: float = Field(60.0, description="rate-limit window (tests scale it down)")
    max_retries: int = Field(8, description="retries of a call on 429 or 5xx")
    connection_retries: int = Field(
        2, description="retries of a call that got no answer (refused, timeout); DNS/TLS: none"
    )
    backoff_factor: float = Field(1.0, description="seconds; doubles with each retry (jittered)")
    call_deadline_seconds: float = Field(30.0, description="one HTTP call, answer read whole")
    retry_budget_seconds: float = Field(
        300.0, description="wall-clock time a run may spend on failed calls, backoff and 429s"
    )
    postgres_url: str = Field(
        "",
        description="with a PostgreSQL URL (MOESTATS_POSTGRES_URL), every workspace's rate "
        "window is shared there by all hosts instead of in a per-user file",
    )

    @classmethod
    def for_settings(cls, settings: Settings, **options: Any) -> MoEngageResource:
        """The resource for validated `settings` (`load_settings(path)`); `options` set the
        other fields (retries, rate window, limiter folder)."""
        return cls(
            workspaces_file=settings.source, settings_json=settings.model_dump_json(), **options
        )

    def settings(self) -> Settings:
        if not self.settings_json:
            raise ValueError(
                "MoEngageResource has no settings: make it with "
                "MoEngageResource.for_settings(load_settings(path), ...)"
            )
        return _settings_from_json(self.settings_json)

    def workspace(self, workspace_id: str) -> WorkspaceSettings:
        return self.settings().workspace(workspace_id)

    def client(self, workspace_id: str, **options: Any) -> StatsClient:
        """A Stats API client for one workspace, its rate window shared by every process on
        the host (`logger=context.log` shows its waits and retries in the run's log)."""
        ws = self.workspace(workspace_id)
        return StatsClient(
            max_workers=self.max_workers,
            max_campaigns=ws.max_campaigns_per_day,
            **{**self._options(workspace_id, "stats"), **options},
        )

    def meta_client(self, workspace_id: str, **options: Any) -> CampaignMetaClient:
        """A Campaign Meta API client: same credentials, its own rate window."""
        return CampaignMetaClient(**{**self._options(workspace_id, "meta"), **options})

    def campaign_client(self, workspace_id: str, source: str, **options: Any) -> CampaignLookup:
        """A client of one metadata endpoint (search, meta, v5), each with its own rate window;
        v5 with the workspace's Campaigns key, never the Campaign report key."""
        settings = self._options(workspace_id, source)
        if source == "v5":
            settings["api_key"] = self._campaigns_key(self.workspace(workspace_id))
        return METADATA_CLIENTS[source](**{**settings, **options})

    def flows_client(self, workspace_id: str, **options: Any) -> FlowsClient:
        """A Flows API client (v5 key, its own rate window) for one workspace."""
        settings = self._options(workspace_id, "flows")
        settings["api_key"] = self._campaigns_key(self.workspace(workspace_id), "the Flows API")
        return FlowsClient(**{**settings, **options})

    def _campaigns_key(self, ws: WorkspaceSettings, api: str = "v5/campaigns/search") -> str:
        if ws.is_sandbox:
            key = sandbox_campaigns_key(ws.id)
            if key is None:
                raise MissingApiKeyError(
                    f"workspace {ws.id}: the sandbox gives this workspace no v5 key, so {api} "
                    "cannot be asked"
                )
            return key
        if not ws.campaigns_api_key_env:
            raise MissingApiKeyError(
                f"workspace {ws.id}: {api} needs a v5 API key. Create one in "
                "MoEngage (Settings > Account > API keys) with the Campaigns View permission "
                "(campaigns:view), put it in an environment variable and name that variable in "
                "campaigns_api_key_env"
            )
        key = EnvVar(ws.campaigns_api_key_env).get_value()
        if not key:
            raise MissingApiKeyError(
                f"workspace {ws.id}: environment variable {ws.campaigns_api_key_env} "
                "(campaigns_api_key_env) is not set. Set it to a Campaigns API key with the "
                "Campaigns View permission where Dagster runs"
            )
        return key

    def _options(self, workspace_id: str, endpoint: str) -> dict:
        ws = self.workspace(workspace_id)
        if ws.is_sandbox:
            limits = [(w.id, w.rate_limit_per_minute) for w in self.settings().workspaces]
            base_url, api_key = embedded_sandbox_url(limits), sandbox_api_key(ws.id)
        else:
            base_url = ws.base_url
            api_key = EnvVar(ws.api_key_env).get_value()
            if not api_key:
                raise MissingApiKeyError(
                    f"workspace {ws.id}: environment variable {ws.api_key_env} is not set. Set it "
                    "to the workspace's Campaign report API key (MoEngage: Settings > Account > "
                    "APIs) where Dagster runs, then re-run. Other workspaces are not affected."
                )
        # One window per API host x workspace, whichever process asks. The embedded sandbox
        # listens on a new port in every run process, so it is keyed by name, not by URL: runs
        # in separate processes (the UI, backfills, the demo) then share its 100 calls/min as
        # they would share MoEngage's.
        host = "sandbox" if ws.is_sandbox else (base_url or ws.data_center)
        window_id = hashlib.sha1(f"{host}|{ws.id}".encode()).hexdigest()[:16]
        shared: dict[str, Any] = {}
        if self.postgres_url:  # every host's runs share the window through PostgreSQL
            shared["limiter_store"] = PostgresWindowStore(
                self.postgres_url, f"{endpoint}-{window_id}"
            )
        folder = Path(self.limiter_dir) if self.limiter_dir else default_state_dir() / "ratelimit"
        return {
            "workspace_id": ws.id,
            "api_key": api_key,
            "data_center": ws.data_center,
            "base_url": base_url,
            "rate_limit_per_minute": ws.rate_limit_per_minute,
            "window_seconds": self.window_seconds,
            "max_retries": self.max_retries,
            "connection_retries": self.connection_retries,
            "backoff_factor": self.backoff_factor,
            "call_deadline_seconds": self.call_deadline_seconds,
            "retry_budget_seconds": self.retry_budget_seconds,
            "limiter_state_file": str(folder / f"{endpoint}-{window_id}.json"),
            **shared,
        }


class WarehouseResource(DuckDBResource):
    """The DuckLake warehouse, as dagster-duckdb's `DuckDBResource`: `get_connection()` yields a
    DuckDB connection with the lake attached and in use, so `moestats.<table>` resolves — in our
    assets and in a team's own. `database` is the lake folder (catalog.sqlite and files/)."""

    database: str = Field(description="the lake folder (catalog.sqlite and files/ inside it)")
    postgres_url: str = Field(
        "", description="PostgreSQL URL of the lake's catalog (MOESTATS_POSTGRES_URL); '' = SQLite"
    )
    retry_seconds: float = Field(
        120.0, description="how long a publish is retried while other runs commit"
    )

    @property
    def lake(self) -> Lake:
        return Lake.at(self.database, self.postgres_url or None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # every run that writes the lake says where it runs (the launcher's health check)
        claim(context.instance, context.run_id)

    @contextlib.contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connection(self.lake, self.retry_seconds) as conn:
            yield conn
