"""MoEngage API client: plain Python, no Dagster (auth, DC allowlist, pagination, limits, retries)."""

from moestats_dagster.moengage.campaigns import (
    CampaignLookup,
    CampaignSearchClient,
    CampaignsV5Client,
)
from moestats_dagster.moengage.client import (
    ATTRIBUTION_TYPES,
    METRIC_TYPES,
    DayStats,
    Page,
    StatsClient,
)
from moestats_dagster.moengage.datacenters import DATA_CENTERS, host_for, normalize_data_center
from moestats_dagster.moengage.errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    CancelledError,
    ConfigurationError,
    CredentialsEchoedError,
    IncompleteDataError,
    MoEngageError,
    NonFiniteNumberError,
    Redactor,
    RequestFailed,
    ResponseShapeError,
    RetriesExhaustedError,
    UnreachableError,
)
from moestats_dagster.moengage.meta import CampaignMetaClient
from moestats_dagster.moengage.transport import CallCounters

__all__ = [
    "ATTRIBUTION_TYPES",
    "DATA_CENTERS",
    "METRIC_TYPES",
    "AccessDeniedError",
    "AuthenticationError",
    "BadRequestError",
    "CallCounters",
    "CampaignLookup",
    "CampaignMetaClient",
    "CampaignSearchClient",
    "CampaignsV5Client",
    "CancelledError",
    "ConfigurationError",
    "CredentialsEchoedError",
    "DayStats",
    "IncompleteDataError",
    "MoEngageError",
    "NonFiniteNumberError",
    "Page",
    "Redactor",
    "RequestFailed",
    "ResponseShapeError",
    "RetriesExhaustedError",
    "StatsClient",
    "UnreachableError",
    "host_for",
    "normalize_data_center",
]
