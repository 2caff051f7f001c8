"""Configuration: the workspaces file -> typed, validated settings (settings.py: the keys and
their rules; files.py: finding, reading and explaining the file). Errors name the file, the
workspace and the fix."""

from moestats_dagster.config.files import (
    bundled_workspaces_file,
    load_settings,
    rate_window,
    settings_from_mapping,
    workspaces_file_path,
)
from moestats_dagster.config.settings import (
    MAX_LOOKBACK_YEARS,
    RATE_WINDOW_ENV,
    SANDBOX,
    WORKSPACES_FILE_ENV,
    AlertSettings,
    Settings,
    SlackSettings,
    WorkspaceSettings,
    WorkspacesFileError,
)

__all__ = [
    "MAX_LOOKBACK_YEARS", "RATE_WINDOW_ENV", "SANDBOX",
    "WORKSPACES_FILE_ENV", "AlertSettings", "Settings", "SlackSettings", "WorkspaceSettings",
    "WorkspacesFileError", "bundled_workspaces_file", "load_settings",
    "rate_window", "settings_from_mapping", "workspaces_file_path",
]  # fmt: skip
