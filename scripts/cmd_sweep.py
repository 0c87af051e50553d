"""The cost report: idle pools that still hold nodes (with their hourly cost and what holds them: an
operator's override, or the KEDA cooldown and autoscaler delay that will remove them), and spot pools
running on-demand nodes. Sizes are KEDA's and cluster-autoscaler's and bounds the stack's and the
operator's, so sweep changes nothing (docs/capacity.md); each finding is one JSON line with its
hourly saving.

Idleness needs request metrics (Prometheus); no metrics, or no series for a pool (its engines may be
loading), is "idle unknown", never idle. Exit status: 0 done, 1 a pool not deployed, 2 user error,
4 AWS error (docs/jobs.md)."""

from __future__ import annotations

import argparse

from infra.planning.fleetops import Activity, NodeGroup, plan_sweep
from scripts import aws
from scripts.job import Deps, Job, add_job_arguments, exit_status

HELP = "report idle pools and spot pools on on-demand nodes, with hourly savings (changes nothing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, metrics_args=True, lock=False)


def observe(job: Job, groups: dict[str, NodeGroup]) -> tuple[dict[str, Activity | None], dict[str, int | None]]:
    """Traffic for pools with idleMinutes; on-demand instances in spot pools."""
    activity: dict[str, Activity | None] = {}
    for pool in job.cfg.pools:
        if pool.idle_minutes is None or job.metrics is None or pool.name not in groups:
            activity[pool.name] = None
            continue
        activity[pool.name] = Activity(job.metrics.in_flight(pool.name),
                                       job.metrics.finished(pool.name, pool.idle_minutes))
    on_demand = {pool.name: aws.on_demand_nodes(job.ec2, job.cfg, groups[pool.name])
                 for pool in job.cfg.pools if pool.capacity == "spot" and pool.name in groups}
    return activity, on_demand


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "sweep", mutating=False)
    groups = job.groups()
    activity, on_demand = observe(job, groups)
    return exit_status(job.execute(plan_sweep(job.cfg, job.at, groups, activity, on_demand, job.prices), groups))
