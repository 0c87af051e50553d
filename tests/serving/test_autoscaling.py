"""KEDA ScaledObjects: cron windows from the same Schedule the node pools follow, queue triggers,
scale-to-zero and cooldowns."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning.plan import build_plan
from infra.planning.schedule import intervals
from infra.serving import autoscaling
from infra.stack.config import parse_config
from infra.stack.windows import DAYS, Schedule, Window

PROM = "http://prometheus:9090"


def prod(stack_values):
    plan = build_plan(parse_config(stack_values("prod"), "prod"))
    return plan.config, plan              # `prewarmMinutes: auto` resolved, as the program runs it


def _start(hour: int, minute: int, lead: int) -> str:
    """KEDA cron start: the window start less the pre-warm lead."""
    at = hour * 60 + minute - lead
    return f"{at % 60} {at // 60} * * MON,TUE,WED,THU,FRI"


def dep_on(plan, model, pool):
    return next(d for d in plan.deployments if d.model == model and d.pool == pool)


def scaled(cfg, dep, **kw):
    args = dict(kind="Deployment", api_version="apps/v1", schedule=cfg.pool(dep.pool).schedule,
                prometheus_url=PROM, queue_target=5, wake_on_demand=False, labels={})
    args.update(kw)
    return autoscaling.scaled_object(f"{dep.model}-{dep.pool}", "llm-fleet", dep, **args)


def _parse(cron: str) -> tuple[int, int, set[int]]:
    minute, hour, _, _, days = cron.split()
    return int(minute), int(hour), {DAYS.index(d.lower()) for d in days.split(",")}


def _fires(cron: str, local: datetime) -> bool:
    minute, hour, days = _parse(cron)
    return local.minute == minute and local.hour == hour and local.weekday() in days


def test_peak_pool_windows_become_cron_triggers_with_prewarm(stack_values):
    cfg, plan = prod(stack_values)
    dep = dep_on(plan, "glm-5-1", "h200-peak")
    so = scaled(cfg, dep)
    crons = [t for t in so["spec"]["triggers"] if t["type"] == "cron"]
    lead = cfg.pool("h200-peak").schedule.prewarm_minutes
    assert lead > 0
    assert [t["metadata"] for t in crons] == [
        {"timezone": "Asia/Shanghai", "start": _start(9, 0, lead), "end": "0 12 * * MON,TUE,WED,THU,FRI",
         "desiredReplicas": "2"},
        {"timezone": "Asia/Shanghai", "start": _start(13, 30, lead), "end": "0 19 * * MON,TUE,WED,THU,FRI",
         "desiredReplicas": "2"}]
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["maxReplicaCount"] == 2
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "glm-5-1-h200-peak"}


def test_cron_starts_match_the_schedule_intervals(stack_values):
    """Every pre-warmed window start that infra.schedule computes (UTC, DST-exact) is an instant where
    one cron trigger's start fires in the pool's zone, and every end likewise."""
    cfg, plan = prod(stack_values)
    pool = cfg.pool("h200-peak")
    triggers = autoscaling.cron_triggers(pool.schedule, dep_on(plan, "glm-5-1", "h200-peak"))
    start = datetime(2026, 3, 23, tzinfo=UTC)
    for interval in intervals(pool.schedule, start, start + timedelta(days=14)):
        local_start = interval.start.astimezone(pool.schedule.zone)
        local_end = interval.end.astimezone(pool.schedule.zone)
        assert any(_fires(t["metadata"]["start"], local_start) for t in triggers), local_start
        assert any(_fires(t["metadata"]["end"], local_end) for t in triggers), local_end


def test_queue_trigger_and_slow_scale_down(stack_values):
    cfg, plan = prod(stack_values)
    dep = dep_on(plan, "glm-5-1", "h200-spot")
    so = scaled(cfg, dep)
    (queue,) = so["spec"]["triggers"]
    assert queue["type"] == "prometheus" and queue["metadata"]["serverAddress"] == PROM
    assert queue["metadata"]["query"] == (
        'sum(vllm:num_requests_waiting{namespace="llm-fleet",model_name="glm-5-1"}) or vector(0)')
    assert queue["metadata"]["threshold"] == "5"
    assert so["spec"]["cooldownPeriod"] >= 1800               # a 750 GB model must not flap
    down = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 1800 and down["policies"][0]["value"] == 1


def test_fixed_size_placements_get_no_scaled_object(stack_values):
    values = stack_values("prod")
    values["llm-fleet:models"][0]["placements"][0]["replicas"]["max"] = 1       # base pinned at min = max = 1
    plan = build_plan(parse_config(values, "prod"))
    cfg = plan.config
    assert scaled(cfg, dep_on(plan, "glm-5-1", "h200-base")) is None     # min = max = 1, no schedule
    small = dep_on(plan, "qwen2-5-7b", "l40s-small")
    assert scaled(cfg, small, prometheus_url=None) is None                # nothing could change its size
    assert autoscaling.cooldown_seconds(small) == 600


def test_scale_to_zero_model_wakes_on_gateway_traffic(stack_values):
    cfg = parse_config(stack_values("staging"), "staging")
    plan = build_plan(cfg)
    dep = dep_on(plan, "llama-3-1-8b", "l4-small")
    so = scaled(cfg, dep, wake_on_demand=True)
    demand = next(t for t in so["spec"]["triggers"] if t["name"] == "gateway-demand")
    assert 'llmfleet_gateway_requests_total{model="llama-3-1-8b"}' in demand["metadata"]["query"]
    assert demand["metadata"]["activationThreshold"] == "0"
    assert so["spec"]["minReplicaCount"] == 0
    lws = scaled(cfg, dep, kind="LeaderWorkerSet", api_version="leaderworkerset.x-k8s.io/v1")
    assert lws["spec"]["scaleTargetRef"]["kind"] == "LeaderWorkerSet"


def test_staging_business_hours_scale_the_big_model_from_zero(stack_values):
    plan = build_plan(parse_config(stack_values("staging"), "staging"))
    cfg = plan.config
    so = scaled(cfg, dep_on(plan, "glm-5-1", "h200-business"))
    cron = next(t for t in so["spec"]["triggers"] if t["type"] == "cron")
    lead = cfg.pool("h200-business").schedule.prewarm_minutes
    assert cron["metadata"] == {"timezone": "Asia/Shanghai", "start": _start(9, 0, lead),
                                "end": "0 19 * * MON,TUE,WED,THU,FRI", "desiredReplicas": "1"}


def test_prewarm_across_midnight_and_window_to_midnight():
    w = Window(days=(0,), start=time(0, 30), end=time.max, size=1)       # Monday 00:30-24:00
    start, end = autoscaling.window_bounds(w, 45)
    assert start == "45 23 * * SUN" and end == "0 0 * * TUE"


@settings(max_examples=200, deadline=None)
@given(days=st.sets(st.integers(0, 6), min_size=1), start_min=st.integers(0, 24 * 60 - 2),
       length=st.integers(1, 24 * 60), prewarm=st.integers(0, 720))
def test_window_bounds_agree_with_schedule_intervals(days, start_min, length, prewarm):
    end_min = min(24 * 60, start_min + length)
    start = time(start_min // 60, start_min % 60)
    end = time.max if end_min == 24 * 60 else time(end_min // 60, end_min % 60)
    window = Window(days=tuple(sorted(days)), start=start, end=end, size=1)
    schedule = Schedule("UTC", (window,), 0, prewarm)
    cron_start, cron_end = autoscaling.window_bounds(window, prewarm)
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    for interval in intervals(schedule, t0, t0 + timedelta(days=8)):
        assert _fires(cron_start, interval.start)
        assert _fires(cron_end, interval.end)


def test_one_workload_per_model_scales_on_the_queue_and_spot_falls_back_to_on_demand(rendered, tmp_path):
    """10 waiting requests asked each placement for replicas when all scaled on the same sum; now only the
    spot workload does, and its pods may land on an elastic unscheduled on-demand pool (spot first, by the
    expander); never on a scheduled pool, whose windows need its nodes."""
    records = rendered("prod")
    scalers = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in records
               if r["type"].endswith("ScaledObject")}
    queue = {name for name, spec in scalers.items() if any(t["name"] == "queue" for t in spec["triggers"])}
    assert queue == {"glm-5-1-h200-spot", "qwen2-5-7b-l40s-small"}
    assert {t["type"] for t in scalers["glm-5-1-h200-peak"]["triggers"]} == {"cron"}

    def spot_pod(records):
        return next(r for r in records if r["type"] == "kubernetes:apps/v1:Deployment"
                    and r["inputs"]["metadata"]["name"] == "glm-5-1-h200-spot")["inputs"]["spec"]["template"]["spec"]

    def pools_of(pod):
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        (term,) = terms["nodeSelectorTerms"]
        (expr,) = term["matchExpressions"]
        assert expr["key"] == "llm-fleet/pool" and expr["operator"] == "In"
        assert "llm-fleet/pool" not in pod["nodeSelector"]
        assert {t.get("value") for t in pod["tolerations"]} >= set(expr["values"])
        return expr["values"]

    # shipped prod: the base pool can grow (1..3), the peak pool is scheduled
    assert pools_of(spot_pod(records)) == ["h200-spot", "h200-base"]
    from tests.cli.test_plan_cli import _broken
    unscheduled = spot_pod(rendered(_broken(tmp_path, lambda c: c["llm-fleet:pools"][2].pop("schedule"))))
    assert pools_of(unscheduled) == ["h200-spot", "h200-base", "h200-peak"]

    def fixed_base(c):
        c["llm-fleet:pools"][0]["maxSize"] = 1
        c["llm-fleet:models"][0]["placements"][0]["replicas"]["max"] = 1
    (tmp_path / "pinned").mkdir()                 # renders are cached by path: a second file, a second path
    pinned = spot_pod(rendered(_broken(tmp_path / "pinned", fixed_base)))
    assert "affinity" not in pinned and pinned["nodeSelector"]["llm-fleet/pool"] == "h200-spot"   # nowhere to go


def test_cron_triggers_follow_the_planned_schedule_with_the_lunch_gap_merged(rendered, tmp_path):
    from tests.cli.test_plan_cli import _broken
    path = _broken(tmp_path, lambda c: c["llm-fleet:pools"][2]["schedule"].update(prewarmMinutes=45))
    peak = next(r for r in rendered(path) if r["type"].endswith("ScaledObject")
                and r["inputs"]["metadata"]["name"] == "glm-5-1-h200-peak")["inputs"]["spec"]
    crons = [t["metadata"] for t in peak["triggers"] if t["type"] == "cron"]
    assert [(c["start"], c["end"]) for c in crons] == [("15 8 * * MON,TUE,WED,THU,FRI", "0 19 * * MON,TUE,WED,THU,FRI")]
