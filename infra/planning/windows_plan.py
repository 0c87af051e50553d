"""The schedule a pool really follows: pre-warm defaulted to the modeled cold start, and gaps too short
to be worth a scale-down merged. Pure; the plan, the KEDA cron triggers, the cost and `fleet simulate`
all read the result (`Plan.schedules`), so none of them sees a window the pool cannot keep.

Why a short gap is merged: after a window ends, KEDA keeps the replicas for its cooldown, then the
preStop drain runs, then cluster-autoscaler waits its scale-down-unneeded time before it removes the
node; to be Ready at the next window the replica must start one cold start earlier. A gap shorter than
that sum saves nothing: the pool would reload the model only to have it ready again (a flap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import time

from infra.planning.sizing import DeploymentPlan
from infra.stack.spec import PoolSpec
from infra.stack.windows import DAYS, Schedule, Window, hm

# A GPU node from the autoscaler's request to Ready: EC2 launch, boot, NVIDIA driver, join. EKS nodes
# are Ready in 40-90 s, GPU shapes slower (amazon-eks-ami#1099, karpenter#3102); p5en RAID0 assembly
# adds minutes. Used until the planner's cold-start model (DeploymentPlan.cold_start) says otherwise.
NODE_BOOT_SECONDS = 300
# KEDA cooldown (and HPA scale-down stabilization) per replica size: a large model reloads for tens of
# minutes after a scale-down, so it is kept longer (infra.serving.autoscaling writes these numbers).
LARGE_MODEL_GB = 200
COOLDOWN_LARGE_SECONDS = 1800
COOLDOWN_SMALL_SECONDS = 600
# KEDA's pollingInterval and the HPA's scale-up policy (one pod per period) that infra.serving.autoscaling
# writes: a window of N replicas is complete (N - 1) periods after its first replica was asked for.
POLLING_SECONDS = 30
SCALE_UP_PERIOD_SECONDS = 120
# cluster-autoscaler --scale-down-unneeded-time (its default, written explicitly by infra.aws.addons).
SCALE_DOWN_UNNEEDED_SECONDS = 600
DAY = 24 * 60


def cooldown_seconds(dep: DeploymentPlan) -> int:
    return COOLDOWN_LARGE_SECONDS if dep.weights_gb >= LARGE_MODEL_GB else COOLDOWN_SMALL_SECONDS


@dataclass(frozen=True)
class ColdStart:
    """A replica from nothing to Ready: the node (when one must be launched), then the engine."""
    node_seconds: int
    engine_seconds: int

    @property
    def total_seconds(self) -> int:
        return self.node_seconds + self.engine_seconds


def cold_start(dep: DeploymentPlan) -> ColdStart:
    """Node boot and engine start of one replica. `dep.load.seconds` is the replica's modeled end-to-end
    cold start; where the planner also gives its breakdown (`dep.cold_start.node_seconds`), the node
    share is taken from it, otherwise the node boot is added in front (NODE_BOOT_SECONDS)."""
    detail = getattr(dep, "cold_start", None)
    node = getattr(detail, "node_seconds", None)
    if node is not None:
        node = int(node)
        return ColdStart(node, max(0, int(dep.load.seconds) - node))
    return ColdStart(NODE_BOOT_SECONDS, int(dep.load.seconds))


def pool_cold_start_seconds(deps: Sequence[DeploymentPlan]) -> int:
    """The slowest replica on the pool (the largest model decides when the pool is ready)."""
    return max((cold_start(d).total_seconds for d in deps), default=NODE_BOOT_SECONDS)


def ready_lead_seconds(deps: Sequence[DeploymentPlan], schedule: Schedule) -> int:
    """How long before a window's start its replicas must be asked for to be Ready at the start: one
    KEDA poll, the HPA's one-pod-per-period ramp to the window's replicas, then the cold start."""
    replicas = max((w.size for w in schedule.windows), default=1) * max((d.replicas_per_node for d in deps), default=1)
    replicas = min(replicas, max((d.max_replicas for d in deps), default=1))
    return POLLING_SECONDS + max(0, replicas - 1) * SCALE_UP_PERIOD_SECONDS + pool_cold_start_seconds(deps)


def release_seconds(deps: Sequence[DeploymentPlan]) -> int:
    """From a window's end until its nodes are gone: KEDA cooldown, then the node's unneeded time."""
    return max((cooldown_seconds(d) for d in deps), default=0) + SCALE_DOWN_UNNEEDED_SECONDS


def effective_schedule(pool: PoolSpec, deps: Sequence[DeploymentPlan]) -> tuple[Schedule | None, list[str]]:
    """(the schedule the pool follows, notes for `fleet plan`)."""
    schedule = pool.schedule
    if schedule is None:
        return None, []
    notes: list[str] = []
    cold_min = math.ceil(pool_cold_start_seconds(deps) / 60)
    lead = math.ceil(ready_lead_seconds(deps, schedule) / 60)
    prewarm = schedule.prewarm_minutes
    where = f"pools.{pool.name}.schedule"
    if schedule.prewarm_auto:
        prewarm = lead
        notes.append(f"pool {pool.name}: prewarmMinutes auto = {lead} min, the modeled cold start ({cold_min} min) "
                     "and the replicas' ramp")
    elif prewarm < lead:
        notes.append(f"pool {pool.name}: schedule.prewarmMinutes {prewarm} is shorter than the modeled cold start "
                     f"({cold_min} min; {lead} min with the replicas' ramp): replicas are ready ~{lead - prewarm} min "
                     f"into each window; set prewarmMinutes to {lead} or auto")
    threshold = cold_min + math.ceil(release_seconds(deps) / 60)
    windows, merged = _merge_gaps(schedule.windows, prewarm, threshold)
    for (start, end, nxt), days in merged.items():
        notes.append(f"{where}: the gap {_hm(start)}-{_hm(end)} on {_days(days)} (up to the {_hm(nxt)} window's "
                     f"{prewarm} min pre-warm) is shorter than the pool's modeled cold start ({cold_min} min) plus "
                     f"its scale-down delays ({threshold - cold_min} min: KEDA cooldown, node scale-down): "
                     "merged, the pool stays up (a scale-down there would only reload the model)")
    return replace(schedule, windows=windows, prewarm_minutes=prewarm, prewarm_auto=False), notes


def _minutes(t: time) -> int:
    return DAY if t == time.max else t.hour * 60 + t.minute


def _time(minute: int) -> time:
    return time.max if minute >= DAY else time(minute // 60, minute % 60)


def _hm(minute: int) -> str:
    return hm(_time(minute))


def _days(days: Sequence[int]) -> str:
    return ",".join(DAYS[d] for d in sorted(days))


def _merge_gaps(windows: Sequence[Window], prewarm: int,
                threshold: int) -> tuple[tuple[Window, ...], dict[tuple[int, int, int], list[int]]]:
    """Per weekday, join consecutive windows whose gap (end to the next pre-warm start) is under
    `threshold` minutes; then regroup equal spans into windows over several days. Gaps across midnight
    are left alone (they are nights, far longer than any cold start)."""
    spans: dict[tuple[int, int, int], list[int]] = {}
    merged: dict[tuple[int, int, int], list[int]] = {}
    changed = False
    for day in range(7):
        today = sorted((_minutes(w.start), _minutes(w.end), w.size) for w in windows if day in w.days)
        out: list[list[int]] = []
        for start, end, size in today:
            if out and 0 < start - prewarm - out[-1][1] < threshold:
                merged.setdefault((out[-1][1], start - prewarm, start), []).append(day)
                out[-1][1], out[-1][2] = end, max(out[-1][2], size)
                changed = True
            else:
                out.append([start, end, size])
        for start, end, size in out:
            spans.setdefault((start, end, size), []).append(day)
    if not changed:
        return tuple(windows), {}
    result = tuple(Window(tuple(days), _time(s), _time(e), size)
                   for (s, e, size), days in sorted(spans.items(), key=lambda kv: (kv[1][0], kv[0])))
    return result, merged
