"""The schedule a pool follows: pre-warm defaulted to the cold start, short gaps merged with a note."""

from __future__ import annotations

import dataclasses
from datetime import time

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning import windows_plan as wp
from infra.planning.plan import build_plan
from infra.stack.config import load_stack_file
from infra.stack.windows import Schedule, Window
from tests.conftest import STACKS
from tests.planning.test_fleetops import pool

MON_FRI = (0, 1, 2, 3, 4)


class Dep:
    """The figures windows_plan reads from a DeploymentPlan."""
    def __init__(self, load_seconds: int, weights_gb: float = 756, max_replicas: int = 2):
        self.load = dataclasses.make_dataclass("L", ["seconds"])(load_seconds)
        self.weights_gb = weights_gb
        self.replicas_per_node, self.max_replicas = 1, max_replicas


def sched(windows, prewarm=45, auto=False):
    return Schedule("Asia/Shanghai", tuple(windows), 0, prewarm, auto)


def test_prod_lunch_gap_is_merged_with_a_note_naming_the_gap_and_the_cold_start(tmp_path):
    from tests.cli.test_plan_cli import _broken
    path = _broken(tmp_path, lambda c: c["llm-fleet:pools"][2]["schedule"].update(prewarmMinutes=45))
    plan = build_plan(load_stack_file(path))
    peak = plan.schedule("h200-peak")
    assert [(w.start, w.end, w.size) for w in peak.windows] == [(time(9), time(19), 2)]
    cold = -(-wp.pool_cold_start_seconds(plan.deployments_on("h200-peak")) // 60)
    [note] = [n for n in plan.notes if "gap" in n]
    assert "12:00-12:45" in note and f"modeled cold start ({cold} min)" in note
    # the cost follows the merged schedule: 10 h a weekday plus the pre-warm, not 8.5 h
    assert plan.pool("h200-peak").monthly_node_hours > 2 * 10 * 21
    # with `auto` (the shipped stack) the lead is short enough that lunch is worth a scale-down
    shipped = build_plan(load_stack_file(STACKS / "Pulumi.prod.yaml"))
    assert len(shipped.schedule("h200-peak").windows) == 2 and not [n for n in shipped.notes if "gap" in n]


def test_a_long_gap_is_kept_and_a_short_one_merged():
    dep = Dep(977)                                   # + 300 s node boot: 22 min; + 30 + 10 min of delays
    long_gap = [Window(MON_FRI, time(9), time(11), 2), Window(MON_FRI, time(14), time(18), 2)]
    kept, notes = wp.effective_schedule(pool(max_size=2, sched=sched(long_gap)), [dep])
    assert kept.windows == tuple(long_gap) and not [n for n in notes if "gap" in n]
    short = [Window(MON_FRI, time(9), time(12), 1), Window(MON_FRI, time(13, 30), time(19), 2)]
    merged, notes = wp.effective_schedule(pool(max_size=2, sched=sched(short)), [dep])
    assert merged.windows == (Window(MON_FRI, time(9), time(19), 2),)
    assert any("gap 12:00-12:45 on mon,tue,wed,thu,fri" in n and "(22 min)" in n for n in notes)


def test_prewarm_defaults_to_the_cold_start_and_less_gets_a_note():
    windows = [Window(MON_FRI, time(9), time(18), 1)]
    dep = Dep(977)                                   # 300 s node + 977 s engine + one 30 s KEDA poll
    default, notes = wp.effective_schedule(pool(max_size=1, sched=sched(windows, 0, auto=True)), [dep])
    assert default.prewarm_minutes == 22 and any("prewarmMinutes auto = 22 min" in n for n in notes)
    two = [Window(MON_FRI, time(9), time(18), 2)]    # the HPA adds the second replica 2 min after the first
    ramp, _ = wp.effective_schedule(pool(max_size=2, sched=sched(two, 0, auto=True)), [dep])
    assert ramp.prewarm_minutes == 24
    short, notes = wp.effective_schedule(pool(max_size=1, sched=sched(windows, 5)), [dep])
    assert short.prewarm_minutes == 5 and any("prewarmMinutes 5 is shorter than" in n for n in notes)
    more, notes = wp.effective_schedule(pool(max_size=1, sched=sched(windows, 60)), [dep])
    assert more.prewarm_minutes == 60 and not notes


def test_a_stack_without_prewarm_gets_the_cold_start(tmp_path):
    import re
    text = re.sub(r"\n *prewarmMinutes: .*", "", (STACKS / "Pulumi.staging.yaml").read_text())
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text(text)
    plan = build_plan(load_stack_file(path))
    deps = plan.deployments_on("h200-business")
    lead = -(-wp.ready_lead_seconds(deps, plan.schedule("h200-business")) // 60)
    assert plan.schedule("h200-business").prewarm_minutes == lead >= wp.pool_cold_start_seconds(deps) / 60


@settings(max_examples=200, deadline=None)
@given(starts=st.lists(st.integers(0, 23 * 60), min_size=1, max_size=4, unique=True),
       length=st.integers(15, 240), cold=st.integers(60, 3600), prewarm=st.integers(0, 90))
def test_merging_never_leaves_a_short_gap_and_never_drops_a_window_minute(starts, length, cold, prewarm):
    windows, last_end = [], -1
    for s in sorted(starts):
        if s < last_end:
            continue
        e = min(s + length, 24 * 60)
        windows.append(Window(MON_FRI, time(s // 60, s % 60), time.max if e >= 1440 else time(e // 60, e % 60), 1))
        last_end = e
    dep = Dep(cold, weights_gb=10)
    out, _ = wp.effective_schedule(pool(max_size=2, sched=sched(windows, prewarm)), [dep])
    threshold = -(-wp.pool_cold_start_seconds([dep]) // 60) + -(-wp.release_seconds([dep]) // 60)
    spans = sorted((wp._minutes(w.start), wp._minutes(w.end)) for w in out.windows if 0 in w.days)
    for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False):
        assert b_start - out.prewarm_minutes - a_end >= threshold or b_start - out.prewarm_minutes <= a_end
    for w in windows:
        assert any(s <= wp._minutes(w.start) and wp._minutes(w.end) <= e for s, e in spans)
