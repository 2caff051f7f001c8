"""The workspaces file -> typed, validated settings. Errors name the file, the workspace and the fix."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moestats_dagster.moengage import (
    ATTRIBUTION_TYPES,
    METRIC_TYPES,
    ConfigurationError,
    normalize_data_center,
)

log = logging.getLogger("moestats_dagster")

WORKSPACES_FILE_ENV = "MOESTATS_WORKSPACES_FILE"
LAKE_PATH_ENV = "MOESTATS_LAKE_PATH"
OLD_DUCKDB_PATH_ENV = "MOESTATS_DUCKDB_PATH"
RATE_WINDOW_ENV = "MOESTATS_RATE_WINDOW_SECONDS"
DEFAULT_LAKE_PATH = "data/lake"
SANDBOX = "sandbox"  # the base_url value that means "the bundled emulator"

AttributionType = Literal[
    "VIEW_THROUGH", "CLICK_THROUGH", "IN_SESSION", "TOTAL_CONVERSIONS", "CLICK_CONVERSIONS"
]
MetricType = Literal["TOTAL", "UNIQUE"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: no trailing newline
# A workspace id is a partition key and a folder name (reports/<id>/): a safe path segment only,
# never "." or "..", bounded so a 5,000-character id cannot reach a file name or a message.
_WORKSPACE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-.]{0,63}")
_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9_\-.:]{1,128}")
_DAYS_AGO = re.compile(r"(\d{1,4}) days? ago")
# How far back start_date may go. MoEngage keeps stats for a campaign's lifetime, but every day
# costs (metric types x attribution types x pages) calls at 100 a minute: five years of a large
# workspace is weeks of calls. PostHog's source bounds its first sync the same way. Older
# history is still reachable by backfilling from the UI.
MAX_LOOKBACK_YEARS = 5


def _shown(value: object) -> str:
    """A value from the file, quoted for a message: whole if short, else its start and length."""
    text = str(value)
    return repr(text) if len(text) <= 70 else f"{text[:60]!r}… ({len(text)} characters)"


def _looks_like_secret(value: str) -> bool:
    """A value pasted where an env var's *name* belongs: long, mixed, or a known token shape."""
    return (
        value.startswith(("xox", "Basic ", "Bearer "))
        or len(value) >= 20
        or (any(c.isdigit() for c in value) and any(c in "-:/+=" for c in value))
    )


def _env_name(field: str, value: str, holds: str, example: str) -> str:
    """Validate an env var *name*, never echoing a value that may be the secret itself."""
    if _ENV_NAME.fullmatch(value):
        return value
    if _looks_like_secret(value):
        raise ValueError(
            f"{field}: this looks like a key, not a variable name (value not shown). Put the "
            f"{holds} in an environment variable and write that variable's name here, e.g. "
            f"{example}"
        )
    raise ValueError(
        f"{field} is not an env var name: use letters, digits and '_', not starting with a digit "
        f"(the {holds} itself never goes in this file)"
    )


class WorkspacesFileError(ValueError):
    """The workspaces file cannot be used; the message says where and how to fix it."""


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone; use e.g. 'UTC', 'Asia/Kolkata', "
            "'America/New_York'"
        ) from None
    return value


class WorkspaceSettings(BaseModel):
    """One MoEngage workspace to pull."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        description="Workspace ID (App ID): Basic-auth username, MOE-APPKEY, partition key"
    )
    data_center: str | None = Field(None, description="01-06 or 101")
    api_key_env: str | None = Field(None, description="env var holding the Campaign report API key")
    base_url: str | None = Field(None, description="override (proxy); `sandbox` = bundled emulator")
    attribution_types: tuple[AttributionType, ...] = ATTRIBUTION_TYPES
    metric_types: tuple[MetricType, ...] = METRIC_TYPES
    campaign_ids: tuple[str, ...] = ()
    rate_limit_per_minute: int = Field(100, ge=1, le=100_000, strict=True)
    max_campaigns_per_day: int = Field(
        50_000, ge=1, le=10_000_000, strict=True,
        description="refuse a day that claims more campaigns (a server over-reporting its total)",
    )  # fmt: skip
    timezone: str | None = Field(
        None, description="the workspace's own day (IANA zone); default: the file's timezone"
    )
    campaign_metadata: Literal["auto", "search", "meta", "v5", "off"] = Field(
        "auto",
        description="where campaign names come from: v1/campaigns/search, Campaign Meta, "
        "v5/campaigns/search, off; auto = the first that answers",
    )
    currency: str | None = Field(
        None,
        description="the currency revenue is tracked in (ISO 4217 code such as EUR), for reports",
    )
    campaigns_api_key_env: str | None = Field(
        None,
        description="env var holding a Campaigns API key (Campaigns View permission) for "
        "v5/campaigns/search; not the Campaign report key",
    )

    _timezone = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(
                f"{_shown(value)} is not a currency code; write the ISO 4217 code revenue is "
                "tracked in, three capital letters such as EUR or USD"
            )
        return value

    @field_validator("campaigns_api_key_env")
    @classmethod
    def _campaigns_key_env(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _env_name(
            "campaigns_api_key_env", value, "Campaigns API key", "MOENGAGE_CAMPAIGNS_KEY_WS_ALPHA"
        )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _WORKSPACE_ID.fullmatch(value):
            raise ValueError(
                f"{_shown(value)} is not a workspace id: 1 to 64 letters, digits, '_', '-' or '.', "
                "starting with a letter, digit or '_' (it names folders and partitions; copy it "
                "from Settings > Account > APIs)"
            )
        return value

    @field_validator("campaign_ids")
    @classmethod
    def _campaign_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for n, campaign in enumerate(value):
            if not _CAMPAIGN_ID.fullmatch(campaign):
                raise ValueError(
                    f"campaign_ids.{n} is not a campaign id: 1 to 128 letters, digits, '_', '-', "
                    "'.' or ':' (copy it from the campaign's page in MoEngage)"
                )
        return value

    @field_validator("data_center", mode="before")
    @classmethod
    def _dc(cls, value: Any) -> str | None:
        if value is None:
            return None
        try:
            return normalize_data_center(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("attribution_types", "metric_types", "campaign_ids")
    @classmethod
    def _unique(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} lists a value twice; list each once")
        if not value and info.field_name != "campaign_ids":
            raise ValueError(f"{info.field_name} is empty; omit it to get all, or list some")
        return value

    @model_validator(mode="after")
    def _source(self) -> WorkspaceSettings:
        if self.base_url is None and self.data_center is None:
            raise ValueError("give data_center (01-06 or 101) or base_url")
        if self.base_url not in (None, SANDBOX):
            _check_base_url(self.base_url)
        if not self.is_sandbox:
            if not self.api_key_env:
                raise ValueError(
                    "api_key_env is required: name the environment variable that holds this "
                    "workspace's Campaign report API key (the key itself never goes in this file)"
                )
            _env_name(
                "api_key_env", self.api_key_env, "Campaign report API key", "MOENGAGE_KEY_WS_ALPHA"
            )
            if self.campaign_metadata == "v5" and not self.campaigns_api_key_env:
                raise ValueError(
                    "campaign_metadata: v5 needs campaigns_api_key_env: the name of the env var "
                    "holding a Campaigns API key (Settings > Account > API keys, Campaigns View "
                    "permission); the Campaign report key is refused there"
                )
            if self.campaigns_api_key_env and self.campaigns_api_key_env == self.api_key_env:
                raise ValueError(
                    "campaigns_api_key_env names the same variable as api_key_env; v5 takes a "
                    "separate Campaigns key (Campaigns View permission), and the Campaign report "
                    "key is never sent there"
                )
        return self

    @property
    def is_sandbox(self) -> bool:
        return self.base_url == SANDBOX

    @property
    def headline_metric_type(self) -> str:
        """The counts people read (report, anomaly check): TOTAL when configured."""
        return "TOTAL" if "TOTAL" in self.metric_types else self.metric_types[0]


class SlackSettings(BaseModel):
    """Where failed runs and failed checks are posted (dagster-slack)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(description="channel name (#marketing-data) or ID the bot is in")
    token_env: str = Field(
        "MOESTATS_SLACK_TOKEN", description="env var holding the bot token (xoxb-…)"
    )
    base_url: str = Field(
        "https://slack.com/api/",
        description="Slack Web API base URL (GovSlack: https://slack-gov.com/api/, or a proxy)",
    )
    webserver_url: str = Field(
        "http://127.0.0.1:3000", description="the Dagster UI's address, for links to runs"
    )
    checks: bool = Field(
        True, strict=True, description="also post failed (WARN/ERROR) check evaluations"
    )

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name("token_env", value, "Slack bot token", "MOESTATS_SLACK_TOKEN")

    @field_validator("base_url", "webserver_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{info.field_name} {value!r} must be an http(s):// URL")
        # Slack's client joins method names to a base ending in '/'; run links join '/runs/…'.
        return value.rstrip("/") + ("/" if info.field_name == "base_url" else "")

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not value.strip() or len(value) > 80:
            raise ValueError("channel must be a channel name such as '#marketing-data' or an ID")
        return value


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackSettings | None = None


class Settings(BaseModel):
    """The whole workspaces file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_date: dt.date = Field(description="first daily partition")
    timezone: str = Field("UTC", description="partition timezone")
    restatement_days: int = Field(
        3, ge=0, le=30, strict=True, description="trailing days re-fetched nightly"
    )
    schedule_hour: int = Field(
        3, ge=0, le=23, strict=True, description="hour (in timezone) of the nightly run"
    )
    catch_up_days: int = Field(
        14, ge=0, le=90, strict=True,
        description="days before the restatement window that each night re-requests when they "
        "are missing or their last run failed (an outage heals itself)",
    )  # fmt: skip
    keep_snapshots_days: int = Field(
        30, ge=1, le=3650, strict=True,
        description="lake maintenance expires snapshots older than this: time travel reaches "
        "back this far, and files only older snapshots read are deleted",
    )  # fmt: skip
    periods: tuple[Literal["week", "month"], ...] = Field(
        ("month",),
        description="period tables fetched for the whole range (ISO weeks, calendar months); "
        "each period costs as many calls as a day; [] for none",
    )
    workspaces: tuple[WorkspaceSettings, ...] = Field(min_length=1)
    alerts: AlertSettings = Field(AlertSettings(), description="Slack; off when not configured")
    source: str = Field("", exclude=True, description="where these settings were read from")

    _timezone = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))

    @field_validator("start_date", mode="before")
    @classmethod
    def _relative_start(cls, value: object) -> object:
        """`"28 days ago"`: partitions that start a fixed number of days back and move with the
        calendar (the bundled sandbox's, so that a demo fills what the UI shows). A real
        workspace's start is a date: its first partition should stay put."""
        if isinstance(value, str) and (found := _DAYS_AGO.fullmatch(value.strip())):
            days = int(found.group(1))
            if not 1 <= days <= 366 * MAX_LOOKBACK_YEARS:
                raise ValueError(
                    f"{value!r}: write between 1 and {366 * MAX_LOOKBACK_YEARS} days ago"
                )
            return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
        return value

    @field_validator("periods")
    @classmethod
    def _periods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("periods lists a value twice; list each once")
        return value

    @field_validator("workspaces")
    @classmethod
    def _unique_ids(cls, value: tuple[WorkspaceSettings, ...]) -> tuple[WorkspaceSettings, ...]:
        seen: set[str] = set()
        for ws in value:
            if ws.id in seen:
                raise ValueError(
                    f"workspace id {ws.id!r} appears twice; ids are partition keys and must be "
                    "unique — merge the two entries"
                )
            seen.add(ws.id)
        return value

    @model_validator(mode="after")
    def _start_not_in_future(self) -> Settings:
        today = dt.datetime.now(ZoneInfo(self.timezone)).date()
        earliest = today.replace(year=today.year - MAX_LOOKBACK_YEARS, day=min(today.day, 28))
        if self.start_date < earliest:
            raise ValueError(
                f"start_date {self.start_date} is more than {MAX_LOOKBACK_YEARS} years back "
                f"(earliest: {earliest}). Every day costs calls at MoEngage's 100 a minute, so "
                "partitions start at most that far back; use the first day you need stats for, "
                "and backfill older days from the UI only if you must"
            )
        if self.start_date > today:
            raise ValueError(
                f"start_date {self.start_date} is in the future (today is {today} in "
                f"{self.timezone}); there would be no daily partition to run. Use the first day "
                "you want stats for, e.g. the day the workspace started sending campaigns"
            )
        return self

    def workspace(self, workspace_id: str) -> WorkspaceSettings:
        for ws in self.workspaces:
            if ws.id == workspace_id:
                return ws
        raise KeyError(f"workspace {workspace_id!r} is not in {self.source}")

    def zone(self, workspace_id: str) -> str:
        """The workspace's time zone: its own, else the file's."""
        return self.workspace(workspace_id).timezone or self.timezone

    @property
    def uses_sandbox(self) -> bool:
        return any(ws.is_sandbox for ws in self.workspaces)


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


def lake_path() -> str:
    """The warehouse folder (a DuckLake lake: catalog.sqlite and files/)."""
    if os.environ.get(OLD_DUCKDB_PATH_ENV, "").strip():
        raise WorkspacesFileError(
            f"{OLD_DUCKDB_PATH_ENV} is no longer read: the warehouse is now a DuckLake folder, so "
            f"that readers never block runs. Set {LAKE_PATH_ENV} to a folder (default "
            f"{DEFAULT_LAKE_PATH}) and unset {OLD_DUCKDB_PATH_ENV}; the old DuckDB file is left "
            "as it was"
        )
    return os.environ.get(LAKE_PATH_ENV, "").strip() or DEFAULT_LAKE_PATH


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


def _check_base_url(value: str) -> None:
    """base_url must name a server: scheme, host, a valid port, and no credentials or path
    parts that would be silently dropped."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"base_url {value!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url {value!r} must be http(s)://host[:port] (e.g. https://proxy.example.com:8443) "
            "or 'sandbox'"
        )
    if parts.username or parts.password:
        raise ValueError(
            "base_url must not carry credentials (user:password@); remove them — the API key "
            "comes from api_key_env"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"base_url {value!r} must not have a query or fragment; remove them")
    if port == 0:
        raise ValueError(f"base_url {value!r}: port 0 is not a server port")


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
