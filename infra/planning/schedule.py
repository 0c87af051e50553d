"""Scheduled pool sizes: weekday windows in an IANA time zone, with a pre-warm lead.

Pure (no Pulumi): the cost model, the EventBridge schedules, KEDA cron triggers and `fleet reconcile`
all derive their sizes and instants from these functions, so they cannot disagree.
Windows are local wall-clock times; instants are computed per local date, so a DST change moves the
UTC instant, never the local one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from infra.reader import ConfigError, Node

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]        # 0 = Monday
    start: time
    end: time
    size: int

    @property
    def cron_days(self) -> str:
        """Day-of-week field for cron: MON-FRI style names, which both AWS and KEDA accept."""
        return ",".join(DAYS[d].upper() for d in self.days)


@dataclass(frozen=True)
class Schedule:
    timezone: str
    windows: tuple[Window, ...]
    off_size: int
    prewarm_minutes: int

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


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


# ---------------------------------------------------------------------------------------------- parsing

def parse_days(text: str | list, path: str) -> tuple[int, ...]:
    """`mon-fri`, `sat,sun`, `daily`, or a list of day names."""
    parts = text if isinstance(text, list) else re.split(r"\s*,\s*", str(text).strip().lower())
    days: set[int] = set()
    for part in parts:
        part = str(part).strip().lower()
        if part in ("daily", "everyday", "all"):
            days.update(range(7))
            continue
        lo, _, hi = part.partition("-")
        if lo not in DAYS or (hi and hi not in DAYS):
            raise ConfigError(f"{path}: {text!r} is not a day list; use names {', '.join(DAYS)}, "
                              "ranges such as mon-fri, or daily")
        a, b = DAYS.index(lo), DAYS.index(hi or lo)
        if b < a:
            raise ConfigError(f"{path}: range {part!r} runs backwards; write it as {DAYS[b]}-{DAYS[a]} or split it")
        days.update(range(a, b + 1))
    if not days:
        raise ConfigError(f"{path}: no days given")
    return tuple(sorted(days))


def parse_time(text: object, path: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(text))
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59 or (
            int(match.group(1)) == 24 and match.group(2) != "00"):
        raise ConfigError(f"{path}: {text!r} is not a time of day; use HH:MM in 24-hour form (quote it: \"09:00\")")
    hour, minute = int(match.group(1)), int(match.group(2))
    return time.max if hour == 24 else time(hour, minute)


def parse_schedule(node: Node, max_size: int) -> Schedule:
    zone_name = node.str("timezone", required=True)
    try:
        ZoneInfo(zone_name)
        if zone_name not in available_timezones():
            raise ZoneInfoNotFoundError(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{node.sub('timezone')}: {zone_name!r} is not an IANA time zone; use a name such as "
                          "Asia/Shanghai, Europe/London or UTC") from None
    off = node.int("offSize", 0, minimum=0, maximum=max_size)
    prewarm = node.int("prewarmMinutes", 0, minimum=0, maximum=720)
    windows = []
    for item in node.items("windows"):
        start = parse_time(item.req("start"), item.sub("start"))
        end = parse_time(item.req("end"), item.sub("end"))
        if end <= start:
            raise ConfigError(f"{item.sub('end')}: {item.req('end')!r} is not after start {item.req('start')!r}; "
                              "a window that crosses midnight is written as two windows (e.g. 22:00-24:00 and "
                              "00:00-06:00 on the next days)")
        size = item.int("size", required=True, minimum=0, maximum=max_size)
        windows.append(Window(parse_days(item.req("days"), item.sub("days")), start, end, size))
        item.done()
    node.done()
    if not windows:
        raise ConfigError(f"{node.sub('windows')}: a schedule needs at least one window "
                          "(days, start, end, size); remove `schedule` for an always-on pool")
    for i, a in enumerate(windows):
        for j in range(i + 1, len(windows)):
            b = windows[j]
            common = set(a.days) & set(b.days)
            if common and a.start < b.end and b.start < a.end:
                raise ConfigError(f"{node.sub('windows')}[{j}]: overlaps window [{i}] on "
                                  f"{DAYS[min(common)]} ({_hm(b.start)}-{_hm(b.end)} vs {_hm(a.start)}-{_hm(a.end)}); "
                                  "one pool's windows must not overlap")
    return Schedule(zone_name, tuple(windows), off, prewarm)


def _hm(t: time) -> str:
    return "24:00" if t == time.max else t.strftime("%H:%M")


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
        return best.size, f"pre-warm for {_hm(best.window.start)} {schedule.timezone}"
    return best.size, (f"window {_hm(best.window.start)}-{_hm(best.window.end)} {schedule.timezone} "
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
