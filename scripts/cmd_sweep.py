"""The cost-saving job: pools idle (no requests) for longer than their idleMinutes go to their floor,
dev/staging stacks go to zero outside their windows, and spot pools running on-demand nodes are
noted. Each action is one JSON line with its hourly saving.

A scheduled pool taken below its schedule gets a `fleet-sweep` override until its next transition,
so `fleet reconcile` keeps the saving instead of undoing it; an operator's unexpired override is
left alone. Idleness needs Prometheus (request counters over idleMinutes); without it the pool is
noted, not touched. Exit status: 0 done, 2 user error, 3 stack locked."""

from __future__ import annotations

import argparse

from infra.planning.fleetops import Activity, NodeGroup, plan_sweep
from scripts import aws
from scripts.cmd_reconcile import Deps, Job, add_job_arguments, run_locked

HELP = "scale idle pools to their floor, dev/staging to zero off-window; print hourly savings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)


def observe(job: Job, groups: dict[str, NodeGroup]) -> tuple[dict[str, Activity | None], dict[str, int | None]]:
    """Traffic for pools with idleMinutes; on-demand instances in spot pools."""
    activity: dict[str, Activity | None] = {}
    for pool in job.cfg.pools:
        if pool.idle_minutes is None or job.metrics is None:
            activity[pool.name] = None
            continue
        activity[pool.name] = Activity(job.metrics.in_flight(pool.name),
                                       job.metrics.finished(pool.name, pool.idle_minutes))
    on_demand = {pool.name: aws.on_demand_nodes(job.ec2, job.cfg, pool.name)
                 for pool in job.cfg.pools if pool.capacity == "spot"}
    return activity, on_demand


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "sweep")
    job.groups()                             # a missing node group stops here, before any lock or change

    def body(lock: aws.StackLock | None) -> int:
        groups = job.groups()
        activity, on_demand = observe(job, groups)
        actions = plan_sweep(job.cfg, job.at, groups, activity, on_demand, job.prices)
        job.execute(actions, groups, lock)
        return 0

    return run_locked(job, body)
