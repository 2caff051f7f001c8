"""The standalone project's code location: `defs`, from the workspaces file and the lake folder
named by the environment (MOESTATS_WORKSPACES_FILE, MOESTATS_LAKE_PATH), and a dbt project on
the lake when MOESTATS_DBT_PROJECT names one (`make dev` names examples/dbt_marketing). Nothing
else lives here:
the wiring is `build_definitions` (build.py), which the `MoEngageStats` component uses too."""

import os

from dagster import get_dagster_logger

from moestats_dagster.config import load_settings, workspaces_file_path
from moestats_dagster.lakehouse.lake import lake_path
from moestats_dagster.orchestration.build import (
    CAMPAIGNS_JOB,
    FRESHNESS_JOB,
    JOB_NAME,
    build_definitions,
)

__all__ = ["CAMPAIGNS_JOB", "FRESHNESS_JOB", "JOB_NAME", "build_definitions", "defs"]

_settings = load_settings(workspaces_file_path())
if _settings.uses_sandbox:  # said where a user looks: the code server's log (and asset metadata)
    get_dagster_logger("moestats_dagster").warning(
        f"moestats: workspaces {[ws.id for ws in _settings.workspaces if ws.is_sandbox]} of "
        f"{_settings.source} use the bundled MoEngage sandbox (synthetic data, no network)"
    )
DBT_PROJECT_ENV = "MOESTATS_DBT_PROJECT"
defs = build_definitions(
    _settings,
    database=lake_path(),
    dbt_project=os.environ.get(DBT_PROJECT_ENV, "").strip() or None,
)
