"""Words, colours and number formats for people: what the report says instead of API codes.

Channel colours are fixed by channel, not by rank, so Push is the same blue in every workspace's
report and in every week's.
"""

from __future__ import annotations

import math
import zlib

# MoEngage's channel codes (the campaigns endpoints' `channel`) -> what a marketer calls them.
CHANNEL_NAMES = {
    "PUSH": "Push", "EMAIL": "Email", "SMS": "SMS", "WHATSAPP": "WhatsApp",
    "INAPP": "In-app", "OSM": "On-site messages", "CARDS": "Cards", "CONNECTOR": "Connectors",
    "FACEBOOK_AUDIENCE": "Facebook audiences", "GOOGLE_ADS_AUDIENCE": "Google Ads audiences",
    "WEB_PERSONALIZATION": "Web personalization",
}  # fmt: skip
# Okabe-Ito and Tableau hues, distinct for colour-blind readers in the first seven.
CHANNEL_COLOURS = {
    "PUSH": "#0072B2", "EMAIL": "#E69F00", "SMS": "#009E73", "WHATSAPP": "#25A244",
    "INAPP": "#CC79A7", "OSM": "#D55E00", "CARDS": "#56B4E9", "CONNECTOR": "#8C564B",
    "FACEBOOK_AUDIENCE": "#3B5998", "GOOGLE_ADS_AUDIENCE": "#BCBD22",
    "WEB_PERSONALIZATION": "#7F7F7F",
}  # fmt: skip
_SPARE = ("#17BECF", "#9467BD", "#AEC7E8", "#FF9896", "#C49C94", "#DBDB8D")
NO_METADATA = "(no metadata yet)"  # the summary's channel when campaign metadata is missing

METRIC_WORDS = {"TOTAL": "every send counted", "UNIQUE": "unique users"}
ATTRIBUTION_WORDS = {
    "VIEW_THROUGH": "view-through", "CLICK_THROUGH": "click-through",
    "IN_SESSION": "in-session", "TOTAL_CONVERSIONS": "all conversions",
}  # fmt: skip


def channel_name(code: str | None) -> str:
    if code is None or code == NO_METADATA:
        return "Unknown channel (no campaign metadata yet)"
    return CHANNEL_NAMES.get(code, code.replace("_", " ").capitalize())


def channel_colour(code: str | None) -> str:
    """The channel's own colour; an unknown channel gets one from its name (stable, not rank)."""
    if code in CHANNEL_COLOURS:
        return CHANNEL_COLOURS[code]
    return _SPARE[zlib.crc32(str(code).encode()) % len(_SPARE)]


def count(value: float | None) -> str:
    """11826 -> '11,826'; None or NaN -> '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{round(value):,}"


def money(value: float | None, currency: str | None) -> str:
    """1234.5 -> '1,234.50 EUR' (or '1,234.50' when the workspace has no currency set)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.2f} {currency}" if currency else f"{value:,.2f}"


def compact(value: float, _position: int | None = None) -> str:
    """Axis ticks and tiles: 1234 -> '1.23k', 2_500_000 -> '2.5M', 999_999 -> '1M' (rounded
    first, then given its unit: three digits of 999.999k are 1e+03k)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(float(f"{value:.3g}")) >= size:
            return f"{float(f'{value:.3g}') / size:g}{suffix}"
    return f"{value:.3g}"


def change(now: float, before: float | None) -> str:
    """'+12%' / '−4%' against the period before; '' when there is nothing to compare with."""
    if before is None or (isinstance(before, float) and math.isnan(before)):
        return ""
    if before == 0:
        return "new" if now else "±0%"
    pct = (now - before) / before * 100
    if abs(pct) < 0.5:
        return "±0%"
    return f"{'+' if pct > 0 else '−'}{abs(pct):.0f}%"
