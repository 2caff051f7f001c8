"""What `moestats backfill` is about to do, said before it does it: the partitions, the API calls
and the time they take at the workspaces' rate limits, the days left out and why; and, above
`CONFIRM_ABOVE_DAYS` days of a workspace, a yes from a person (or `--yes`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TextIO
from zoneinfo import ZoneInfo

from moestats_dagster.config import Settings

CONFIRM_ABOVE_DAYS = 90


@dataclass
class WorkspacePlan:
    workspace_id: str
    days: list[dt.date] = field(default_factory=list)  # to load
    before_start: list[dt.date] = field(default_factory=list)
    not_over: list[dt.date] = field(default_factory=list)
    calls_per_day: int = 0  # at least: one page of each metric x attribution type
    rate_per_minute: int = 100

    @property
    def calls(self) -> int:
        return len(self.days) * self.calls_per_day

    @property
    def minutes(self) -> float:
        return self.calls / self.rate_per_minute


@dataclass
class Plan:
    first: dt.date
    last: dt.date
    start_date: dt.date
    workspaces: list[WorkspacePlan]

    @property
    def partitions(self) -> int:
        return sum(len(w.days) for w in self.workspaces)

    @property
    def needs_confirmation(self) -> bool:
        return any(len(w.days) > CONFIRM_ABOVE_DAYS for w in self.workspaces)

    def lines(self) -> list[str]:
        out = [f"Backfill {self.first} to {self.last}:"]
        for w in self.workspaces:
            head = f"  {w.workspace_id}: {len(w.days)} days"
            if w.days:
                head += (f" ({w.days[0]} to {w.days[-1]}), at least {w.calls:,} API calls "
                         f"({w.calls_per_day} a day) = at least {_duration(w.minutes)} at "
                         f"{w.rate_per_minute} calls/min")  # fmt: skip
            out.append(head)
            if w.before_start:
                out.append(f"    left out: {_span(w.before_start)} — before start_date "
                           f"({self.start_date}); move start_date back to load them")  # fmt: skip
            if w.not_over:
                out.append(f"    left out: {_span(w.not_over)} — not over yet in its time zone")
        if self.partitions:
            slowest = max(w.minutes for w in self.workspaces)
            out.append(
                f"  {self.partitions:,} partitions; at least {_duration(slowest)} in all "
                "(workspaces load side by side; a day of more than 10 campaigns, and "
                "flow-linked campaigns, take more calls)"
            )
        return out

    def why_nothing(self) -> str:
        parts = []
        for w in self.workspaces:
            if w.before_start:
                parts.append(f"{w.workspace_id}: every day asked is before start_date "
                             f"({self.start_date})" if not w.not_over else
                             f"{w.workspace_id}: the days asked are before start_date "
                             f"({self.start_date}) or not over yet")  # fmt: skip
            elif w.not_over:
                parts.append(f"{w.workspace_id}: no day asked is over yet in its time zone")
        return "; ".join(parts) or "no day asked"


def plan_backfill(
    settings: Settings, workspaces: list[str], first: dt.date, last: dt.date,
    now: dt.datetime | None = None,
) -> Plan:  # fmt: skip
    """Which days of each workspace load, which are left out and why, and what they cost."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}; swap them")
    asked = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    plans = []
    for workspace_id in workspaces:
        ws = settings.workspace(workspace_id)
        today = (
            (now or dt.datetime.now(dt.UTC))
            .astimezone(ZoneInfo(settings.zone(workspace_id)))
            .date()
        )
        plan = WorkspacePlan(
            workspace_id,
            calls_per_day=len(ws.metric_types) * len(ws.attribution_types),
            rate_per_minute=ws.rate_limit_per_minute,
        )
        for day in asked:
            if day < settings.start_date:
                plan.before_start.append(day)
            elif day >= today:
                plan.not_over.append(day)
            else:
                plan.days.append(day)
        plans.append(plan)
    return Plan(first, last, settings.start_date, plans)


def confirmed(plan: Plan, yes: bool, stdin: TextIO, stdout: TextIO) -> bool:
    """True when the plan may run: small enough, `--yes`, or a person said yes at a terminal."""
    if not plan.needs_confirmation or yes:
        return True
    big = [w.workspace_id for w in plan.workspaces if len(w.days) > CONFIRM_ABOVE_DAYS]
    if not stdin.isatty():
        stdout.write(
            f"More than {CONFIRM_ABOVE_DAYS} days of {', '.join(big)}: not launched. Add --yes "
            "to launch it without a terminal, or ask for fewer days\n"
        )
        return False
    stdout.write(f"More than {CONFIRM_ABOVE_DAYS} days of {', '.join(big)}. Launch? [y/N] ")
    stdout.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def _span(days: list[dt.date]) -> str:
    return f"{days[0]}" if len(days) == 1 else f"{days[0]} to {days[-1]} ({len(days)} days)"


def _duration(minutes: float) -> str:
    if minutes < 1:
        return f"{math.ceil(minutes * 60)} s"
    if minutes < 120:
        return f"{math.ceil(minutes)} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
