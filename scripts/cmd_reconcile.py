"""Keep every pool's node group inside its bounds: the stack's min/max, or an operator's unexpired
override (which holds min = max = its size); remove expired or unreadable override tags; repair drift.
Desired size stays cluster-autoscaler's (nodes follow pods) and replicas KEDA's (the schedule is their
cron triggers): reconcile changes desired only to keep it inside the bounds, and a smaller size removes
nodes through the managed node group's drain, which runs each engine's preStop (docs/capacity.md).
Run it every few minutes; a run with nothing to do changes nothing.

Every action is one JSON line on stdout with `changed`; a pool not deployed yet is a `missing` line
and the other pools are handled. Exit status: 0 done, 1 not all done (see the lines), 2 user error
(nothing changed), 3 another run holds the stack's lock (nothing changed), 4 AWS error (docs/jobs.md)."""

from __future__ import annotations

import argparse

from infra.planning.fleetops import plan_reconcile
from scripts import aws
from scripts.job import BUSY, Deps, Job, add_job_arguments, exit_status, parse_time, run_locked

HELP = "keep every pool's node group within its bounds and overrides (run it every few minutes)"
__all__ = ["BUSY", "Deps", "Job", "add_arguments", "parse_time", "run", "run_locked"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "reconcile")

    def body(lock: aws.StackLock | None) -> int:
        groups = job.groups()
        return exit_status(job.execute(plan_reconcile(job.cfg, job.at, groups, job.prices), groups))

    return run_locked(job, body)
