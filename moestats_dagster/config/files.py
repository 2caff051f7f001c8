"""The workspaces file: where it is (MOESTATS_WORKSPACES_FILE, else the bundled sandbox
workspaces), reading it strictly (a key given twice is an error) and turning pydantic's errors
into lines that name the file, the workspace, the key and the fix. Also the other settings that
come from the environment: the lake's path and the rate window."""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from moestats_dagster.config.settings import (
    RATE_WINDOW_ENV,
    WORKSPACES_FILE_ENV,
    Settings,
    WorkspaceSettings,
    WorkspacesFileError,
    _shown,
)

log = logging.getLogger("moestats_dagster")


def bundled_workspaces_file() -> Path:
    """The embedded default: sandbox workspaces, no credentials needed."""
    return Path(str(resources.files("moestats_dagster") / "defaults" / "workspaces.yaml"))


def workspaces_file_path() -> Path:
    """The file named by MOESTATS_WORKSPACES_FILE, else the bundled default."""
    value = os.environ.get(WORKSPACES_FILE_ENV, "").strip()
    return Path(value) if value else bundled_workspaces_file()


def rate_window() -> float:
    """Seconds of MoEngage's rate window: 60. MOESTATS_RATE_WINDOW_SECONDS scales it down so
    tests and benchmarks against the sandbox run in seconds, not minutes."""
    value = os.environ.get(RATE_WINDOW_ENV, "").strip()
    try:
        seconds = float(value) if value else 60.0
    except ValueError:
        raise WorkspacesFileError(
            f"{RATE_WINDOW_ENV}={value!r} is not a number of seconds"
        ) from None
    if seconds <= 0:
        raise WorkspacesFileError(f"{RATE_WINDOW_ENV}={value!r} must be above 0")
    return seconds


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate a workspaces file (default: see `workspaces_file_path`)."""
    path = Path(path) if path is not None else workspaces_file_path()
    if not path.is_file():
        raise WorkspacesFileError(
            f"workspaces file {path} does not exist; fix {WORKSPACES_FILE_ENV} or unset it to use "
            "the bundled sandbox workspaces"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise WorkspacesFileError(
            f"workspaces file {path} is not UTF-8 text (byte {exc.start}, line {line}); save it "
            "as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise WorkspacesFileError(f"workspaces file {path} is not valid YAML: {exc}") from None
    return settings_from_mapping(raw, str(path), f"workspaces file {path}")


def settings_from_mapping(raw: Any, source: str, where: str) -> Settings:
    """Validate the workspaces-file contract, from a file or a component's YAML attributes;
    `where` starts every error message ("workspaces file x.yaml", "component at …")."""
    if not isinstance(raw, dict):
        raise WorkspacesFileError(f"{where}: expected a mapping with start_date and workspaces")
    try:
        settings = Settings.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise WorkspacesFileError(_explain(where, raw, exc)) from None
    if settings.uses_sandbox:
        sandboxed = [ws.id for ws in settings.workspaces if ws.is_sandbox]
        log.info("workspaces %s use the bundled MoEngage sandbox (synthetic data)", sandboxed)
    return settings


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, but a key given twice in one mapping is an error, not a silent
    override (the second `rate_limit_per_minute` would otherwise win unnoticed)."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line}); "
                "keep one",
                key_node.start_mark,
            )  # fmt: skip
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)
# Unquoted dates stay text, checked by the settings with the key's name: PyYAML's own timestamp
# reading raised a bare ValueError naming neither file nor key for `start_date: 2024-13-01`.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# The fix for a value of the wrong type, by pydantic's error type: each fits its key's type.
_TYPE_FIXES = {
    "int_": "write a whole number such as 100",
    "bool_": "write true or false",
    "string_": "write text; quote it if it looks like a number or a date",
    "date_": "write a date as YYYY-MM-DD, e.g. 2024-01-01",
    "tuple_": "write a list, e.g. [A, B]",
    "list_": "write a list, e.g. [A, B]",
}

_FIXES = {
    "extra_forbidden": "unknown key; remove it or fix its spelling",
    "missing": "required key is missing; add it",
}


def _explain(where: str, raw: dict[str, Any], exc: ValidationError) -> str:
    """Turn pydantic's errors into lines naming the workspace, the key and the fix."""
    errors = exc.errors()
    inside = any(len(e["loc"]) >= 2 and e["loc"][0] == "workspaces" for e in errors)
    # pydantic also reports a list whose every entry failed as "too short": not a second problem.
    errors = [e for e in errors if not (inside and e["type"] == "too_short"
                                         and tuple(e["loc"]) == ("workspaces",))]  # fmt: skip
    lines = [f"{where} has {len(errors)} problem(s):"]
    for err in errors:
        loc = list(err["loc"])
        where = "top level"
        if len(loc) >= 2 and loc[0] == "workspaces" and isinstance(loc[1], int):
            entries = raw.get("workspaces") or []
            entry = entries[loc[1]] if loc[1] < len(entries) else {}
            ws_id = entry.get("id") if isinstance(entry, dict) else None
            where = f"workspace {_shown(ws_id)}" if ws_id else f"workspace #{loc[1] + 1}"
            loc = loc[2:]
        key = ".".join(str(p) for p in loc)
        if not key:  # a check across keys: its message starts with the key it is about
            first = err["msg"].removeprefix("Value error, ").split(" ", 1)[0]
            fields = (
                Settings.model_fields if where == "top level" else WorkspaceSettings.model_fields
            )
            key = first if first in fields else "(entry)"
        message = _FIXES.get(err["type"], err["msg"].removeprefix("Value error, "))
        hint = next((h for kind, h in _TYPE_FIXES.items() if err["type"].startswith(kind)), None)
        if hint and "input" in err:
            shown = "value not shown" if key.endswith("_env") else f"got {err['input']!r:.60}"
            message += f" ({shown}); {hint}"
        if err["type"] == "extra_forbidden":
            allowed = (
                WorkspaceSettings.model_fields if where != "top level" else Settings.model_fields
            )
            names = ", ".join(n for n in allowed if n != "source")
            message += f" (allowed: {names})"
        lines.append(f"  - {where}: {key}: {message}")
    return "\n".join(lines)
