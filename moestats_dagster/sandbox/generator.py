"""Deterministic, realistic synthetic campaign stats in the Stats API's documented shape.

Everything is a pure function of (workspace, date, campaign, metric type, attribution type): the same
question always gets the same answer, so tests can compare the warehouse with what the API served.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from moestats_dagster.sandbox.published import (
    PUBLISHED_SHARE,
    published_email_funnel,
    published_goal_fields,
)

# Channel -> platform keys (push-like channels) or None (the channel itself is the platform key).
PLATFORMS: dict[str, tuple[str, ...] | None] = {
    "PUSH": ("android", "ios", "web", "mweb"),
    "EMAIL": None,
    "SMS": None,
    "WHATSAPP": None,
    "INAPP": ("android", "ios"),
    "OSM": ("web", "mweb"),
    "CARDS": None,
    "CONNECTOR": None,
    "FACEBOOK_AUDIENCE": None,
    "GOOGLE_ADS_AUDIENCE": None,
    "WEB_PERSONALIZATION": None,
}
CHANNEL_WEIGHTS = (30, 20, 10, 8, 8, 6, 6, 4, 3, 3, 2)

# The performance metrics the API page lists for each channel.
METRICS: dict[str, tuple[str, ...]] = {
    "PUSH": ("attempted", "sent", "failed", "impression", "click", "ctr", "delivery_rate",
             "sent_rate", "failure_rate"),
    "EMAIL": ("attempted", "sent", "failed", "bounced", "click", "opened", "delivered",
              "unsubscribe", "ctr", "delivery_rate", "sent_rate", "failure_rate", "complaint",
              "hard_bounce", "soft_bounce", "open_rate", "ctor", "unsub_rate", "bounce_rate",
              "complaints_rate"),
    "SMS": ("attempted", "sent", "failed", "click", "delivered", "ctr", "delivery_rate",
            "sent_rate", "failure_rate"),
    "WHATSAPP": ("sent", "click", "delivered", "read", "ctr", "delivery_rate", "read_rate"),
    "INAPP": ("impression", "click", "closed_click", "ctr"),
    "OSM": ("impression", "click", "closed_click", "ctr"),
    "CARDS": ("sent", "impression", "click", "delivered", "ctr", "delivery_rate"),
    "CONNECTOR": ("attempted", "sent", "failed", "ctr", "sent_rate", "failure_rate"),
    "FACEBOOK_AUDIENCE": ("attempted", "sent", "successfully_synced", "eligible_users"),
    "GOOGLE_ADS_AUDIENCE": ("attempted", "successfully_synced", "eligible_users"),
    "WEB_PERSONALIZATION": ("impression", "click", "closed_click", "ctr"),
}  # fmt: skip

FUNNELS: dict[str, tuple[str, ...]] = {
    "PUSH": ("reachable_users_in_segment", "segment_after_uninstall", "users_after_dup",
             "after_fc", "sent", "user_devices", "impressions", "active_device_token"),
    "EMAIL": ("reachable_users_in_segment", "after_invalid_removal", "users_after_dup",
              "after_fc", "sent"),
    "SMS": ("reachable_users_in_segment", "after_invalid_removal", "users_after_dup", "after_fc",
            "sent"),
    "WHATSAPP": ("reachable_users_in_segment", "after_invalid_removal", "after_fc", "sent"),
    "CONNECTOR": ("reachable_users_in_segment", "after_fc", "sent"),
    "CARDS": ("reachable_users_in_segment", "after_fc", "sent"),
}  # fmt: skip

FAILURE_REASONS: dict[str, tuple[str, ...]] = {
    "PUSH": ("Invalid Device Token", "App Uninstalled"),
    "EMAIL": ("Invalid Email Id", "Hard Bounce", "Soft Bounce"),
    "SMS": ("DND Number", "provider_errors.Timeout", "provider_errors.Rejected By Operator"),
    "CONNECTOR": ("Connector Timeout",),
    "WHATSAPP": ("Template Paused", "Not A WhatsApp User"),
}

GOALS = ("Goal 1", "Purchase Completed", "Added To Cart", "App Opened", "Subscription Started")
LOCALES = ("en", "fr", "hi")
# Conversions differ by attribution; performance, funnel and failures do not.
ATTRIBUTION_FACTOR = {
    "VIEW_THROUGH": 1.0,
    "CLICK_THROUGH": 0.55,
    "IN_SESSION": 0.35,
    "TOTAL_CONVERSIONS": 1.3,
    "CLICK_CONVERSIONS": 0.6,
}
RATES = ("ctr", "delivery_rate", "read_rate", "sent_rate", "failure_rate", "open_rate", "ctor",
         "unsub_rate", "bounce_rate", "complaints_rate")  # fmt: skip


def seeded(*parts: object) -> random.Random:
    """A random generator that depends only on `parts`."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def campaign_id_for(workspace_id: str, index: int) -> str:
    """A 24-hex-character id, like MoEngage's."""
    return hashlib.sha1(f"{workspace_id}:{index}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Campaign:
    """One synthetic campaign and the shape of its stats."""

    index: int
    campaign_id: str
    channel: str
    platforms: tuple[str, ...]
    locales: tuple[str, ...]
    variations: tuple[str, ...]
    goals: tuple[str, ...]
    control_groups: bool
    entries: int
    parent_index: int | None
    scale: int


@lru_cache(maxsize=200_000)
def make_campaign(workspace_id: str, index: int) -> Campaign:
    """The campaign at `index` of a workspace's universe (deterministic)."""
    rng = seeded(workspace_id, "campaign", index)
    channel = rng.choices(list(PLATFORMS), weights=CHANNEL_WEIGHTS)[0]
    # Every 7th campaign (from the 4th) is a child of the one before: periodic/flow campaigns.
    parent_index = index - 1 if index % 7 == 3 else None
    if parent_index is not None:
        channel = make_campaign(workspace_id, parent_index).channel
    choices = PLATFORMS[channel]
    if choices is None:
        platforms: tuple[str, ...] = (channel,)
    else:
        picked = tuple(sorted(rng.sample(choices, rng.randint(1, len(choices)))))
        platforms = picked + ("all_platforms",) if len(picked) > 1 else picked
    multi_locale = rng.random() < 0.15
    locales = ("all_locales",) + (LOCALES[: rng.randint(2, 3)] if multi_locale else ())
    variations = ("all_variations",)
    if rng.random() < 0.2:
        variations += tuple(f"Variation {n}" for n in range(1, rng.randint(2, 3) + 1))
    return Campaign(
        index=index,
        campaign_id=campaign_id_for(workspace_id, index),
        channel=channel,
        platforms=platforms,
        locales=locales,
        variations=variations,
        goals=tuple(rng.sample(GOALS, rng.randint(1, 3))),
        control_groups=rng.random() < 0.3,
        entries=2 if rng.random() < 0.06 else 1,
        parent_index=parent_index,
        scale=int(10 ** rng.uniform(2.5, 5)),
    )


def campaigns_on(
    workspace_id: str, day: dt.date, universe: int = 80, per_day: int | None = None
) -> list[Campaign]:
    """The campaigns with stats on `day`, sorted by id (the order the API pages them in).

    About 1 day in 10 has none and about 1 in 6 has more than 20 (several pages). `per_day` fixes
    the count (benchmarks).
    """
    rng = seeded(workspace_id, "day", day.isoformat())
    if per_day is None:
        roll = rng.random()
        count = 0 if roll < 0.1 else rng.randint(21, 45) if roll < 0.27 else rng.randint(3, 20)
        indexes = rng.sample(range(universe), min(count, universe))
    else:
        indexes = range(per_day)
    return sorted((make_campaign(workspace_id, i) for i in indexes), key=lambda c: c.campaign_id)


def _pct(numerator: float, denominator: float) -> float:
    return round(numerator / denominator * 100, 2) if denominator else 0.0


def _counts(rng: random.Random, channel: str, scale: int, metric_type: str) -> dict[str, int]:
    """Raw counts of one variation block; UNIQUE is derived from TOTAL so UNIQUE <= TOTAL."""
    attempted = int(scale * rng.uniform(0.5, 1.0))
    sent = attempted - int(attempted * rng.uniform(0.0, 0.08))
    delivered = sent - int(sent * rng.uniform(0.0, 0.05))
    impression = int(sent * rng.uniform(0.3, 0.9))
    c = {
        "attempted": attempted,
        "sent": sent,
        "delivered": delivered,
        "impression": impression,
        "opened": int(delivered * rng.uniform(0.1, 0.5)),
        "read": int(delivered * rng.uniform(0.3, 0.9)),
        "closed_click": int(impression * rng.uniform(0.05, 0.3)),
        "eligible_users": attempted,
        "successfully_synced": int(attempted * rng.uniform(0.6, 0.95)),
    }
    c["click"] = int((impression or delivered) * rng.uniform(0.01, 0.25))
    c["bounced"] = sent - delivered
    c["soft_bounce"] = int(c["bounced"] * rng.uniform(0.2, 0.6))
    c["hard_bounce"] = c["bounced"] - c["soft_bounce"]
    c["unsubscribe"] = int(delivered * rng.uniform(0.0, 0.01))
    c["complaint"] = int(delivered * rng.uniform(0.0, 0.002))
    if channel in ("INAPP", "OSM", "WEB_PERSONALIZATION"):
        c["impression"] = attempted
    if metric_type == "UNIQUE":
        reach, engage = rng.uniform(0.8, 1.0), rng.uniform(0.5, 0.9)
        for key in c:
            factor = (
                reach if key in ("attempted", "sent", "delivered", "eligible_users") else engage
            )
            c[key] = int(c[key] * factor)
        c["sent"] = min(c["sent"], c["attempted"])
        c["delivered"] = min(c["delivered"], c["sent"])
    c["failed"] = c["attempted"] - c["sent"]
    return c


def _performance(channel: str, c: dict[str, int], unique: dict[str, int]) -> dict[str, Any]:
    rates = {
        "sent_rate": _pct(c["sent"], c["attempted"]),
        "failure_rate": _pct(c["attempted"] - c["sent"], c["attempted"]),
        "delivery_rate": _pct(c["delivered"], c["sent"]),
        # Documented as unique read / unique delivered, whatever the metric type asked for.
        "read_rate": _pct(unique["read"], unique["delivered"]),
        "open_rate": _pct(c["opened"], c["delivered"]),
        "ctor": _pct(c["click"], c["opened"]),
        "unsub_rate": _pct(c["unsubscribe"], c["delivered"]),
        "bounce_rate": _pct(c["bounced"], c["sent"]),
        "complaints_rate": _pct(c["complaint"], c["delivered"]),
    }
    metrics = METRICS[channel]
    if "impression" in metrics:
        rates["ctr"] = _pct(c["click"], c["impression"])
    elif "click" in metrics:
        rates["ctr"] = _pct(c["click"], c["delivered"])
    else:
        rates["ctr"] = 0.0
    if channel == "PUSH":
        rates["delivery_rate"] = _pct(c["impression"], c["sent"])
    return {k: rates[k] if k in rates else c[k] for k in metrics}


def _funnel(channel: str, rng: random.Random, c: dict[str, int]) -> dict[str, int]:
    keys = FUNNELS.get(channel, ("reachable_users_in_segment",))
    after_fc = c["sent"] + int(c["sent"] * rng.uniform(0.0, 0.05))
    dedup = after_fc + int(after_fc * rng.uniform(0.0, 0.05))
    valid = dedup + int(dedup * rng.uniform(0.0, 0.05))
    values = {
        "sent": c["sent"],
        "after_fc": after_fc,
        "users_after_dup": dedup,
        "after_invalid_removal": valid,
        "segment_after_uninstall": valid,
        "reachable_users_in_segment": valid + int(valid * rng.uniform(0.0, 0.1)),
        "user_devices": int(c["sent"] * rng.uniform(1.0, 1.4)),
        "impressions": c["impression"],
        "active_device_token": int(c["sent"] * rng.uniform(1.0, 1.2)),
    }
    return {k: values[k] for k in keys}


def _failures(channel: str, rng: random.Random, failed: int) -> dict[str, Any]:
    """Failed sends split over the channel's reasons; dotted names become nested objects."""
    reasons = FAILURE_REASONS.get(channel, ())
    out: dict[str, Any] = {}
    left = failed
    for i, reason in enumerate(reasons):
        n = left if i == len(reasons) - 1 else int(left * rng.uniform(0.2, 0.7))
        left -= n
        parent, _, child = reason.partition(".")
        if child:
            out.setdefault(parent, {})[child] = n
        else:
            out[reason] = n
    return out


def _goals(
    rng: random.Random, goals: tuple[str, ...], base: int, factor: float, control_cvr: float | None
) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for goal in goals:
        conversions = int(base * rng.uniform(0.01, 0.12) * factor)
        cvr = _pct(conversions, base)
        uplift = round((cvr - control_cvr) / control_cvr * 100, 2) if control_cvr else 0.0
        out[goal] = {"conversions": conversions, "cvr": cvr, "uplift": uplift}
    return out


def campaign_entries(
    workspace_id: str,
    campaign: Campaign,
    period: str,
    metric_type: str,
    attribution_type: str,
) -> list[dict[str, Any]]:
    """The API's `data[campaign_id]` list for one campaign, period, metric and attribution type."""
    factor = ATTRIBUTION_FACTOR[attribution_type]
    published = seeded(workspace_id, campaign.campaign_id, "published").random() < PUBLISHED_SHARE
    entries = []
    for entry in range(campaign.entries):
        platforms: dict[str, Any] = {}
        for platform in campaign.platforms:
            locales: dict[str, Any] = {}
            for locale in campaign.locales:
                variations: dict[str, Any] = {}
                key = (workspace_id, campaign.campaign_id, period, entry, platform, locale)
                for variation in campaign.variations:
                    rng = seeded(*key, variation)
                    scale = campaign.scale if variation == "all_variations" else campaign.scale // 3
                    total = _counts(rng, campaign.channel, scale, "TOTAL")
                    extra = seeded(*key, variation, "funnel")
                    unique = _counts(seeded(*key, variation), campaign.channel, scale, "UNIQUE")
                    c = unique if metric_type == "UNIQUE" else total
                    base = max(c["click"], c["impression"], c["sent"], c["successfully_synced"])
                    control_cvr = None
                    if campaign.control_groups:
                        control_cvr = round(seeded(*key, "cg").uniform(0.5, 4.0), 2)
                    goals = _goals(
                        seeded(*key, variation, "goals", metric_type),
                        campaign.goals,
                        base,
                        factor,
                        control_cvr,
                    )
                    funnel = _funnel(campaign.channel, extra, c)
                    if published:
                        rng = seeded(*key, variation, "published", metric_type)
                        published_goal_fields(rng, goals, campaign.control_groups)
                        if campaign.channel == "EMAIL":
                            published_email_funnel(rng, funnel, c["delivered"])
                    variations[variation] = {
                        "performance_stats": _performance(campaign.channel, c, unique),
                        "conversion_goal_stats": goals,
                        "delivery_funnel": funnel,
                        "failure_breakdown": _failures(campaign.channel, extra, c["failed"]),
                    }
                if campaign.control_groups and locale == "all_locales":
                    for group, reason in (
                        ("campaign_control_group", "user_removed_due_to_campaing_control_group"),
                        ("global_control_group", "user_removed_due_to_global_control_group"),
                    ):
                        rng = seeded(*key, group)
                        size = max(1, campaign.scale // rng.randint(10, 40))
                        variations[group] = {
                            "conversion_goal_stats": _goals(
                                seeded(*key, group, metric_type), campaign.goals, size, factor, None
                            ),
                            "delivery_funnel": {"reachable_users_in_segment": size},
                            "failure_breakdown": {reason: size},
                        }
                locales[locale] = {"variations": variations}
            platforms[platform] = {"locales": locales}
        entries.append({"platforms": platforms})
    return entries


THEMES = ("Winter Sale", "Cart Reminder", "Welcome Series", "Price Drop", "Weekly Digest",
          "Re-engagement", "New Arrivals", "Loyalty Bonus")  # fmt: skip
STATUSES = ("ACTIVE", "SENT", "PAUSED", "STOPPED", "SCHEDULED")


def campaign_meta(workspace_id: str, campaign: Campaign) -> dict[str, Any]:
    """The Campaign Meta API's object for a campaign, consistent with its stats.

    Every 7th campaign (from the 4th) is a periodic child of the one before it.
    """
    rng = seeded(workspace_id, "meta", campaign.index)
    is_child = campaign.parent_index is not None
    has_child = campaign.index % 7 == 2
    periodic = is_child or has_child
    delivery = "PERIODIC" if periodic else rng.choice(("ONE_TIME", "EVENT_TRIGGERED",
                                                       "BUSINESS_TRIGGERED"))  # fmt: skip
    start = dt.datetime(2023, 6, 1) + dt.timedelta(minutes=rng.randint(0, 60 * 24 * 540))
    meta: dict[str, Any] = {
        "campaign_id": campaign.campaign_id,
        "campaign_name": f"{rng.choice(THEMES)} #{campaign.index}",
        "channel": campaign.channel,
        "platform": [p.upper() for p in campaign.platforms if p != "all_platforms"],
        "campaign_status": rng.choice(STATUSES),
        "campaign_delivery_type": delivery,
        "campaign_tags": rng.sample(["promo", "retention", "onboarding", "seasonal", "test"], 2),
        "created_by": f"marketer{rng.randint(1, 9)}@example.com",
        "campaign_start_time": start.strftime("%Y-%m-%dT%H:%M:%S"),  # UTC, no "Z", as the API
    }
    if is_child:
        meta["parent_campaign_id"] = campaign_id_for(workspace_id, campaign.parent_index)
    if has_child:
        meta["total_child_campaigns"] = 1
    if delivery in ("ONE_TIME", "EVENT_TRIGGERED", "BUSINESS_TRIGGERED"):
        computed = start + dt.timedelta(hours=rng.randint(1, 48))
        meta["reachability_details"] = {
            "count": campaign.scale + rng.randint(0, 1000),
            "last_updated_time": computed.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    return meta
