"""The settings a workspaces file holds, typed and validated: each key's rules and the error that
names the key and its fix. files.py finds, reads and explains the file."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moestats_dagster.moengage import (
    ATTRIBUTION_TYPES,
    METRIC_TYPES,
    ConfigurationError,
    normalize_data_center,
)

log = logging.getLogger("moestats_dagster")

WORKSPACES_FILE_ENV = "MOESTATS_WORKSPACES_FILE"
RATE_WINDOW_ENV = "MOESTATS_RATE_WINDOW_SECONDS"
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
        description="env var holding a v5 API key (Campaigns View permission, campaigns:view) "
        "for v5/campaigns/search and the Flows API; not the Campaign report key",
    )
    flows: Literal["auto", "off"] = Field(
        "auto",
        description="flow-linked campaigns: auto = find them with the Flows API (the v5 key in "
        "campaigns_api_key_env) and name them to the Stats API; off = leave them out",
    )
    flow_quiet_days: int = Field(
        30, ge=1, le=3650, strict=True,
        description="a step of a flow that sends nothing new (stopped, paused, completed, "
        "retired, archived) is named to the Stats API until it has answered nothing for this "
        "many days asked in a row (late clicks and conversions keep coming after a stop); steps "
        "of an active or scheduled flow are always named",
    )  # fmt: skip
    flow_teams: tuple[str, ...] = Field(
        (),
        description="the teams to list flows for, where the account uses MoEngage's teams "
        "feature (the Flows API refuses a search without them there)",
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

    @field_validator("campaign_metadata", "flows", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """YAML reads a bare `off` as false: take it as the word written."""
        return "off" if value is False else value

    @field_validator("flow_teams")
    @classmethod
    def _flow_teams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for n, team in enumerate(value):
            if not team.strip() or len(team) > 200:
                raise ValueError(
                    f"flow_teams.{n} is not a team name: 1 to 200 characters, as MoEngage shows "
                    "it under Settings > Teams"
                )
        if len(set(value)) != len(value):
            raise ValueError("flow_teams lists a team twice; list each once")
        return value

    @property
    def finds_flows(self) -> bool:
        """Are flow-linked campaigns looked for? Not when `flows: off`, and not with a
        campaign_ids filter (those ids are named already, flow-linked or not)."""
        return self.flows == "auto" and not self.campaign_ids

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
    reconcile_heal_days: int = Field(
        31, ge=0, le=366, strict=True,
        description="days per workspace and day that healing re-fetches when a month's range "
        "totals and the lake's days disagree (0: reconcile, never heal by itself)",
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
