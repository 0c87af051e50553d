"""Spot first, on-demand as the fallback, for real: which pools one engine workload may land on, and
which workload of a model scales on its queue. Pure; infra.serving builds the pods and ScaledObjects
from these answers and `fleet simulate` reads them back from the render.

A model's spot placement is its elastic workload: its pods may also land on the model's on-demand
pools of the same shape that can grow (replicas.max above replicas.min) and have no schedule (pods of
the elastic workload on a scheduled pool's nodes would hold the nodes its window needs: `fleet simulate`
shows the window not Ready; that needs pod priorities and preemption first), and cluster-autoscaler's
priority expander tries the spot group first (infra.aws.addons.PRIORITIES); a spot group that cannot
launch is backed off and the on-demand one is used. Only that workload scales on the model's waiting
requests: when every placement scaled on the same sum, 10 waiting requests asked for a replica in
each placement (twice what they needed).
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.planning.sizing import DeploymentPlan
from infra.stack.spec import StackConfig


def fallback_pools(cfg: StackConfig, deployments: tuple[DeploymentPlan, ...]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(model, spot pool) -> on-demand pools its pods may also use, for EKS pools (not an existing cluster's)."""
    if cfg.cluster.existing is not None:
        return {}
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for dep in deployments:
        pool = cfg.pool(dep.pool)
        if pool.capacity != "spot":
            continue
        others = tuple(d.pool for d in deployments
                       if d.model == dep.model and d.pool != dep.pool and cfg.pool(d.pool).capacity == "on-demand"
                       and cfg.pool(d.pool).schedule is None
                       and d.instance_type == dep.instance_type and d.max_replicas > d.min_replicas)
        if others:
            out[(dep.model, dep.pool)] = others
    return out


def queue_owners(cfg: StackConfig, deployments: tuple[DeploymentPlan, ...]) -> Mapping[str, str]:
    """model -> the one pool whose workload scales on the model's queue: its spot placement, else the
    placement with the most room to grow (the first on a tie)."""
    out: dict[str, str] = {}
    for dep in deployments:
        if dep.max_replicas <= dep.min_replicas:
            continue
        best = out.get(dep.model)
        if best is None:
            out[dep.model] = dep.pool
            continue
        current = next(d for d in deployments if d.model == dep.model and d.pool == best)
        spot = cfg.pool(dep.pool).capacity == "spot"
        best_spot = cfg.pool(best).capacity == "spot"
        if (spot and not best_spot) or (spot == best_spot and dep.max_replicas - dep.min_replicas
                                        > current.max_replicas - current.min_replicas):
            out[dep.model] = dep.pool
    return out
