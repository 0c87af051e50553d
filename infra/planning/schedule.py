"""Scheduled pool sizes: weekday windows in an IANA time zone, with a pre-warm lead.

Pure (no Pulumi): the cost model, the KEDA cron triggers, `fleet status` and `fleet simulate`
all derive their sizes and instants from these functions, so they cannot disagree.
Windows are local wall-clock times; instants are computed per local date, so a DST change moves the
UTC instant, never the local one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from infra.stack.windows import Schedule, Window, hm


@dataclass(frozen=True)
class Interval:
    start: datetime              # UTC, pre-warm included
    end: datetime                # UTC
    size: int
    window: Window


@dataclass(frozen=True)
class Transition:
    at: datetime                 # UTC
    size: int
    reason: str                  # "prewarm", "window-end", ...

    def local(self, zone: str) -> datetime:
        return self.at.astimezone(ZoneInfo(zone))


# ---------------------------------------------------------------------------------------------- evaluation

def _local(day: date, t: time, zone: ZoneInfo) -> datetime:
    if t == time.max:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return datetime.combine(day, t, tzinfo=zone)


def intervals(schedule: Schedule, start: datetime, end: datetime) -> list[Interval]:
    """Window intervals (pre-warm included) that touch [start, end), in UTC, sorted."""
    zone = schedule.zone
    lead = timedelta(minutes=schedule.prewarm_minutes)
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    out = []
    day = first
    while day <= last:
        for window in schedule.windows:
            if day.weekday() in window.days:
                a = (_local(day, window.start, zone) - lead).astimezone(UTC)
                b = _local(day, window.end, zone).astimezone(UTC)
                if a < end and b > start:
                    out.append(Interval(a, b, window.size, window))
        day += timedelta(days=1)
    return sorted(out, key=lambda i: (i.start, i.end))


def size_at(schedule: Schedule, at: datetime) -> tuple[int, str]:
    """The size the schedule wants at `at` (aware datetime), and why."""
    active = [i for i in intervals(schedule, at, at + timedelta(microseconds=1)) if i.start <= at < i.end]
    if not active:
        return schedule.off_size, "outside windows"
    best = max(active, key=lambda i: i.size)
    zone = schedule.zone
    if at < best.start + timedelta(minutes=schedule.prewarm_minutes):
        return best.size, f"pre-warm for {hm(best.window.start)} {schedule.timezone}"
    return best.size, (f"window {hm(best.window.start)}-{hm(best.window.end)} {schedule.timezone} "
                       f"(until {best.end.astimezone(zone).strftime('%H:%M')})")


def transitions(schedule: Schedule, start: datetime, end: datetime) -> list[Transition]:
    """Every instant in [start, end) where the wanted size changes, with the new size."""
    points = {start}
    for i in intervals(schedule, start, end):
        points.update(p for p in (i.start, i.end) if start <= p < end)
    out: list[Transition] = []
    previous = size_at(schedule, start - timedelta(microseconds=1))[0]
    for point in sorted(points):
        size, reason = size_at(schedule, point)
        if size != previous:
            out.append(Transition(point, size, reason))
            previous = size
    return out


def node_hours(schedule: Schedule, start: datetime, end: datetime) -> float:
    """Integral of the wanted size over [start, end), in node-hours (real elapsed hours, DST-exact)."""
    total = 0.0
    cursor = start
    size = size_at(schedule, start)[0]
    for change in transitions(schedule, start, end):
        total += size * (change.at - cursor).total_seconds() / 3600
        cursor, size = change.at, change.size
    total += size * (end - cursor).total_seconds() / 3600
    return total


REFERENCE_YEAR = 2026
AVERAGE_MONTH_HOURS = 8760 / 12


@functools.lru_cache(maxsize=256)
def average_monthly_node_hours(schedule: Schedule) -> float:
    """Node-hours in an average month: a whole reference year in the pool's zone, divided by 12."""
    zone = schedule.zone
    start = datetime(REFERENCE_YEAR, 1, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(REFERENCE_YEAR + 1, 1, 1, tzinfo=zone).astimezone(UTC)
    return node_hours(schedule, start, end) / 12


def month_bounds(year: int, month: int, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    nxt = (year + month // 12, month % 12 + 1)
    return (datetime(year, month, 1, tzinfo=tz).astimezone(UTC),
            datetime(nxt[0], nxt[1], 1, tzinfo=tz).astimezone(UTC))
