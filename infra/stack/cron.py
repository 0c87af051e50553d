"""Five-field cron expressions as a Kubernetes CronJob takes them (the robfig/cron standard parser the
CronJob controller uses): minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week
0-6 or SUN-SAT; each field a list of `*`, `?`, values and ranges, optionally `/step`; or one of the
@hourly-style descriptors. A time zone inside the expression is refused (the CronJob sets timeZone). Pure."""

from __future__ import annotations

import re

FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
          ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
          ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")))
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def cron_problem(expr: str) -> str | None:
    """Why a CronJob would refuse this schedule, or None."""
    text = expr.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "carries a time zone; the jobs run in UTC (the CronJob's timeZone), so drop it"
    if text.startswith("@"):
        return None if text in DESCRIPTORS else f"is not a descriptor; use 5 fields or one of {', '.join(DESCRIPTORS)}"
    parts = text.split()
    if len(parts) != 5:
        return f"has {len(parts)} fields; write 5 (minute hour day-of-month month day-of-week), e.g. */5 * * * *"
    for part, (name, lo, hi, names) in zip(parts, FIELDS, strict=True):
        for item in part.split(","):
            problem = _item_problem(item, lo, hi, names)
            if problem:
                return f"{name} field {part!r}: {problem}"
    return None


def _item_problem(item: str, lo: int, hi: int, names: tuple[str, ...]) -> str | None:
    span, slash, step = item.partition("/")
    if slash and not (step.isdigit() and 1 <= int(step) <= hi - lo + 1):
        return f"step {step!r} must be a whole number from 1 to {hi - lo + 1}"
    if span in ("*", "?"):
        return None
    first, dash, last = span.partition("-")
    values = []
    for value in (first, last) if dash else (first,):
        number = _value(value, lo, names)
        if number is None:
            return f"{value!r} is not a number" + (f" or a name ({names[0]}-{names[-1]})" if names else "")
        if not lo <= number <= hi:
            return f"{value} is outside {lo}-{hi}"
        values.append(number)
    if dash and values[1] < values[0]:
        return f"range {span!r} runs backwards"
    return None


def _value(text: str, lo: int, names: tuple[str, ...]) -> int | None:
    if re.fullmatch(r"\d{1,2}", text):
        return int(text)
    if text.upper() in names:
        return names.index(text.upper()) + lo
    return None
