"""Capacity Block spans, quotes and covering reservations (no AWS)."""

from __future__ import annotations

import dataclasses
from datetime import time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning import capacity as cap
from infra.planning.capacity import Offering, Reservation
from infra.planning.schedule import intervals
from tests.planning.test_fleetops import instants, pool, pools, schedule, utc


def test_shanghai_business_days_fit_one_block_per_week():
    p = pool(max_size=1, sched=schedule("Asia/Shanghai", time(9), time(19), size=1, prewarm=45),
             capacity="capacity-block")
    spans = cap.capacity_spans(p, utc(2026, 3, 28), utc(2026, 4, 11))      # Sat -> two weeks
    assert [(s.start, s.end, s.hours, s.count) for s in spans] == [
        (utc(2026, 3, 29, 11, 30), utc(2026, 4, 3, 11, 30), 120, 1),     # Sun 11:30 -> Fri 11:30 UTC
        (utc(2026, 4, 5, 11, 30), utc(2026, 4, 10, 11, 30), 120, 1),
    ]
    assert spans[0].need_start == utc(2026, 3, 30, 0, 15) and spans[0].need_end == utc(2026, 4, 3, 11)


def test_a_window_across_1130_utc_needs_two_days():
    p = pool(sched=schedule("Europe/London", time(8), time(19), size=2, prewarm=0, days=(2,)))
    [span] = cap.capacity_spans(p, utc(2026, 1, 5), utc(2026, 1, 12))
    assert (span.start, span.end, span.count) == (utc(2026, 1, 6, 11, 30), utc(2026, 1, 8, 11, 30), 2)


@pytest.mark.parametrize("days, sold", [(1, 1), (5, 5), (14, 14), (15, 21), (22, 28), (400, 182)])
def test_block_durations(days, sold):
    assert cap.block_days(days) == sold


@settings(max_examples=150, deadline=None)
@given(p=pools(), start=instants, weeks=st.integers(1, 4))
def test_every_window_is_inside_one_block(p, start, weeks):
    p = dataclasses.replace(p, capacity="capacity-block")
    end = start + timedelta(weeks=weeks)
    spans = cap.capacity_spans(p, start, end)
    for s in spans:
        assert s.start.time() == time(11, 30) and s.end.time() == time(11, 30)
        assert cap.block_days(round(s.hours / 24)) == round(s.hours / 24)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    if p.schedule is None:
        return
    for i in intervals(p.schedule, start, end):
        if i.start >= start and i.size > 0:
            assert any(s.start <= i.start and i.end <= s.end - cap.BLOCK_TEARDOWN and s.count >= i.size
                       for s in spans), i


def test_quote_and_cheapest_covering_offering():
    p = pool(max_size=1, sched=schedule("Asia/Shanghai", time(9), time(19), size=1, prewarm=0),
             capacity="capacity-block")
    [span] = cap.capacity_spans(p, utc(2026, 3, 28), utc(2026, 4, 4))
    good = Offering("cb-good", "p5en.48xlarge", "us-east-1a", 1, span.start, span.end, 3000.0, "USD")
    cheap_short = dataclasses.replace(good, id="cb-short", end=span.end - timedelta(days=1), upfront_usd=10.0)
    dear = dataclasses.replace(good, id="cb-dear", upfront_usd=5000.0)
    assert cap.cheapest_covering(span, [cheap_short, dear, good]).id == "cb-good"
    q = cap.quote(good, p, 60.0)
    assert q.hours == 120 and q.usd_per_node_hour == pytest.approx(25.0)
    assert q.on_demand_same_hours_usd == pytest.approx(60.0 * 120)
    assert q.on_demand_scheduled_usd == pytest.approx(60.0 * 10 * 5)          # five 10-hour days
    bought = Reservation("cr-1", "p5en.48xlarge", 1, span.start, span.end, "scheduled")
    assert cap.covering(span, [bought]) == bought
    assert cap.covering(span, [dataclasses.replace(bought, state="expired")]) is None


def test_a_span_rounded_up_to_a_sold_duration_absorbs_the_windows_it_reaches():
    """Three weeks of Sydney windows: the first span rounds up to 21 days and reached the last window's
    block, which used to be a second, overlapping span."""
    p = dataclasses.replace(pool(max_size=1, sched=schedule("Australia/Sydney", time(0), time(22), size=1, prewarm=0,
                                                            days=(0, 2, 3, 5))), capacity="capacity-block")
    spans = cap.capacity_spans(p, utc(2026, 9, 16), utc(2026, 10, 7))
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    assert len(spans) == 1 and cap.block_days(round(spans[0].hours / 24)) == round(spans[0].hours / 24)
