"""Offered load for `fleet simulate`: requests per minute per model, per simulated minute.

`--traffic FILE` is a CSV with header `time,model,rpm` (ISO 8601 with an offset; a rate holds until the
model's next row). Without a file, a default weekday business-hours profile per model: Monday to
Friday 09:00-18:00 in the zone of the model's scheduled pool (the stack's first scheduled pool, else
UTC) at half the capacity of the replicas it is meant to have then, nothing outside.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


class TrafficError(ValueError):
    """A traffic file the simulator cannot use (a user error: names the row and what would work)."""


BUSINESS = (time(9), time(18))
BUSINESS_DAYS = frozenset(range(5))
LOAD_FACTOR = 0.5


@dataclass(frozen=True)
class Profile:
    """Per model, a rate for each simulated minute."""
    rpm: Mapping[str, Sequence[float]]


def parse_csv(text: str, models: Sequence[str], source: str = "--traffic") -> dict[str, list[tuple[datetime, float]]]:
    rows: dict[str, list[tuple[datetime, float]]] = {}
    reader = csv.DictReader(io.StringIO(text))
    if [h.strip() for h in (reader.fieldnames or [])] != ["time", "model", "rpm"]:
        raise TrafficError(f"{source}: the header must be `time,model,rpm`, not {','.join(reader.fieldnames or [])!r}")
    for line, row in enumerate(reader, start=2):
        where = f"{source} line {line}"
        try:
            at = datetime.fromisoformat(row["time"].strip().replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            raise TrafficError(f"{where}: time {row.get('time')!r} is not ISO 8601 (2026-12-07T09:00+08:00)") from None
        if at.tzinfo is None:
            raise TrafficError(f"{where}: time {row['time']!r} has no UTC offset; add one such as +08:00 or Z")
        model = (row.get("model") or "").strip()
        if model not in models:
            raise TrafficError(f"{where}: model {model!r} is not in the stack; models: {', '.join(models)}")
        try:
            rpm = float(row["rpm"])
        except (TypeError, ValueError):
            raise TrafficError(f"{where}: rpm {row.get('rpm')!r} is not a number") from None
        if rpm < 0:
            raise TrafficError(f"{where}: rpm {rpm:g} is negative")
        rows.setdefault(model, []).append((at, rpm))
    for series in rows.values():
        series.sort(key=lambda r: r[0])
    return rows


def from_rows(rows: Mapping[str, list[tuple[datetime, float]]], models: Sequence[str], start: datetime,
              minutes: int) -> Profile:
    out: dict[str, list[float]] = {}
    for model in models:
        series, rates, i, current = rows.get(model, []), [0.0] * minutes, 0, 0.0
        for m in range(minutes):
            at = start + timedelta(minutes=m)
            while i < len(series) and series[i][0] <= at:
                current = series[i][1]
                i += 1
            rates[m] = current
        out[model] = rates
    return Profile(out)


def business_hours(peaks: Mapping[str, float], zones: Mapping[str, str], start: datetime, minutes: int) -> Profile:
    """Each model at its `peaks` rate on weekdays 09:00-18:00 in its zone, 0 otherwise."""
    out: dict[str, list[float]] = {}
    for model, peak in peaks.items():
        zone = ZoneInfo(zones.get(model, "UTC"))
        rates = [0.0] * minutes
        for m in range(minutes):
            local = (start + timedelta(minutes=m)).astimezone(zone)
            if local.weekday() in BUSINESS_DAYS and BUSINESS[0] <= local.time() < BUSINESS[1]:
                rates[m] = peak
        out[model] = rates
    return Profile(out)
