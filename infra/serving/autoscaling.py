"""KEDA ScaledObjects (pure builders): per model x pool, cron triggers from the pool's Schedule (the same
windows the node groups follow, start moved earlier by the pre-warm lead, in the pool's time zone) and a
Prometheus trigger on the engine's queue depth.

KEDA semantics we rely on (kedacore/keda, keda.sh v1alpha1): min/maxReplicaCount bound the HPA; a cron
trigger asks for `desiredReplicas` between `start` and `end`; with minReplicaCount 0 the target scales
to zero `cooldownPeriod` seconds after every trigger went inactive. A replica of a large model needs
tens of minutes to load, so scale-down is slow and one pod at a time (`advanced.horizontalPodAutoscalerConfig`).
While a model is at zero the gateway serves it from its fallback provider; when the whole model is at
zero, gateway traffic for it (LiteLLM's request counter) wakes the first placement.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from infra.planning.sizing import DeploymentPlan
from infra.planning.windows_plan import POLLING_SECONDS, SCALE_UP_PERIOD_SECONDS, cooldown_seconds
from infra.serving.gateway import DEMAND_METRIC
from infra.stack.windows import DAYS, Schedule, Window

KEDA_API = "keda.sh/v1alpha1"
# Waiting-queue gauges: vLLM (vllm/v1/metrics/loggers.py) and SGLang (srt/metrics/collector.py).
QUEUE_METRIC = {"vllm": "vllm:num_requests_waiting", "sglang": "sglang:num_queue_reqs"}
# The gateway's demand counter (infra/serving/gateway_hooks.py): counted after auth and the model
# allowlist, under the public model name whichever route served the request. LiteLLM's own
# litellm_proxy_total_requests_metric counts 401s too, and a fallback-served request under `<model>-fallback`.
GATEWAY_REQUESTS = DEMAND_METRIC


def replicas_for_nodes(dep: DeploymentPlan, nodes: int) -> int:
    """Replicas of this deployment that `nodes` nodes of its pool hold, capped at max replicas."""
    if nodes <= 0:
        return 0
    return min(dep.max_replicas, (nodes // dep.layout.nodes) * dep.replicas_per_node)


def _cron(moment: time, days: tuple[int, ...]) -> str:
    return f"{moment.minute} {moment.hour} * * {','.join(DAYS[d].upper() for d in sorted(set(days)))}"


def _shift(days: tuple[int, ...], by: int) -> tuple[int, ...]:
    return tuple(sorted({(d + by) % 7 for d in days}))


def window_bounds(window: Window, prewarm_minutes: int) -> tuple[str, str]:
    """(start, end) cron expressions in the schedule's zone. A pre-warm that crosses midnight starts on
    the previous day; a window ending at 24:00 ends at 00:00 of the next day."""
    base = datetime(2024, 1, 1)                      # any Monday; only the time of day is used
    begin = datetime.combine(base, window.start) - timedelta(minutes=prewarm_minutes)
    start = _cron(begin.time(), _shift(window.days, (begin.date() - base.date()).days))
    if window.end == time.max:
        end = _cron(time(0, 0), _shift(window.days, 1))
    else:
        end = _cron(window.end, window.days)
    return start, end


def cron_triggers(schedule: Schedule, dep: DeploymentPlan) -> list[dict[str, Any]]:
    """One trigger per window that holds at least one replica of this deployment."""
    out = []
    for i, window in enumerate(schedule.windows):
        replicas = replicas_for_nodes(dep, window.size)
        if replicas <= 0:
            continue
        start, end = window_bounds(window, schedule.prewarm_minutes)
        out.append({"type": "cron", "name": f"window-{i}",
                    "metadata": {"timezone": schedule.timezone, "start": start, "end": end,
                                 "desiredReplicas": str(replicas)}})
    return out


def queue_query(dep: DeploymentPlan, namespace: str) -> str:
    """Waiting requests of the model over all its placements: a placement at zero has no queue of its
    own, so the elastic placements (spot, peak) scale out on the queue of those that serve."""
    return f'sum({QUEUE_METRIC[dep.engine]}{{namespace="{namespace}",model_name="{dep.model}"}}) or vector(0)'


def demand_query(model: str) -> str:
    return f'sum(rate({GATEWAY_REQUESTS}{{model="{model}"}}[5m])) or vector(0)'


def prometheus_trigger(name: str, server: str, query: str, threshold: float, activation: float) -> dict[str, Any]:
    return {"type": "prometheus", "name": name,
            "metadata": {"serverAddress": server, "query": query, "threshold": _num(threshold),
                         "activationThreshold": _num(activation)}}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def scaled_object(name: str, namespace: str, dep: DeploymentPlan, *, kind: str, api_version: str,
                  schedule: Schedule | None, prometheus_url: str | None, queue_target: int,
                  wake_on_demand: bool, labels: dict[str, str], scales_on_queue: bool = True) -> dict[str, Any] | None:
    """The ScaledObject for one workload, or None when nothing can change its size (no schedule, no
    Prometheus, or min == max without a schedule). Only one workload per model scales on the model's
    queue (`scales_on_queue`, infra.planning.placement.queue_owners); the others follow their cron
    triggers and minimums."""
    triggers = cron_triggers(schedule, dep) if schedule is not None else []
    elastic = prometheus_url is not None and dep.max_replicas > dep.min_replicas
    if elastic and scales_on_queue:
        triggers.append(prometheus_trigger("queue", prometheus_url, queue_query(dep, namespace),
                                           queue_target, 0))
    if elastic and wake_on_demand and dep.min_replicas == 0:
        # threshold far above any request rate: this trigger asks for one replica at most, and only
        # activates the workload from zero; the queue trigger scales it further.
        triggers.append(prometheus_trigger("gateway-demand", prometheus_url, demand_query(dep.model),
                                           1_000_000, 0))
    if not triggers or (schedule is None and dep.max_replicas == dep.min_replicas):
        return None
    cooldown = cooldown_seconds(dep)
    return {
        "apiVersion": KEDA_API, "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": name},
            "minReplicaCount": dep.min_replicas, "maxReplicaCount": dep.max_replicas,
            "pollingInterval": POLLING_SECONDS, "cooldownPeriod": cooldown,
            "initialCooldownPeriod": cooldown,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleDown": {"stabilizationWindowSeconds": cooldown,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 600}]},
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": SCALE_UP_PERIOD_SECONDS}]},
            }}},
            "triggers": triggers,
        },
    }
