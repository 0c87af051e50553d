"""Cron expressions as the simulated controllers read them: KEDA's cron trigger (5 fields in an IANA
zone), EventBridge Scheduler's `cron(M H DOM MON DOW YEAR)` in its zone, and the jobs' cron (UTC,
GitHub Actions / Kubernetes CronJob). Pure; evaluated per minute over the simulated span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class CronError(ValueError):
    """An expression the simulator cannot read."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None          # day of month; None: any
    months: frozenset[int]
    weekdays: frozenset[int] | None      # 0 = Monday; None: any

    def matches(self, local: datetime) -> bool:
        if local.minute not in self.minutes or local.hour not in self.hours or local.month not in self.months:
            return False
        if self.days is None and self.weekdays is None:
            return True
        by_day = self.days is not None and local.day in self.days
        by_weekday = self.weekdays is not None and local.weekday() in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return by_day or by_weekday          # classic cron: either field
        return by_day or by_weekday


def _value(text: str, names: Sequence[str], base: int) -> int:
    upper = text.upper()
    if upper in names:
        return names.index(upper) + base
    return int(text)


def _field(text: str, low: int, high: int, names: Sequence[str] = (), base: int = 0,
           weekday: bool = False) -> frozenset[int] | None:
    if text in ("*", "?"):
        return None
    out: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body in ("*", ""):
            a, b = low, high
        elif "-" in body:
            x, y = body.split("-", 1)
            a, b = _value(x, names, base), _value(y, names, base)
        else:
            a = _value(body, names, base)
            b = high if step_text else a
        out.update(range(a, b + 1, step))
    if weekday:                               # cron: 0 or 7 = Sunday, 1 = Monday; ours: 0 = Monday
        return frozenset((v - 1) % 7 for v in out)
    return frozenset(out)


def parse(expression: str) -> Cron:
    """A 5-field cron, or EventBridge's `cron(...)` with 6 fields (the year is ignored)."""
    text = expression.strip()
    eventbridge = text.startswith("cron(") and text.endswith(")")
    fields = text[5:-1].split() if eventbridge else text.split()
    if len(fields) not in (5, 6):
        raise CronError(f"{expression!r}: expected 5 cron fields (or cron(...) with 6)")
    try:
        minute, hour, dom, month, dow = fields[:5]
        # names count from 1 = Monday in our weekday mapping; EventBridge numbers 1 = Sunday
        weekdays = _field(dow, 0, 7, ("SUN",) + DAY_NAMES[:6], 0, weekday=True)
        if eventbridge and weekdays is not None and not any(c.isalpha() for c in dow):
            weekdays = frozenset((v - 1) % 7 for v in weekdays)      # EventBridge: 1 = Sunday
        return Cron(_field(minute, 0, 59) or frozenset(range(60)), _field(hour, 0, 23) or frozenset(range(24)),
                    _field(dom, 1, 31), _field(month, 1, 12, MONTH_NAMES, 1) or frozenset(range(1, 13)), weekdays)
    except ValueError as err:
        raise CronError(f"{expression!r}: {err}") from None
