"""Scheduled sizes: local wall-clock windows, pre-warm, DST, and properties over wide inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning.schedule import average_monthly_node_hours, month_bounds, node_hours, size_at, transitions
from infra.stack.reader import Node
from infra.stack.windows import parse_schedule


def schedule(windows, zone="Europe/London", prewarm=0, off=0, max_size=4):
    return parse_schedule(Node({"timezone": zone, "prewarmMinutes": prewarm, "offSize": off,
                                "windows": windows}, "schedule"), max_size)


WEEKDAYS = [{"days": "mon-fri", "start": "09:00", "end": "18:00", "size": 2}]


def test_window_start_keeps_local_time_across_spring_forward():
    s = schedule(WEEKDAYS, prewarm=30)
    ups = [t for t in transitions(s, datetime(2026, 3, 26, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)) if t.size]
    # 08:30 London is 08:30 UTC before 29 March (GMT) and 07:30 UTC after (BST)
    assert [t.at.strftime("%m-%d %H:%M") for t in ups] == ["03-26 08:30", "03-27 08:30", "03-30 07:30", "03-31 07:30"]
    assert all(t.local("Europe/London").strftime("%H:%M") == "08:30" for t in ups)


def test_size_at_inside_prewarm_and_outside():
    s = schedule(WEEKDAYS, prewarm=30, off=1)
    tz = ZoneInfo("Europe/London")
    assert size_at(s, datetime(2026, 7, 6, 8, 29, tzinfo=tz)) == (1, "outside windows")
    size, reason = size_at(s, datetime(2026, 7, 6, 8, 45, tzinfo=tz))
    assert size == 2 and reason.startswith("pre-warm")
    assert size_at(s, datetime(2026, 7, 6, 12, 0, tzinfo=tz))[0] == 2
    assert size_at(s, datetime(2026, 7, 6, 18, 0, tzinfo=tz))[0] == 1          # end is exclusive
    assert size_at(s, datetime(2026, 7, 4, 12, 0, tzinfo=tz))[0] == 1          # Saturday


def test_night_window_across_the_dst_switch_counts_real_hours():
    # 00:00-06:00 on Sunday 29 March 2026 in London lasts 5 real hours (01:00 jumps to 02:00)
    s = schedule([{"days": "sun", "start": "00:00", "end": "06:00", "size": 1}])
    start, end = datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)
    assert node_hours(s, start, end) == 5.0
    # and 7 real hours on Sunday 25 October 2026 (02:00 falls back to 01:00)
    assert node_hours(s, datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)) == 7.0


def test_month_bounds_follow_the_zone():
    start, end = month_bounds(2026, 3, "Asia/Shanghai")
    assert start == datetime(2026, 2, 28, 16, tzinfo=UTC) and end == datetime(2026, 3, 31, 16, tzinfo=UTC)
    s = schedule([{"days": "daily", "start": "00:00", "end": "24:00", "size": 1}], zone="Europe/London")
    start, end = month_bounds(2026, 3, "Europe/London")
    assert node_hours(s, start, end) == 31 * 24 - 1                           # the lost DST hour


def test_average_month_of_a_weekday_schedule():
    s = schedule(WEEKDAYS, zone="Asia/Shanghai", prewarm=60)
    # 2026 has 261 weekdays; 10 h a day (9 + 1 pre-warm) at 2 nodes, over 12 months
    assert abs(average_monthly_node_hours(s) - 261 * 10 * 2 / 12) < 1e-6


def test_overlapping_prewarm_takes_the_larger_size():
    s = schedule([{"days": "mon", "start": "09:00", "end": "12:00", "size": 1},
                  {"days": "mon", "start": "12:00", "end": "14:00", "size": 3}], prewarm=60)
    tz = ZoneInfo("Europe/London")
    assert size_at(s, datetime(2026, 7, 6, 11, 30, tzinfo=tz))[0] == 3        # pre-warm of the second window


zones = st.sampled_from(["UTC", "Europe/London", "America/New_York", "Asia/Shanghai", "Australia/Sydney"])
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC))


@st.composite
def schedules(draw):
    start_h = draw(st.integers(0, 20))
    end_h = draw(st.integers(start_h + 1, 24))
    days = draw(st.sampled_from(["mon-fri", "sat,sun", "daily", "tue", "mon,wed,fri"]))
    window = {"days": days, "start": f"{start_h:02d}:00", "end": f"{end_h:02d}:00", "size": draw(st.integers(1, 4))}
    return schedule([window],
                    zone=draw(zones), prewarm=draw(st.sampled_from([0, 15, 45, 90])), off=draw(st.integers(0, 1)))


@settings(max_examples=60, deadline=None)
@given(schedules(), instants)
def test_size_at_matches_the_local_clock(s, at):
    window = s.windows[0]
    local = at.astimezone(s.zone)
    inside = False
    for ahead in (0, 1):                 # tomorrow's window may pre-warm today (00:00 start, 45 min lead)
        day = (local + timedelta(days=ahead)).date()
        if day.weekday() not in window.days:
            continue
        begin = datetime.combine(day, window.start, tzinfo=s.zone) - timedelta(minutes=s.prewarm_minutes)
        end = (datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=s.zone)
               if window.end.hour == 23 and window.end.minute == 59
               else datetime.combine(day, window.end, tzinfo=s.zone))
        inside |= begin.astimezone(UTC) <= at < end.astimezone(UTC)
    assert size_at(s, at)[0] == (max(window.size, s.off_size) if inside else s.off_size)


@settings(max_examples=40, deadline=None)
@given(schedules(), instants, st.integers(1, 24 * 20), st.integers(1, 24 * 20))
def test_node_hours_add_up_over_split_periods(s, start, h1, h2):
    mid, end = start + timedelta(hours=h1), start + timedelta(hours=h1 + h2)
    total = node_hours(s, start, end)
    assert abs(total - (node_hours(s, start, mid) + node_hours(s, mid, end))) < 1e-6
    assert s.off_size * (h1 + h2) - 1e-6 <= total <= max(w.size for w in s.windows) * (h1 + h2) + 1e-6


@settings(max_examples=40, deadline=None)
@given(schedules(), instants)
def test_transitions_change_the_size_every_time(s, start):
    changes = transitions(s, start, start + timedelta(days=9))
    previous = size_at(s, start - timedelta(microseconds=1))[0]
    for change in changes:
        assert change.size != previous and size_at(s, change.at)[0] == change.size
        previous = change.size


def test_prewarm_auto_is_parsed_and_anything_else_named():
    import pytest

    from infra.stack.reader import ConfigError

    s = schedule(WEEKDAYS, prewarm="auto")
    assert s.prewarm_auto and s.prewarm_minutes == 0          # the planner sets it from the cold start
    assert not schedule(WEEKDAYS, prewarm=30).prewarm_auto
    with pytest.raises(ConfigError, match=r"prewarmMinutes: 'soon' is not a whole number of minutes or 'auto'"):
        schedule(WEEKDAYS, prewarm="soon")
