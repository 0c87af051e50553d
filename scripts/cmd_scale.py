"""An operator's override: hold one pool at --size nodes until --until (a launch tonight, an
incident), within the pool's min/max. The override is written as tags on the node group, so
`fleet reconcile` keeps it until it expires and then restores the schedule.

With --wait, waits until the node group is ACTIVE at the new size, the nodes are Ready (kubectl on
the current kubeconfig) and the gateway's /v1/models lists the pool's models, or --timeout passes.
Exit status: 0 done, 1 not done (drain hold, busy node group) or --wait timed out, 2 user error
(nothing changed), 3 stack locked."""

from __future__ import annotations

import argparse
import os
import re
from datetime import datetime, timedelta

from infra.planning.fleetops import UPDATABLE, Override, check_override, iso, plan_override
from scripts import aws, metrics
from scripts.cmd_reconcile import Deps, Job, add_job_arguments, parse_time, run_locked
from scripts.common import UserError

HELP = "override one pool's size until a time (optionally wait until it serves)"
DEFAULT_HOLD = timedelta(hours=4)
GATEWAY_KEY_ENV = "LLMFLEET_GATEWAY_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, at=False)
    parser.add_argument("--pool", required=True, help="the pool to scale")
    parser.add_argument("--size", required=True, type=int, help="nodes to hold")
    parser.add_argument("--until", metavar="TIME",
                        help="when the override ends: ISO time with offset/Z, or +90m, +4h, +2d (default +4h)")
    parser.add_argument("--by", help="who asks (recorded on the node group; default user@host)")
    parser.add_argument("--wait", action="store_true", help="wait until the nodes are Ready and served")
    parser.add_argument("--timeout", type=int, default=3600, metavar="SECONDS", help="bound for --wait")
    parser.add_argument("--gateway-url", help=f"gateway base URL for --wait (key from ${GATEWAY_KEY_ENV})")


def parse_until(text: str | None, now: datetime) -> datetime:
    if not text:
        return now + DEFAULT_HOLD
    match = re.fullmatch(r"\+(\d+)([mhd])", text.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now + timedelta(**{unit: int(match.group(1))})
    return parse_time(text, "--until")


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "scale")
    try:
        pool = job.cfg.pool(args.pool)
    except KeyError:
        raise UserError(f"--pool {args.pool}: no such pool in stack {job.cfg.stack}; pools: "
                        f"{', '.join(p.name for p in job.cfg.pools)}") from None
    until = parse_until(args.until, job.at)
    try:
        check_override(pool, args.size, until, job.at)
    except ValueError as err:
        raise UserError(str(err)) from None
    by = args.by or aws.whoami()
    override = Override(args.size, until, re.sub(r"[^\w .:/=+@-]", "-", by)[:200])
    aws.describe_group(job.eks, job.cfg, pool.name)       # a missing node group stops here

    def body(lock: aws.StackLock | None) -> int:
        group = aws.describe_group(job.eks, job.cfg, pool.name)
        action = plan_override(pool, job.at, group, override, job.prices.get(pool.name))
        if action is None:
            job.emit(pool=pool.name, action="unchanged", **{"from": group.scaling.desired, "to": args.size},
                     reason=f"already at {args.size} with this override until {iso(until)}")
        else:
            [action] = job.execute([action], {pool.name: group}, lock)
            if action.kind in ("hold", "skip"):
                return 1                     # the operator's request was not carried out
        if args.wait and not job.dry_run:
            return 0 if wait_ready(job, pool.name, args.size, args.timeout) else 1
        return 0

    return run_locked(job, body)


def wait_ready(job: Job, pool: str, size: int, timeout: float) -> bool:
    """Node group ACTIVE at `size`, then `size` Ready nodes, then the pool's models at the gateway."""
    deps = job.deps
    deadline = deps.monotonic() + timeout
    notes: list[str] = []
    models = sorted({m.name for m in job.cfg.models if any(p.pool == pool for p in m.placements)})
    url = job.args.gateway_url
    key = os.environ.get(GATEWAY_KEY_ENV)

    def group_ready() -> bool:
        g = aws.describe_group(job.eks, job.cfg, pool)
        return g.status in UPDATABLE and g.scaling.desired == size

    def nodes_ready() -> bool:
        n = deps.ready_nodes(pool)
        if n is None:
            if "nodes" not in notes:
                notes.append("nodes")
            return True
        return n == size

    def served() -> bool:
        if size == 0 or not models:
            return True
        if not url:
            if "gateway" not in notes:
                notes.append("gateway")
            return True
        listed = metrics.gateway_models(url, key, deps.http)
        return listed is not None and set(models) <= listed

    steps = [("node group ACTIVE at the size", group_ready), (f"{size} Ready node(s)", nodes_ready),
             (f"gateway lists {', '.join(models) or 'nothing'}", served)]
    for label, check in steps:
        while not check():
            if deps.monotonic() >= deadline:
                job.emit(pool=pool, action="wait", **{"from": None, "to": size}, ready=False,
                         reason=f"timed out after {timeout:.0f} s waiting for: {label}")
                return False
            deps.sleep(min(deps.poll_seconds, max(0.0, deadline - deps.monotonic())))
    skipped = {"nodes": "cannot check Ready nodes (no kubectl or kubeconfig)",
               "gateway": "no --gateway-url: the gateway was not checked"}
    reason = "; ".join(["ready"] + [skipped[n] for n in notes])
    job.emit(pool=pool, action="wait", **{"from": None, "to": size}, ready=True, reason=reason)
    return True
