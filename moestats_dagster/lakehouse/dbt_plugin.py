"""dbt-duckdb's way into the lake: a plugin that attaches it read-only, as `lake`.

A team's dbt project names it in its profile (`plugins: [{module:
moestats_dagster.lakehouse.dbt_plugin}]`, see examples/dbt_marketing/profiles.yml). dbt-duckdb's
own `attach:` entry cannot do what opening our lake takes: DuckDB's extensions from the
`duckdb-extension-*` packages (dbt-duckdb would INSTALL them from the network), the object store's
credentials, a PostgreSQL catalog whose URL holds a password (kept in MOESTATS_POSTGRES_URL, never
in a profile), and a lake that moved. The plugin opens the lake exactly as the runs and
`moestats_dagster.connect()` do (`lake.attach`), READ_ONLY: a model that writes into
`lake.moestats` fails; the team's models live in the profile's own DuckDB file.

Where the lake is: the plugin's `lake_path` setting, else MOESTATS_LAKE_PATH, else data/lake
(relative paths from the directory dbt runs in); the catalog in PostgreSQL when
MOESTATS_POSTGRES_URL is set.
"""

from __future__ import annotations

import os
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from moestats_dagster.lakehouse.engine import connection_config
from moestats_dagster.lakehouse.lake import (
    Lake,
    WarehouseNotFound,
    attach,
    explained,
    lake_path,
)


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        unknown = sorted(set(plugin_config) - {"lake_path"})
        if unknown:
            raise ValueError(
                f"moestats_dagster.lakehouse.dbt_plugin: unknown setting(s) {unknown}; the one "
                "setting is lake_path (else MOESTATS_LAKE_PATH, else data/lake)"
            )
        folder = str(plugin_config.get("lake_path") or "").strip() or lake_path()
        self.lake = Lake.from_env(folder)

    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        # The extensions laid out from the packages; nothing installed or autoloaded.
        config.update(connection_config())

    def configure_connection(self, conn) -> None:
        if not self.lake.exists:  # said when dbt connects (`dbt parse` needs no lake)
            raise WarehouseNotFound(
                f"no moestats lake at {self.lake.describe()} (from the dbt directory "
                f"{os.getcwd()}): run `make demo` or materialize a partition first, or set "
                "MOESTATS_LAKE_PATH (or the plugin's lake_path) to where the runs write"
            )
        with explained(self.lake):  # a PostgreSQL catalog's password never in dbt's output
            attach(conn, self.lake, read_only=True)  # as `lake`; dbt's own file stays in use
