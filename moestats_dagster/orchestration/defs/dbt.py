"""A team's dbt project on the lake, as Dagster assets downstream of ours (dagster-dbt).

The project reads our tables through the sources `moestats dbt sources` writes (each carries the
asset key that writes it, so the lineage runs from `moestats/performance_stats` into its models)
and reaches the lake through lakehouse/dbt_plugin.py, read-only. Its models refresh by automation
once our summary (or any source they read) has new data and nothing upstream is running.
Optional: `pip install 'moestats_dagster[dbt]'`.
"""

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AutomationCondition

from moestats_dagster.lakehouse.lake import LAKE_PATH_ENV, POSTGRES_URL_ENV
from moestats_dagster.lakehouse.object_store import is_url
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.lib.metadata import Naming
from moestats_dagster.orchestration.lib.resources import WarehouseResource


class DbtNotInstalled(ImportError):
    """The dbt extra is missing."""


def _dagster_dbt():
    try:
        import dagster_dbt
    except ImportError:
        raise DbtNotInstalled(
            "a dbt_project is configured, but dagster-dbt is not installed: pip install "
            "'moestats_dagster[dbt]' (dagster-dbt, dbt-core, dbt-duckdb)"
        ) from None
    return dagster_dbt


def _stale(manifest: Path, project_dir: Path) -> bool:
    """No manifest yet, or one older than a model, a YAML file or the project's settings."""
    if not manifest.is_file():
        return True
    made = manifest.stat().st_mtime
    skip = {manifest.parent, project_dir / "logs", project_dir / "dbt_packages"}
    for path in project_dir.rglob("*"):
        if (
            path.suffix in {".sql", ".yml", ".yaml", ".csv"}
            and not any(s in path.parents for s in skip)
            and path.stat().st_mtime > made
        ):
            return True
    return False


def _dbt_executable() -> str:
    """`dbt` on PATH, else the one installed beside this Python (a virtual environment's
    scripts are not on PATH when its Python is started by path, as a code server may be)."""
    beside = Path(sys.executable).parent / "dbt"
    return shutil.which("dbt") or (str(beside) if beside.is_file() else "dbt")


@contextmanager
def lake_environment(warehouse: WarehouseResource) -> Iterator[None]:
    """The lake of `warehouse` as the dbt plugin finds it, for a dbt process started inside:
    its folder (absolute: dbt runs in the project's folder) and, for a PostgreSQL catalog, the
    URL (in the environment only, never in a file or an argument)."""
    folder = warehouse.database
    wanted = {LAKE_PATH_ENV: folder if is_url(folder) else str(Path(folder).absolute())}
    if warehouse.postgres_url:
        wanted[POSTGRES_URL_ENV] = warehouse.postgres_url
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_dbt_assets(project_dir: str | Path, naming: Naming) -> tuple[Any, dict[str, Any]]:
    """The dbt project's models (and its tests as asset checks) as one multi-asset, and the
    `DbtCliResource` it runs with, keyed per prefix (`moestats_dbt`). The manifest is made with
    `dbt parse` when the project has none, or one older than its files (an edit, then a reload)."""
    dagster_dbt = _dagster_dbt()
    project_dir = Path(project_dir).absolute()
    if not (project_dir / "dbt_project.yml").is_file():
        raise FileNotFoundError(
            f"dbt_project: {project_dir} has no dbt_project.yml; point it at a dbt project's "
            "folder (e.g. examples/dbt_marketing)"
        )
    project = dagster_dbt.DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    resource = dagster_dbt.DbtCliResource(
        project_dir=project, profiles_dir=str(project_dir), dbt_executable=_dbt_executable()
    )
    if _stale(project.manifest_path, project_dir):
        # `dbt parse`, as DbtProject.prepare_if_dev does under `dg dev` (which looks for `dbt`
        # on PATH only): here on every load whose manifest is older than the project's files.
        resource.cli(["parse", "--quiet"], target_path=project.target_path).wait()
    resource_key = naming.name("dbt")

    class Translator(dagster_dbt.DagsterDbtTranslator):
        def get_group_name(self, props: Mapping[str, Any]) -> str | None:
            return super().get_group_name(props) or f"{naming.group}_dbt"

        def get_automation_condition(self, props: Mapping[str, Any]) -> AutomationCondition:
            return REFRESH_AFTER_STATS

    @dagster_dbt.dbt_assets(
        manifest=project.manifest_path,
        project=project,
        name=naming.name("dbt_models"),
        dagster_dbt_translator=Translator(),
        required_resource_keys={resource_key, naming.warehouse},
    )
    def dbt_models(context: AssetExecutionContext):
        """`dbt build` of the selected models, on the lake the warehouse resource names."""
        dbt = getattr(context.resources, resource_key)
        with lake_environment(getattr(context.resources, naming.warehouse)):
            invocation = dbt.cli(["build"], context=context)
        yield from invocation.stream()

    return dbt_models, {resource_key: resource}
