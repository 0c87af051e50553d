"""A pool's schedule as the stack file states it: weekday windows in an IANA time zone, an off-window
size and a pre-warm lead. Parsed and checked here (part of StackConfig); what the windows mean in hours,
instants and sizes is computed by `infra.planning.schedule`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from infra.stack.reader import ConfigError, Node

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
    # `prewarmMinutes: auto` (or left out): the planner sets prewarm_minutes to the modeled cold start of
    # what the pool serves plus the replicas' ramp (infra.planning.windows_plan); until then it is 0
    prewarm_auto: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


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
    # left out: `auto` too (the pre-warm defaults to the modeled cold start; a stack may set more)
    auto = node.raw("prewarmMinutes", "auto") == "auto"
    if isinstance(node.raw("prewarmMinutes", 0), str) and not auto:
        raise ConfigError(f"{node.sub('prewarmMinutes')}: {node.raw('prewarmMinutes', 0)!r} is not a whole number "
                          "of minutes or 'auto' (the modeled cold start of the pool's models)")
    prewarm = 0 if auto else node.int("prewarmMinutes", 0, minimum=0, maximum=720)
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
                                  f"{DAYS[min(common)]} ({hm(b.start)}-{hm(b.end)} vs {hm(a.start)}-{hm(a.end)}); "
                                  "one pool's windows must not overlap")
    return Schedule(zone_name, tuple(windows), off, prewarm, auto)


def hm(t: time) -> str:
    return "24:00" if t == time.max else t.strftime("%H:%M")
