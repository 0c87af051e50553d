"""EC2 Capacity Blocks for a capacity-block pool's windows (`fleet capacity`): which blocks the schedule
needs, which reservation already covers a span, and what an offering costs against on-demand.

Pure: the job reads AWS into the values below and asks these functions what to buy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from infra.planning.fleetops import iso
from infra.planning.schedule import intervals, node_hours
from infra.stack.spec import PoolSpec

BLOCK_BOUNDARY = time(11, 30)             # every Capacity Block starts and ends at 11:30 UTC
BLOCK_TEARDOWN = timedelta(minutes=30)    # instances end 30 minutes before the block does
MAX_BLOCK_DAYS = 182


@dataclass(frozen=True)
class Span:
    """One Capacity Block the schedule needs: block bounds, and the windows it must cover."""
    start: datetime
    end: datetime
    need_start: datetime
    need_end: datetime
    count: int

    @property
    def hours(self) -> int:
        return round((self.end - self.start).total_seconds() / 3600)


@dataclass(frozen=True)
class Offering:
    id: str
    instance_type: str
    zone: str
    count: int
    start: datetime
    end: datetime
    upfront_usd: float
    currency: str


@dataclass(frozen=True)
class Reservation:
    id: str
    instance_type: str
    count: int
    start: datetime | None
    end: datetime | None
    state: str


@dataclass(frozen=True)
class Quote:
    offering: Offering
    hours: float
    usd_per_node_hour: float
    on_demand_same_hours_usd: float | None        # the same nodes for every hour of the block
    on_demand_scheduled_usd: float | None         # on-demand for only the scheduled node-hours in it

    def to_json(self) -> dict[str, Any]:
        o = self.offering
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)
        return {"offering": o.id, "zone": o.zone, "instanceType": o.instance_type, "count": o.count,
                "start": iso(o.start), "end": iso(o.end), "hours": round(self.hours, 2),
                "upfrontUSD": r(o.upfront_usd), "currency": o.currency,
                "usdPerNodeHour": r(self.usd_per_node_hour),
                "onDemandSameHoursUSD": r(self.on_demand_same_hours_usd),
                "onDemandScheduledUSD": r(self.on_demand_scheduled_usd)}


def _boundary_before(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    mark = datetime.combine(moment.date(), BLOCK_BOUNDARY, tzinfo=UTC)
    return mark if mark <= moment else mark - timedelta(days=1)


def block_days(days: int) -> int:
    """Durations sold: 1-14 days in 1-day steps, then 7-day steps up to 182 days."""
    if days <= 14:
        return max(days, 1)
    return min(math.ceil(days / 7) * 7, MAX_BLOCK_DAYS)


def capacity_spans(pool: PoolSpec, start: datetime, end: datetime) -> list[Span]:
    """Blocks that cover the pool's windows (pre-warm included) starting in [start, end)."""
    if pool.schedule is None:
        first = _boundary_before(start)
        first = first if first == start else first + timedelta(days=1)
        need = [(first, end, max(pool.desired_size, pool.min_size, 1))] if first < end else []
    else:
        need = [(i.start, i.end, i.size) for i in intervals(pool.schedule, start, end)
                if i.start >= start and i.size > 0]
    spans: list[Span] = []
    for a, b, size in need:
        lo = _boundary_before(a)
        hi = _boundary_before(b + BLOCK_TEARDOWN - timedelta(microseconds=1)) + timedelta(days=1)
        # a span's end is rounded up to a duration AWS sells as soon as it is made, so a later window that
        # starts inside that rounding joins the span instead of overlapping it
        if spans and lo <= spans[-1].end:
            last = spans[-1]
            spans[-1] = _sold(Span(last.start, max(last.end, hi), last.need_start, max(last.need_end, b),
                                   max(last.count, size)))
        else:
            spans.append(_sold(Span(lo, hi, a, b, size)))
    return spans


def _sold(span: Span) -> Span:
    days = block_days(round((span.end - span.start) / timedelta(days=1)))
    return replace(span, end=span.start + timedelta(days=days))


def covers(start: datetime | None, end: datetime | None, span: Span) -> bool:
    return (start is not None and end is not None and start <= span.need_start
            and end - BLOCK_TEARDOWN >= span.need_end)


def covering(span: Span, reservations: Iterable[Reservation]) -> Reservation | None:
    """A reservation already bought (or being paid) that covers the span's windows with enough nodes."""
    for r in reservations:
        if r.state in ("active", "scheduled", "payment-pending") and r.count >= span.count and covers(
                r.start, r.end, span):
            return r
    return None


def quote(offering: Offering, pool: PoolSpec, on_demand_hourly: float | None) -> Quote:
    hours = (offering.end - offering.start).total_seconds() / 3600
    usable_end = offering.end - BLOCK_TEARDOWN
    if pool.schedule is None:
        scheduled = offering.count * (usable_end - offering.start).total_seconds() / 3600
    else:
        scheduled = node_hours(pool.schedule, offering.start, usable_end)
    return Quote(offering, hours, offering.upfront_usd / max(offering.count * hours, 1e-9),
                 None if on_demand_hourly is None else on_demand_hourly * offering.count * hours,
                 None if on_demand_hourly is None else on_demand_hourly * scheduled)


def cheapest_covering(span: Span, offerings: Iterable[Offering]) -> Offering | None:
    fit = [o for o in offerings if o.count >= span.count and covers(o.start, o.end, span)]
    return min(fit, key=lambda o: (o.upfront_usd, o.start), default=None)
