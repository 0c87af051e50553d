"""The jobs' pure decisions: targets, overrides, actions and sweep (no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning import fleetops as ops
from infra.planning.fleetops import TAG_BY, TAG_SIZE, TAG_UNTIL, Activity, NodeGroup, Override, Price, Scaling
from infra.stack.config import load_stack_file
from infra.stack.spec import PoolSpec
from infra.stack.windows import Schedule, Window
from tests.jobs.conftest import STACK as JOBS_STACK

MON_FRI = (0, 1, 2, 3, 4)


@pytest.fixture
def cfg(tmp_path):
    """The jobs' test stack (tests/jobs/conftest.py), parsed: what the decisions below are asked about."""
    path = tmp_path / "Pulumi.jobs.yaml"
    path.write_text(JOBS_STACK)
    return load_stack_file(path)


def schedule(zone="Europe/London", start=time(9), end=time(18), size=2, off=0, prewarm=30, days=MON_FRI):
    return Schedule(zone, (Window(days, start, end, size),), off, prewarm)


def pool(name="p", min_size=0, max_size=2, desired=0, sched=None, capacity="on-demand", idle=None):
    return PoolSpec(name=name, instance_types=("p5en.48xlarge",), capacity=capacity, min_size=min_size,
                    max_size=max_size, desired_size=desired, schedule=sched, az_ids=(),
                    ami_type="AL2023_x86_64_NVIDIA", capacity_reservation_id=None, disk_gb=300,
                    idle_minutes=idle)


def group(p: PoolSpec, scaling: Scaling, tags=None, status="ACTIVE", modified=None) -> NodeGroup:
    return NodeGroup(p.name, f"ng-{p.name}", f"arn:ng/{p.name}", status, scaling, dict(tags or {}), modified)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ overrides

def test_override_tags_round_trip_and_unreadable_ones_are_flagged():
    o = Override(2, utc(2026, 3, 30, 22), "ops@host")
    assert ops.read_override(o.tags()) == (o, None)
    assert ops.read_override({}) == (None, None)
    found, problem = ops.read_override({TAG_SIZE: "two", TAG_UNTIL: "2026-03-30T22:00:00Z"})
    assert found is None and "unreadable" in problem
    found, problem = ops.read_override({TAG_SIZE: "1", TAG_UNTIL: "2026-03-30T22:00:00"})   # no zone
    assert found is None and problem


def test_check_override_bounds_and_expiry():
    p = pool(min_size=1, max_size=3)
    at = utc(2026, 3, 30, 12)
    ops.check_override(p, 3, at + timedelta(hours=1), at)
    with pytest.raises(ValueError, match="outside pool p's bounds 1..3"):
        ops.check_override(p, 0, at + timedelta(hours=1), at)
    with pytest.raises(ValueError, match="not in the future"):
        ops.check_override(p, 2, at, at)
    with pytest.raises(ValueError, match="more than 7 days"):
        ops.check_override(p, 2, at + timedelta(days=8), at)
    # a scheduled pool may be held at its off-window size even below minSize
    ops.check_override(pool(min_size=1, sched=schedule(off=0)), 0, at + timedelta(hours=1), at)


# ------------------------------------------------------------------------------------------------ targets

@pytest.mark.parametrize("at", [utc(2026, 3, 30, 7, 0), utc(2026, 3, 30, 7, 45), utc(2026, 3, 30, 12, 0),
                                utc(2026, 3, 30, 17, 0), utc(2026, 3, 27, 8, 45)])
def test_a_schedule_never_sets_a_size_only_the_stack_bounds(at):
    """Windows are KEDA cron triggers: in or out of them, the node group keeps the stack's bounds and
    the autoscaler's desired size (the old target pinned desired to 0 at a window's end)."""
    p = pool(max_size=2, sched=schedule())
    for desired in (0, 1, 2):
        goal = ops.target(p, at, Scaling(0, 2, desired), {})
        assert goal.scaling == Scaling(0, 2, desired) and goal.holds == "stack"
        assert "KEDA cron" in goal.reason and not goal.clear_override


def test_bounds_keep_max_at_least_one_and_repair_drift():
    p = pool(max_size=1, sched=schedule(size=1))
    assert ops.target(p, utc(2026, 3, 29, 12), Scaling(1, 1, 1), {}).scaling == Scaling(0, 1, 1)
    assert ops.target(p, utc(2026, 3, 29, 12), Scaling(2, 4, 3), {}).scaling == Scaling(0, 1, 1)


def test_active_override_holds_min_and_max_expired_one_is_cleared():
    p = pool(max_size=2, sched=schedule())
    night = utc(2026, 3, 30, 21)                                 # outside the window
    tags = Override(1, utc(2026, 3, 30, 23), "ops").tags()
    active = ops.target(p, night, Scaling(0, 2, 0), tags)
    assert active.scaling == Scaling(1, 1, 1) and "override 1" in active.reason and active.holds == "override"
    expired = ops.target(p, utc(2026, 3, 31, 0), Scaling(1, 1, 1), tags)
    assert expired.scaling == Scaling(0, 2, 1) and expired.clear_override and "expired" in expired.reason
    # an override to 0 leaves at most one node (EKS refuses maxSize 0)
    zero = ops.target(p, night, Scaling(0, 2, 2), Override(0, utc(2026, 3, 30, 23), "ops").tags())
    assert zero.scaling == Scaling(0, 1, 1)


def test_unscheduled_pool_leaves_desired_to_the_autoscaler_but_repairs_min_max():
    p = pool(min_size=1, max_size=3, desired=1)
    assert ops.target(p, utc(2026, 3, 30, 12), Scaling(1, 3, 2), {}).scaling == Scaling(1, 3, 2)
    assert ops.target(p, utc(2026, 3, 30, 12), Scaling(0, 5, 0), {}).scaling == Scaling(1, 3, 1)
    expired = Override(3, utc(2026, 3, 30, 11), "ops").tags()
    back = ops.target(p, utc(2026, 3, 30, 12), Scaling(3, 3, 3), expired)
    assert back.scaling == Scaling(1, 3, 3) and back.clear_override


zones = st.sampled_from(["Europe/London", "Asia/Shanghai", "America/New_York", "UTC", "Australia/Sydney"])
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))


@st.composite
def pools(draw):
    max_size = draw(st.integers(1, 8))
    min_size = draw(st.integers(0, max_size))
    desired = draw(st.integers(min_size, max_size))
    sched = None
    if draw(st.booleans()):
        start = draw(st.integers(0, 22))
        end = draw(st.integers(start + 1, 24))
        sched = schedule(zone=draw(zones), start=time(start), end=time.max if end == 24 else time(end),
                         size=draw(st.integers(0, max_size)), off=draw(st.integers(0, max_size)),
                         prewarm=draw(st.integers(0, 120)),
                         days=tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1)))))
    return pool(min_size=min_size, max_size=max_size, desired=desired, sched=sched)


@st.composite
def tag_sets(draw, at):
    kind = draw(st.sampled_from(["none", "active", "expired", "garbage"]))
    if kind == "none":
        return {}
    if kind == "garbage":
        return {TAG_SIZE: draw(st.sampled_from(["x", "-1", ""])), TAG_BY: "ops"}
    delta = timedelta(minutes=draw(st.integers(1, 60 * 24 * 6)))
    return Override(draw(st.integers(0, 10)), at + delta if kind == "active" else at - delta, "ops").tags()


@settings(max_examples=300, deadline=None)
@given(p=pools(), at=instants, current=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
       data=st.data())
def test_targets_are_valid_and_reconcile_converges(p, at, current, data):
    tags = data.draw(tag_sets(at))
    now = Scaling(*current)
    goal = ops.target(p, at, now, tags)
    s = goal.scaling
    assert 0 <= s.min_size <= s.desired <= s.max_size and s.max_size >= 1       # EKS accepts it
    assert s.desired <= p.max_size
    override, _ = ops.read_override(tags)
    if override is not None and override.active(at):
        low, high = ops.override_bounds(p)
        size = min(max(override.size, low), high)
        assert s.min_size == size and s.max_size == max(size, 1)
    else:
        assert (s.min_size, s.max_size) == ops.stack_bounds(p)
    if s.min_size <= now.desired <= s.max_size:
        assert s.desired == now.desired                     # the autoscaler's number is never overwritten
    # apply the action, then plan again at the same instant: nothing left to do
    g = group(p, now, tags)
    action = ops._action(p, g, goal, None)
    if action is not None:
        left = {k: v for k, v in tags.items() if k not in action.remove_tags}
        g = group(p, action.scaling or now, left)
    assert ops._action(p, g, ops.target(p, at, g.scaling, g.tags), None) is None


# ------------------------------------------------------------------------------------------------ actions

def test_plan_reconcile_changes_only_what_differs_and_skips_busy_groups(cfg):
    at = utc(2026, 3, 30, 12)                                     # Monday, inside the peak window
    groups = {
        "peak": group(cfg.pool("peak"), Scaling(2, 2, 2)),        # pinned by the old schedule: drift
        "base": group(cfg.pool("base"), Scaling(1, 3, 2)),        # autoscaler's choice: left alone
        "burst": group(cfg.pool("burst"), Scaling(0, 2, 0)),
        "block": group(cfg.pool("block"), Scaling(0, 2, 1), status="UPDATING"),
    }
    prices = {"peak": Price(63.296, 63.296)}
    actions = {a.pool: a for a in ops.plan_reconcile(cfg, at, groups, prices)}
    assert set(actions) == {"peak", "block"}
    assert actions["peak"].kind == "scale" and actions["peak"].scaling == Scaling(0, 2, 2)
    assert actions["peak"].hourly_saving_usd == 0 and not actions["peak"].scale_down
    assert actions["block"].kind == "skip" and actions["block"].scaling is None
    record = actions["peak"].record()
    assert (record["from"], record["to"], record["scaling"]) == (2, 2, {"min": 0, "max": 2, "desired": 2})


def test_a_pool_not_deployed_is_reported_and_the_others_are_handled(cfg):
    at = utc(2026, 3, 30, 12)
    groups = {"base": group(cfg.pool("base"), Scaling(0, 9, 2))}
    actions = {a.pool: a for a in ops.plan_reconcile(cfg, at, groups)}
    assert actions["base"].kind == "scale" and actions["base"].scaling == Scaling(1, 3, 2)
    assert {actions[p].kind for p in ("peak", "burst", "block")} == {"missing"}
    assert "not deployed" in actions["peak"].reason and not actions["peak"].changes


def test_a_degraded_group_can_still_be_resized():
    # a group that could not get capacity stays DEGRADED; its bounds must still be repairable
    # (aws/containers-roadmap#2326: a failed scale-out leaves the group DEGRADED)
    p = pool(sched=schedule())
    a = ops._action(p, group(p, Scaling(2, 2, 2), status="DEGRADED"),
                    ops.target(p, utc(2026, 3, 29, 12), Scaling(2, 2, 2), {}), None)
    assert a.kind == "scale" and a.scaling == Scaling(0, 2, 2)


def test_hold_changes_nothing():
    p = pool(sched=schedule())
    a = ops._action(p, group(p, Scaling(2, 2, 2), Override(2, utc(2026, 1, 1), "x").tags()),
                    ops.Target(Scaling(0, 2, 0), "outside windows", True), Price(10, 10))
    assert a.scale_down and a.changes and a.hourly_saving_usd == 20
    held = ops.hold(a, "3 requests in flight")
    assert held.kind == "hold" and not held.changes and held.scaling is None and held.remove_tags == ()
    assert "not scaled down: 3 requests in flight" in held.reason


def test_plan_override_sets_tags_and_scaling_and_is_stable():
    p = pool(max_size=2, sched=schedule())
    at = utc(2026, 3, 30, 21)
    o = Override(2, at + timedelta(hours=3), "ops")
    action = ops.plan_override(p, at, group(p, Scaling(0, 2, 0)), o)
    assert action.kind == "scale" and action.scaling == Scaling(2, 2, 2) and action.set_tags == o.tags()
    assert ops.plan_override(p, at, group(p, Scaling(2, 2, 2), o.tags()), o) is None
    # a status while it holds: the override is what holds, and its end is the next step
    row = ops.status_row(p, at, group(p, Scaling(2, 2, 2), o.tags()), None)
    assert row["holds"] == "override" and row["want"] == 2
    assert row["next"][0]["at"] == "2026-03-31T00:00:00Z" and "override by ops ends" in row["next"][0]["reason"]


# ------------------------------------------------------------------------------------------------ sweep

def test_sweep_reports_and_never_writes_a_size(cfg):
    sunday = utc(2026, 3, 29, 12)
    long_ago = sunday - timedelta(days=1)
    groups = {
        "peak": group(cfg.pool("peak"), Scaling(0, 2, 1), modified=long_ago),
        "base": group(cfg.pool("base"), Scaling(1, 3, 1), modified=long_ago),
        "burst": group(cfg.pool("burst"), Scaling(0, 2, 2), modified=long_ago),
        "block": group(cfg.pool("block"), Scaling(1, 1, 1), Override(1, sunday + timedelta(hours=2),
                                                                     "ops").tags(), modified=long_ago),
    }
    prices = {"peak": Price(63.0, 63.0), "burst": Price(1.0, 0.4)}
    actions = ops.plan_sweep(cfg, sunday, groups, {"burst": Activity(0, 0)}, {"burst": 1}, prices)
    assert not any(a.changes for a in actions)
    notes = [a for a in actions if a.pool == "burst"]
    assert any("idle" in a.reason and a.hourly_saving_usd == pytest.approx(0.8) for a in notes)
    assert any(a.hourly_saving_usd == pytest.approx(0.6) for a in notes)      # 1 on-demand node x (1.0 - 0.4)


def test_idle_needs_history_and_metrics_and_no_series_is_unknown(cfg):
    p = cfg.pool("burst")
    at = utc(2026, 3, 30, 12)
    recent = group(p, Scaling(0, 2, 1), modified=at - timedelta(minutes=10))
    assert ops._idle(p, at, recent, Activity(0, 0), None) is None            # resized 10 min ago
    old = group(p, Scaling(0, 2, 1), modified=at - timedelta(hours=3))
    assert ops._idle(p, at, old, Activity(1, 0), None) is None               # a request in flight
    assert ops._idle(p, at, old, Activity(0, 5), None) is None               # requests finished lately
    note = ops._idle(p, at, old, Activity(None, None), None)
    assert note.kind == "note" and "idle unknown" in note.reason and not note.changes
