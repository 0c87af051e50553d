"""What `fleet simulate` reads: the rendered stack (the records `fleet render` prints: node groups, the
autoscaler's values and priority expander, engine workloads, KEDA ScaledObjects, EventBridge schedules,
the gateway's routes) plus the plan (cold start, replica capacity, prices, windows) and the stack file
(the jobs' cron). Pure: plain dicts in, frozen values out. A number the render holds is read from it,
never recomputed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from infra.planning.plan import Plan
from infra.planning.sizing import DeploymentPlan
from infra.planning.windows_plan import (
    NODE_BOOT_SECONDS,
    SCALE_DOWN_UNNEEDED_SECONDS,
    cold_start,
    pool_cold_start_seconds,
)
from infra.stack.names import LABEL_MODEL, LABEL_POOL
from infra.stack.spec import StackConfig
from infra.stack.windows import Schedule

# A request as the simulator sees it: how long it holds a slot, and how many KV tokens it takes (the
# replica's concurrent slots are its KV budget over this). Stated assumptions, printed in the notes.
REQUEST_SECONDS = 20
TOKENS_PER_REQUEST = 4096
# How long cluster-autoscaler takes to see that a spot launch failed (the ASG's activity), and how
# long it then backs the group off before trying it again (its defaults: 5 min initial backoff).
SPOT_FAILURE_SECONDS = 180
BACKOFF_SECONDS = 300

NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
SCHEDULE = "aws:scheduler/schedule:Schedule"
HELM = "kubernetes:helm.sh/v3:Release"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
QUEUE_GAUGES = ("num_requests_waiting", "num_queue_reqs")       # vLLM, SGLang (infra.serving.autoscaling)
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")


class InputError(ValueError):
    """The render lacks something the simulation needs (names what and where)."""


@dataclass(frozen=True)
class PoolIn:
    name: str
    node_group: str
    capacity: str                    # on-demand | spot | capacity-block
    min_size: int
    max_size: int
    desired: int
    priority: int                    # the priority expander's number for this group (higher first)
    hourly_usd: float                # paid per node-hour
    gpus_per_node: int
    boot_seconds: int
    cold_start_seconds: int          # the slowest replica on the pool, node included
    schedule: Schedule | None        # the windows the plan gives the pool (for the readiness check)


@dataclass(frozen=True)
class CronTrigger:
    timezone: str
    start: str
    end: str
    desired: int


@dataclass(frozen=True)
class Scaler:
    """A KEDA ScaledObject with its HPA behaviour, as rendered."""
    min_replicas: int
    max_replicas: int
    polling_seconds: int
    cooldown_seconds: int
    down_window_seconds: int
    down_pods: int
    down_period_seconds: int
    up_window_seconds: int
    up_pods: int
    up_period_seconds: int
    crons: tuple[CronTrigger, ...]
    queue_threshold: float | None    # waiting requests per replica; None: no queue trigger
    queue_models: tuple[str, ...]    # the models whose waiting requests the query sums
    wake: bool                       # the gateway-demand trigger (activation from zero)


@dataclass(frozen=True)
class WorkloadIn:
    name: str
    model: str
    pools: tuple[str, ...]           # pools its pods may land on (nodeSelector / node affinity)
    replicas: int                    # the rendered spec.replicas (its size with no ScaledObject)
    nodes_per_replica: int
    replicas_per_node: int
    engine_seconds: int
    capacity_rpm: float
    grace_seconds: int
    drains: bool                     # a preStop hook that waits for in-flight requests
    scaler: Scaler | None


@dataclass(frozen=True)
class ScheduleAction:
    """An EventBridge schedule that writes a node group's scaling config."""
    name: str
    pool: str
    cron: str
    timezone: str
    min_size: int | None
    max_size: int | None
    desired: int | None


@dataclass(frozen=True)
class SimInput:
    stack: str
    pools: tuple[PoolIn, ...]
    workloads: tuple[WorkloadIn, ...]
    actions: tuple[ScheduleAction, ...]
    routes: Mapping[str, tuple[str, ...]]    # model -> workloads the gateway sends it to
    fallbacks: frozenset[str]                # models with a managed-API fallback
    unneeded_seconds: int
    reconcile_cron: str | None
    plan_monthly_usd: float


def _by_type(records: Sequence[Mapping[str, Any]], typ: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r["type"] == typ]


def _duration(text: str | None, default: int) -> int:
    """Go durations as the autoscaler takes them: 10m0s, 25m, 90s."""
    if not text:
        return default
    parts = re.findall(r"(\d+)([hms])", str(text))
    if not parts:
        return default
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _autoscaler(records: Sequence[Mapping[str, Any]]) -> tuple[int, dict[str, int]]:
    unneeded, patterns = SCALE_DOWN_UNNEEDED_SECONDS, {}
    for r in _by_type(records, HELM):
        if r["inputs"].get("chart") == "cluster-autoscaler":
            args = (r["inputs"].get("values") or {}).get("extraArgs") or {}
            unneeded = _duration(args.get("scale-down-unneeded-time"), SCALE_DOWN_UNNEEDED_SECONDS)
    for r in _by_type(records, CONFIGMAP):
        data = r["inputs"].get("data") or {}
        if r["inputs"].get("metadata", {}).get("name") == "cluster-autoscaler-priority-expander":
            for prio, regexes in (yaml.safe_load(data.get("priorities", "")) or {}).items():
                for regex in regexes:
                    patterns[regex] = int(prio)
    return unneeded, patterns


def _priority(patterns: Mapping[str, int], node_group: str) -> int:
    """The expander's number for a group: its ASG is `eks-<node group name>-<uuid>`; a generated name is
    known here only by its prefix, so a pattern written for `<prefix><unique id>` matches it too."""
    asg = f"eks-{node_group}-8ec8f9b2-1a2b-3c4d-5e6f-0123456789ab"
    found = [p for regex, p in patterns.items()
             if re.match(regex, asg) or regex.removeprefix("^eks-").replace("[.]", ".").startswith(node_group)]
    return max(found, default=0)


def _pools(records, plan: Plan, patterns: Mapping[str, int]) -> tuple[PoolIn, ...]:
    out = []
    for r in _by_type(records, NODEGROUP):
        i = r["inputs"]
        pool = (i.get("labels") or {}).get(LABEL_POOL)
        if pool is None:
            continue                                  # the system node group
        sc = i.get("scalingConfig") or {}
        deps = plan.deployments_on(pool)
        cost = plan.pool(pool)
        group = str(i.get("nodeGroupName") or i.get("nodeGroupNamePrefix") or r["name"])
        capacity = {"SPOT": "spot", "CAPACITY_BLOCK": "capacity-block"}.get(i.get("capacityType"), "on-demand")
        boot = max((cold_start(d).node_seconds for d in deps), default=NODE_BOOT_SECONDS)
        out.append(PoolIn(pool, group, capacity, int(sc.get("minSize", 0)), int(sc.get("maxSize", 1)),
                          int(sc.get("desiredSize", 0)), _priority(patterns, group), cost.hourly_usd,
                          cost.gpus_per_node, boot, pool_cold_start_seconds(deps), plan.schedule(pool)))
    return tuple(sorted(out, key=lambda p: p.name))


def _pod_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = workload.get("spec") or {}
    if "leaderWorkerTemplate" in spec:
        return spec["leaderWorkerTemplate"].get("leaderTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def allowed_pools(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """Pools a pod may land on: its nodeSelector, or the required node affinity on the pool label."""
    selected = (pod.get("nodeSelector") or {}).get(LABEL_POOL)
    if selected:
        return (selected,)
    terms = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    pools: list[str] = []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == LABEL_POOL and expr.get("operator") == "In":
                pools.extend(v for v in expr.get("values") or [] if v not in pools)
    return tuple(pools)


def _scaler(so: Mapping[str, Any] | None) -> Scaler | None:
    if so is None:
        return None
    spec = so["spec"]
    behavior = (((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("behavior") or {})
    down, up = behavior.get("scaleDown") or {}, behavior.get("scaleUp") or {}
    down_policy = (down.get("policies") or [{"value": 100, "periodSeconds": 15}])[0]
    up_policy = (up.get("policies") or [{"value": 4, "periodSeconds": 15}])[0]
    crons, threshold, models, wake = [], None, [], False
    for t in spec.get("triggers") or []:
        meta = t.get("metadata") or {}
        if t["type"] == "cron":
            crons.append(CronTrigger(meta["timezone"], meta["start"], meta["end"], int(meta["desiredReplicas"])))
        elif t["type"] == "prometheus" and any(q in meta.get("query", "") for q in QUEUE_GAUGES):
            threshold = float(meta["threshold"])
            models = re.findall(r'model_name="([^"]+)"', meta["query"])
        elif t["type"] == "prometheus":
            wake = True
    return Scaler(int(spec.get("minReplicaCount", 0)), int(spec.get("maxReplicaCount", 100)),
                  int(spec.get("pollingInterval", 30)), int(spec.get("cooldownPeriod", 300)),
                  int(down.get("stabilizationWindowSeconds", 300)), int(down_policy["value"]),
                  int(down_policy["periodSeconds"]), int(up.get("stabilizationWindowSeconds", 0)),
                  int(up_policy["value"]), int(up_policy["periodSeconds"]), tuple(crons), threshold,
                  tuple(models), wake)


def _capacity_rpm(dep: DeploymentPlan) -> float:
    slots = max(1, dep.max_tokens_in_flight // TOKENS_PER_REQUEST)
    return slots * 60 / REQUEST_SECONDS


def _workloads(records, plan: Plan) -> tuple[WorkloadIn, ...]:
    scalers = {r["inputs"]["spec"]["scaleTargetRef"]["name"]: r["inputs"]
               for r in records if r["type"].endswith("keda.sh/v1alpha1:ScaledObject")}
    deps = {(d.model, d.pool): d for d in plan.deployments}
    out = []
    for r in records:
        if r["type"] not in WORKLOADS and not r["type"].endswith(":LeaderWorkerSet"):
            continue
        meta = r["inputs"].get("metadata") or {}
        labels = meta.get("labels") or {}
        dep = deps.get((labels.get(LABEL_MODEL), labels.get(LABEL_POOL)))
        if dep is None:
            continue                                  # the gateway, not an engine
        pod = _pod_spec(r["inputs"])
        container = (pod.get("containers") or [{}])[0]
        pre_stop = ((container.get("lifecycle") or {}).get("preStop"))
        cs = cold_start(dep)
        out.append(WorkloadIn(meta["name"], dep.model, allowed_pools(pod) or (dep.pool,),
                              int(r["inputs"]["spec"].get("replicas", 1)), dep.layout.nodes, dep.replicas_per_node,
                              cs.engine_seconds, _capacity_rpm(dep), int(pod.get("terminationGracePeriodSeconds", 30)),
                              pre_stop is not None, _scaler(scalers.get(meta["name"]))))
    return tuple(sorted(out, key=lambda w: w.name))


def _actions(records, pools: Sequence[PoolIn]) -> tuple[ScheduleAction, ...]:
    out = []
    for r in _by_type(records, SCHEDULE):
        i = r["inputs"]
        body = i.get("target", {}).get("input")
        body = json.loads(body) if isinstance(body, str) else (body or {})
        target = str(body.get("NodegroupName"))        # a generated name: the group's prefix + a unique id
        pool = next((p.name for p in sorted(pools, key=lambda p: -len(p.node_group))     # the longest prefix
                     if target == p.node_group or target.startswith(p.node_group)), None)
        sc = body.get("ScalingConfig") or {}
        if pool is None or not sc:
            continue
        out.append(ScheduleAction(r["name"], pool, i["scheduleExpression"], i.get("scheduleExpressionTimezone", "UTC"),
                                  sc.get("MinSize"), sc.get("MaxSize"), sc.get("DesiredSize")))
    return tuple(out)


def _pod_labels(workload: Mapping[str, Any]) -> Mapping[str, str]:
    spec = workload.get("spec") or {}
    template = spec["leaderWorkerTemplate"].get("leaderTemplate", {}) if "leaderWorkerTemplate" in spec \
        else spec.get("template", {})
    return (template.get("metadata") or {}).get("labels") or {}


def _gateway(records, workloads: Sequence[WorkloadIn]) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """model -> the workloads the gateway's private routes reach: a route's host is a Service, whose
    selector picks the pods of one or more workloads (kube-proxy sends only to Ready ones)."""
    names = {w.name for w in workloads}
    pods = {r["inputs"]["metadata"]["name"]: _pod_labels(r["inputs"]) for r in records
            if (r["type"] in WORKLOADS or r["type"].endswith(":LeaderWorkerSet"))
            and r["inputs"].get("metadata", {}).get("name") in names}
    services = {r["inputs"]["metadata"]["name"]: (r["inputs"].get("spec") or {}).get("selector") or {}
                for r in _by_type(records, SERVICE)}
    routes: dict[str, list[str]] = {}
    fallbacks: set[str] = set()
    for r in _by_type(records, CONFIGMAP):
        text = (r["inputs"].get("data") or {}).get("config.yaml")
        if not text or "model_list" not in text:
            continue
        config = yaml.safe_load(text) or {}
        for entry in config.get("model_list") or []:
            host = re.match(r"https?://([^./:]+)", str((entry.get("litellm_params") or {}).get("api_base") or ""))
            if host is None or host.group(1) not in services:
                continue
            selector = services[host.group(1)].items()
            reached = [w for w, labels in sorted(pods.items()) if selector and selector <= labels.items()]
            found = routes.setdefault(entry["model_name"], [])
            found.extend(w for w in reached if w not in found)
        for item in (config.get("router_settings") or {}).get("fallbacks") or []:
            fallbacks.update(item)
    return {m: tuple(w) for m, w in routes.items()}, frozenset(fallbacks)


def from_render(records: Sequence[Mapping[str, Any]], cfg: StackConfig, plan: Plan) -> SimInput:
    unneeded, patterns = _autoscaler(records)
    pools = _pools(records, plan, patterns)
    if not pools:
        raise InputError(f"stack {cfg.stack}: the render has no GPU node group to simulate (an existing cluster's "
                         "pools are not ours to scale)")
    workloads = _workloads(records, plan)
    routes, fallbacks = _gateway(records, workloads)
    reconcile = cfg.jobs.reconcile_cron if getattr(cfg.jobs, "github_repo", None) or cfg.jobs.in_cluster else None
    return SimInput(cfg.stack, pools, workloads, _actions(records, pools), routes, fallbacks, unneeded,
                    reconcile, plan.monthly_usd)


def peak_rpm(sim: SimInput) -> dict[str, float]:
    """The default profile's business-hours rate: half of what the model's replicas serve in its windows
    (the most replicas its ScaledObjects' cron triggers and minimums ask for; one for a model that
    only wakes on demand)."""
    out: dict[str, float] = {}
    for w in sim.workloads:
        replicas = w.replicas if w.scaler is None else max(
            [w.scaler.min_replicas] + [c.desired for c in w.scaler.crons])
        out[w.model] = out.get(w.model, 0.0) + replicas * w.capacity_rpm
    best = {w.model: max(w.capacity_rpm for v in sim.workloads if v.model == w.model) for w in sim.workloads}
    return {m: math.floor((v or best[m]) * 0.5) for m, v in out.items()}
