"""The fields MoEngage's published API schema adds to the Stats page (goal revenue, totals and
GCG uplift; the email funnel stages), sent by the sandbox on a realistic share of blocks."""

from __future__ import annotations

import random

REVENUE_GOALS = ("Purchase Completed", "Subscription Started")
PUBLISHED_SHARE = 0.6  # campaigns whose blocks carry the published schema's extra fields


def published_goal_fields(
    rng: random.Random, goals: dict[str, dict[str, float | int]], control_groups: bool
) -> None:
    """The goal fields MoEngage's published schema adds (seen in its large sample response)."""
    for name, values in goals.items():
        conversions = int(values["conversions"])
        total = conversions + int(conversions * rng.uniform(0.0, 0.5))
        values.update(goal_name=name, total=total, unique=conversions)
        if name in REVENUE_GOALS:
            revenue = round(total * rng.uniform(20, 120), 2)
            values["revenue"] = revenue
            values["average_order_value"] = round(revenue / total, 2) if total else 0.0
            values["average_revenue_per_user"] = (
                round(revenue / conversions, 2) if conversions else 0.0
            )
        if control_groups:
            values["gcg_uplift"] = round(rng.uniform(-5, 25), 2)


def published_email_funnel(rng: random.Random, funnel: dict[str, int], delivered: int) -> None:
    """The email stages of the delivery funnel in MoEngage's published schema."""
    in_segment = funnel["reachable_users_in_segment"]
    total = in_segment + int(in_segment * rng.uniform(0.0, 0.2))
    with_email = in_segment - int(in_segment * rng.uniform(0.0, 0.05))
    after_hb = with_email - int(with_email * rng.uniform(0.0, 0.03))
    dedup = after_hb - int(after_hb * rng.uniform(0.0, 0.03))
    funnel.update(
        total_user_in_segment=total,
        user_with_email=with_email,
        user_with_email_after__h_b=after_hb,
        user_after_duplicate_removal=dedup,
        after_personalization_removal=dedup - int(dedup * rng.uniform(0.0, 0.02)),
        delivered=delivered,
    )
