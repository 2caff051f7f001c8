"""MoEngage data centers: the only hosts the client will ever build from a `data_center` value."""

from __future__ import annotations

from moestats_dagster.moengage.errors import ConfigurationError

# dc value -> API host. The value is interpolated into a hostname, so it must come from this list:
# anything else (e.g. "01.evil.com") would send the credentials to someone else's host.
DATA_CENTERS: dict[str, str] = {
    "01": "https://api-01.moengage.com",
    "02": "https://api-02.moengage.com",
    "03": "https://api-03.moengage.com",
    "04": "https://api-04.moengage.com",
    "05": "https://api-05.moengage.com",
    "06": "https://api-06.moengage.com",
    "101": "https://api-101.moengage.com",
}


def normalize_data_center(value: object) -> str:
    """Return the canonical dc code ("1" -> "01"), or raise listing the allowed values."""
    text = str(value).strip()
    if text.isdigit() and len(text) == 1:
        text = f"0{text}"
    if text not in DATA_CENTERS:
        allowed = ", ".join(DATA_CENTERS)
        raise ConfigurationError(
            f"data_center {value!r} is not a MoEngage data center; use one of: {allowed} "
            "(see Settings > Account > APIs in the MoEngage dashboard)"
        )
    return text


def host_for(data_center: object) -> str:
    """The API base URL for a data center value from the allowlist."""
    return DATA_CENTERS[normalize_data_center(data_center)]
