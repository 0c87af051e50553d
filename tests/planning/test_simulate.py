"""`fleet simulate`: the shipped stacks run a week clean, and each violation kind shows when the rendered
control loops would really misbehave (each test breaks the render or the stack the way a regression would)."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from infra.planning.plan import build_plan
from infra.planning.simulate import simulate
from infra.planning.simulate.inputs import from_render
from infra.planning.simulate.traffic import TrafficError, from_rows, parse_csv
from infra.stack.config import load_stack_file
from scripts import fleet
from scripts.render import render
from tests.cli.test_plan_cli import _broken
from tests.conftest import STACKS, named

START = datetime.fromisoformat("2026-12-07T00:00:00+08:00")     # a Monday in Asia/Shanghai
KINDS = {"scale-down-under-load", "not-ready-at-window-start", "flap", "fallback-with-capacity", "conflict"}


def run(records, cfg, days=2, rpm=None, **kw):
    plan = build_plan(cfg)
    sim = from_render(records, cfg, plan)
    minutes = int(days * 1440)
    rpm = rpm if rpm is not None else {m.name: [0.0] * minutes for m in cfg.models}
    result, _ = simulate(sim, cfg, START, days, rpm, **kw)
    return result


def steady(cfg, days, **rates):
    """A constant rate per model, day and night (so scale-downs happen under load)."""
    minutes = int(days * 1440)
    return {m.name: [float(rates.get(m.name, 0))] * minutes for m in cfg.models}


def kinds(result) -> set[str]:
    return {v["kind"] for v in result["violations"]}


@pytest.fixture(scope="module")
def prod():
    path = STACKS / "Pulumi.prod.yaml"
    return load_stack_file(path), render(path)


# ------------------------------------------------------------------------------------------------ shipped stacks

@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_shipped_stacks_simulate_a_week_without_violation(stack, capsys):
    """The exact command the project's stop hook runs, and the keys it reads."""
    started = time.process_time()
    code = fleet.main(["simulate", "--stack", stack, "--start", "2026-12-07T00:00:00+08:00", "--days", "7", "--json"])
    spent = time.process_time() - started
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result["violations"]
    assert result["violations"] == []
    assert result["requests"] > 0 and result["fallbackRequests"] == 0
    assert {"stack", "start", "days", "costUSD", "planCostUSD", "gpuHours", "coldStarts"} <= set(result)
    assert result["stack"] == stack and result["days"] == 7
    # the week costs about what the plan says (the plan does not count the cooldown after each window)
    assert 0.9 * result["planCostUSD"] <= result["costUSD"] <= 1.15 * result["planCostUSD"]
    assert spent < 5, f"rendering and simulating a week of {stack} took {spent:.1f} s of CPU"


def test_a_lunch_gap_shorter_than_the_cold_start_is_merged_and_the_pool_stays_up(tmp_path, capsys):
    """prod with a fixed 45 min pre-warm: its 12:00-12:45 gap is shorter than the cold start plus the
    scale-down delays, so the planner merges it and the pool stays up over lunch (no reload)."""
    path = _broken(tmp_path, lambda c: c["llm-fleet:pools"][2]["schedule"].update(prewarmMinutes=45))
    fleet.main(["simulate", "--stack-file", str(path), "--start", START.isoformat(), "--days", "1"])
    out = capsys.readouterr().out
    peak = out.split("h200-peak")[1].splitlines()[1]
    assert peak.split()[2][17:39] == "2" * 22                  # Ready by 08:45, up through 12:00-13:30
    assert "gap 12:00-12:45" in out and "violations: 0" in out


# ------------------------------------------------------------------------------------------------ each violation

def test_scale_down_under_load_without_the_prestop_drain(prod):
    cfg, records = prod
    rpm = steady(cfg, 2, **{"glm-5-1": 300})
    assert "scale-down-under-load" not in kinds(run(records, cfg, rpm=rpm))
    broken = copy.deepcopy(records)
    container = named(broken, "serving-glm-5-1-h200-peak")["inputs"]["spec"]["template"]["spec"]["containers"][0]
    del container["lifecycle"]
    found = [v for v in run(broken, cfg, rpm=rpm)["violations"] if v["kind"] == "scale-down-under-load"]
    assert found and found[0]["pool"] == "h200-peak" and "no preStop" in found[0]["detail"]


def test_not_ready_at_window_start_when_prewarm_is_far_below_the_cold_start(tmp_path):
    path = _broken(tmp_path, lambda c: c["llm-fleet:pools"][2]["schedule"].update(prewarmMinutes=5))
    cfg = load_stack_file(path)
    assert any("prewarmMinutes 5 is shorter than the modeled cold start" in n for n in build_plan(cfg).notes)
    found = [v for v in run(render(path), cfg)["violations"] if v["kind"] == "not-ready-at-window-start"]
    assert [v["pool"] for v in found] == ["h200-peak"] * len(found) and found
    assert found[0]["at"].startswith("2026-12-07T01:00")          # 09:00 Shanghai


def test_the_default_prewarm_is_enough_for_the_window(tmp_path):
    path = _broken(tmp_path, lambda c: c["llm-fleet:pools"][2]["schedule"].pop("prewarmMinutes"))
    cfg = load_stack_file(path)
    plan = build_plan(cfg)
    cold = max(d.load.seconds for d in plan.deployments_on("h200-peak")) / 60
    assert cold < plan.schedule("h200-peak").prewarm_minutes < cold + 5           # cold start, poll and ramp
    assert "not-ready-at-window-start" not in kinds(run(render(path), cfg))


def _unmerged_lunch(records):
    """The render before the planner merged the gap: two cron windows, 12:00 end and 12:45 pre-warm."""
    broken = copy.deepcopy(records)
    scaler = named(broken, "serving-glm-5-1-h200-peak-scaler")["inputs"]["spec"]
    crons = [t for t in scaler["triggers"] if t["type"] == "cron"]
    first, *_ = crons
    second = copy.deepcopy(first)
    first["metadata"]["end"] = "0 12 * * MON,TUE,WED,THU,FRI"
    second["name"], second["metadata"]["start"] = "window-1", "45 12 * * MON,TUE,WED,THU,FRI"
    scaler["triggers"] = [first, second] + [t for t in scaler["triggers"] if t["type"] != "cron"]
    return broken


def test_flap_when_a_gap_is_shorter_than_the_cold_start(prod):
    cfg, records = prod
    assert "flap" not in kinds(run(records, cfg))
    found = [v for v in run(_unmerged_lunch(records), cfg)["violations"] if v["kind"] == "flap"]
    assert found and {v["pool"] for v in found} == {"h200-peak"}
    assert found[0]["at"].startswith("2026-12-07T04:45")          # 12:45 Shanghai


def test_fallback_with_capacity_when_the_gateway_misses_a_ready_replica(prod):
    cfg, records = prod
    rpm = steady(cfg, 1, **{"glm-5-1": 50})
    clean = run(records, cfg, days=1, rpm=rpm)
    assert clean["fallbackRequests"] == 0 and "fallback-with-capacity" not in kinds(clean)
    # the base placement's pods fall out of the model's Service (a label lost in a refactor): Ready, unrouted
    broken = copy.deepcopy(records)
    labels = named(broken, "serving-glm-5-1-h200-base")["inputs"]["spec"]["template"]["metadata"]["labels"]
    del labels["llm-fleet/serves"]
    result = run(broken, cfg, days=1, rpm=rpm)
    assert result["fallbackRequests"] > 0
    found = [v for v in result["violations"] if v["kind"] == "fallback-with-capacity"]
    assert found and "glm-5-1-h200-base" in found[0]["detail"]


def test_conflict_when_a_schedule_writes_the_size_the_autoscaler_owns(prod):
    """The old design: an EventBridge action sets desired 0 while KEDA still holds the replicas."""
    cfg, records = prod
    assert "conflict" not in kinds(run(records, cfg))
    broken = copy.deepcopy(records)
    broken.append({"type": "aws:scheduler/schedule:Schedule", "name": "gpu-h200-peak-01-end", "parent": "gpu",
                   "inputs": {"scheduleExpression": "cron(0 12 ? * MON-FRI *)",
                              "scheduleExpressionTimezone": "Asia/Shanghai",
                              "target": {"input": json.dumps({"ClusterName": "llm-fleet-prod",
                                                              "NodegroupName": "llm-fleet-prod-h200-peak-20261202",
                                                              "ScalingConfig": {"MinSize": 0, "MaxSize": 2,
                                                                                "DesiredSize": 0}})}}})
    result = run(broken, cfg)
    found = [v for v in result["violations"] if v["kind"] == "conflict"]
    assert found and found[0]["pool"] == "h200-peak" and "eventbridge" in found[0]["detail"]
    assert "flap" in kinds(result)


def test_spot_first_and_on_demand_fallback_when_spot_cannot_launch(tmp_path):
    """One workload may land on the spot pool or the on-demand peak pool: the priority expander tries spot
    first; a spot group that cannot launch is backed off and the on-demand pool takes the replicas."""
    def peak_elastic_base_fixed(c):
        c["llm-fleet:pools"][2].pop("schedule")                                  # an elastic on-demand pool
        c["llm-fleet:pools"][0]["maxSize"] = 1                                   # and the base pool full
        c["llm-fleet:models"][0]["placements"][0]["replicas"]["max"] = 1
    path = _broken(tmp_path, peak_elastic_base_fixed)
    cfg, records = load_stack_file(path), render(path)
    saturday = datetime.fromisoformat("2026-12-12T00:00:00+08:00")
    rpm = {m.name: [2000.0 if m.name == "glm-5-1" else 0.0] * 1440 for m in cfg.models}   # far above base
    sim = from_render(records, cfg, build_plan(cfg))
    quiet, _ = simulate(sim, cfg, saturday, 1, rpm)
    assert quiet["gpuHours"]["h200-spot"] > 0 and quiet["gpuHours"]["h200-peak"] == 0
    day = saturday.astimezone(UTC)
    out, _ = simulate(sim, cfg, saturday, 1, rpm, spot_unavailable=[(day - timedelta(days=2), day + timedelta(days=2))])
    assert out["gpuHours"]["h200-spot"] == 0 and out["failedSpotLaunches"] > 0
    assert out["gpuHours"]["h200-peak"] > 0                                   # the on-demand fallback
    assert {c["pool"] for c in out["coldStarts"]} == {"h200-peak"}


def test_shipped_prod_falls_back_from_spot_to_the_base_pool():
    """The shipped prod stack, not a variant: with spot unavailable all day, the replicas the queue asks for
    land on h200-base (it may grow to 3), never on the scheduled peak pool, and nothing goes to the API."""
    path = STACKS / "Pulumi.prod.yaml"
    cfg, records = load_stack_file(path), render(path)
    saturday = datetime.fromisoformat("2026-12-12T00:00:00+08:00")                # peak is off all day
    rpm = {m.name: [2000.0 if m.name == "glm-5-1" else 0.0] * 1440 for m in cfg.models}
    sim = from_render(records, cfg, build_plan(cfg))
    with_spot, _ = simulate(sim, cfg, saturday, 1, rpm)
    day = saturday.astimezone(UTC)
    outage = [(day - timedelta(days=1), day + timedelta(days=2))]
    no_spot, _ = simulate(sim, cfg, saturday, 1, rpm, spot_unavailable=outage)
    base_alone = 24 * 8                                                          # one p5en all day
    assert with_spot["gpuHours"]["h200-spot"] > 0 and with_spot["gpuHours"]["h200-base"] == base_alone
    assert no_spot["gpuHours"]["h200-spot"] == 0 and no_spot["failedSpotLaunches"] > 0
    assert no_spot["gpuHours"]["h200-base"] > base_alone                         # the on-demand fallback
    assert no_spot["gpuHours"]["h200-peak"] == 0 and no_spot["fallbackRequests"] == 0
    assert no_spot["violations"] == []


# ------------------------------------------------------------------------------------------------ inputs

def test_traffic_csv_holds_each_rate_until_the_next_row():
    rows = parse_csv("time,model,rpm\n2026-12-07T09:00+08:00,a,10\n2026-12-07T09:02+08:00,a,0\n", ["a"])
    profile = from_rows(rows, ["a"], datetime.fromisoformat("2026-12-07T08:59+08:00"), 5)
    assert profile.rpm["a"] == [0, 10, 10, 0, 0]
    with pytest.raises(TrafficError, match="line 2: model 'b' is not in the stack"):
        parse_csv("time,model,rpm\n2026-12-07T09:00+08:00,b,1\n", ["a"])
    with pytest.raises(TrafficError, match="no UTC offset"):
        parse_csv("time,model,rpm\n2026-12-07T09:00,a,1\n", ["a"])


def test_simulate_user_errors_exit_2(capsys, tmp_path):
    assert fleet.main(["simulate", "--stack", "prod", "--start", "2026-12-07T00:00"]) == 2
    assert "no UTC offset" in capsys.readouterr().err
    bad = tmp_path / "t.csv"
    bad.write_text("when,model,rpm\n")
    assert fleet.main(["simulate", "--stack", "prod", "--start", START.isoformat(), "--traffic", str(bad)]) == 2
    assert "header must be `time,model,rpm`" in capsys.readouterr().err


def test_every_kind_is_covered_here():
    import inspect
    import sys
    source = inspect.getsource(sys.modules[__name__])
    assert all(f'"{kind}"' in source for kind in KINDS)


def test_the_priority_expander_is_read_from_the_render(prod):
    cfg, records = prod
    pools = {p.name: p.priority for p in from_render(records, cfg, build_plan(cfg)).pools}
    assert pools["h200-spot"] > pools["h200-peak"] == pools["h200-base"] > 1      # spot first, then on-demand
