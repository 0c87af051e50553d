"""Schedule -> EventBridge cron actions: pure, checked against infra.schedule.size_at."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning.schedule import size_at
from infra.planning.schedule_cron import cron_actions, cron_days, state_at, weekly_profile
from infra.stack.windows import Schedule, Window

WEEKDAYS = (0, 1, 2, 3, 4)


def schedule(windows, prewarm=0, off=0, zone="Asia/Shanghai"):
    return Schedule(zone, tuple(windows), off, prewarm)


def test_prod_peak_pool_shanghai_with_45_minutes_prewarm():
    peak = schedule([Window(WEEKDAYS, time(9), time(12), 2), Window(WEEKDAYS, time(13, 30), time(19), 2)],
                    prewarm=45)
    actions = cron_actions(peak)
    assert [(a.expression, a.state.size, a.kind) for a in actions] == [
        ("cron(15 8 ? * MON-FRI *)", 2, "start"),
        ("cron(0 12 ? * MON-FRI *)", 0, "end"),
        ("cron(45 12 ? * MON-FRI *)", 2, "start"),
        ("cron(0 19 ? * MON-FRI *)", 0, "end"),
    ]
    start, end = actions[0], actions[1]
    assert start.scaling(2) == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    # off-window: min = desired = 0, max 1 (EKS rejects maxSize 0)
    assert end.scaling(2) == {"minSize": 0, "maxSize": 2, "desiredSize": 0}


def test_prewarm_across_midnight_moves_the_day_field():
    early = schedule([Window(WEEKDAYS, time(0, 15), time(6), 1)], prewarm=30)
    actions = cron_actions(early)
    assert sorted(a.expression for a in actions) == ["cron(0 6 ? * MON-FRI *)", "cron(45 23 ? * MON-THU,SUN *)"]
    start = next(a for a in actions if a.kind == "start")
    assert start.days == (0, 1, 2, 3, 6)          # Sunday 23:45 pre-warms Monday 00:15
    assert cron_days(start.days) == "MON-THU,SUN"


def test_prewarm_overlapping_the_previous_window_never_scales_down_between():
    tight = schedule([Window(WEEKDAYS, time(9), time(12), 2), Window(WEEKDAYS, time(12, 30), time(14), 3)],
                     prewarm=45)
    sizes = [(a.minute_of_day, a.state.size) for a in cron_actions(tight)]
    assert sizes == [(9 * 60 - 45, 2), (11 * 60 + 45, 3), (14 * 60, 0)]


def test_window_to_midnight_ends_at_00_00_next_day():
    late = schedule([Window((4,), time(20), time.max, 1)])
    assert sorted(a.expression for a in cron_actions(late)) == ["cron(0 0 ? * SAT *)", "cron(0 20 ? * FRI *)"]


def test_constant_profile_has_no_actions():
    assert cron_actions(schedule([Window(tuple(range(7)), time(0), time.max, 1)])) == ()


def test_cron_days_ranges():
    assert cron_days((0, 1, 2, 3, 4, 5, 6)) == "MON-SUN"
    assert cron_days((5, 6)) == "SAT,SUN"
    assert cron_days((0, 2, 3, 4)) == "MON,WED-FRI"


# ---------------------------------------------------------------------------------------------- property

ZONES = ("UTC", "Asia/Shanghai", "Asia/Kolkata", "Asia/Tokyo")   # no DST: wall clock == elapsed time


@st.composite
def schedules(draw):
    windows = []
    for _ in range(draw(st.integers(1, 3))):
        days = tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1))))
        start = draw(st.integers(0, 23 * 60 + 30))
        end = draw(st.integers(start + 15, 24 * 60))
        windows.append(Window(days, time(start // 60, start % 60),
                              time.max if end == 24 * 60 else time(end // 60, end % 60), draw(st.integers(0, 4))))
    return Schedule(draw(st.sampled_from(ZONES)), tuple(windows), draw(st.integers(0, 2)),
                    draw(st.integers(0, 720)))


@settings(max_examples=100, deadline=None)
@given(schedules(), st.integers(0, 14 * 24 * 60 - 1))
def test_replaying_the_cron_actions_gives_size_at(sched, minute):
    """At any instant, the last action that fired (local wall clock) sets the size the schedule wants."""
    at = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(minutes=minute)
    actions = cron_actions(sched)
    state = state_at(actions, at.astimezone(sched.zone), weekly_profile(sched)[0])
    assert state.size == size_at(sched, at)[0]


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_every_action_is_a_valid_eventbridge_cron(sched):
    for action in cron_actions(sched):
        fields = action.expression.removeprefix("cron(").removesuffix(")").split(" ")
        assert len(fields) == 6 and fields[2] == "?" and fields[3] == "*" and fields[5] == "*"
        assert 0 <= int(fields[0]) < 60 and 0 <= int(fields[1]) < 24
        scaling = action.scaling(4)
        assert scaling["maxSize"] >= max(1, scaling["minSize"]) and scaling["desiredSize"] == scaling["minSize"]


def test_eventbridge_actions_and_reconcile_agree():
    """At every scheduled transition of the shipped pools, the EventBridge body equals reconcile's target."""
    from datetime import UTC, datetime, timedelta

    from infra.planning.fleetops import Scaling, target
    from infra.planning.schedule import transitions
    from infra.stack.config import load_stack_file
    from tests.conftest import STACKS

    checked = 0
    for stack in ("dev", "staging", "prod"):
        cfg = load_stack_file(STACKS / f"Pulumi.{stack}.yaml")
        for pool in (p for p in cfg.pools if p.schedule):
            actions = cron_actions(pool.schedule)
            start = datetime(2026, 3, 23, tzinfo=UTC)
            for change in transitions(pool.schedule, start, start + timedelta(days=14)):
                local = change.at.astimezone(pool.schedule.zone)
                fired = [a for a in actions if local.weekday() in a.days
                         and a.minute_of_day == local.hour * 60 + local.minute]
                assert len(fired) == 1, (stack, pool.name, change)
                body = fired[0].scaling(pool.max_size)
                goal = target(pool, change.at, Scaling(0, pool.max_size, 0), {}).scaling
                assert body == {"minSize": goal.min_size, "maxSize": goal.max_size, "desiredSize": goal.desired}
                checked += 1
    assert checked > 20
