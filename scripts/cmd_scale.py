"""An operator's override: hold one pool at --size nodes until --until (a launch tonight, an incident),
within the pool's min/max. The override is one atomic change: tags on the node group (its only record)
and the bounds min = max = size (EKS needs max >= 1, so an override to 0 leaves at most one node that
pods still ask for); when the EKS update fails the tags are put back and nothing is left behind.
`fleet reconcile` keeps the override until it expires, then restores the stack's bounds.

With --wait, waits until the node group is ACTIVE at the new size, the nodes are Ready (kubectl on the
current kubeconfig) and the gateway's /v1/models lists the pool's models, or --timeout passes. What it
cannot check (no kubectl or kubeconfig, a private endpoint, no --gateway-url) makes the answer
`"ready": "unknown"`, never true. Exit status: 0 done (and ready), 1 not done or --wait timed out,
2 user error (nothing changed), 3 stack locked, 4 AWS error, 5 --wait could not check (docs/jobs.md)."""

from __future__ import annotations

import argparse
import os
import re
from datetime import datetime, timedelta

from infra.planning.fleetops import UPDATABLE, Override, check_override, iso, missing, plan_override
from scripts import aws, metrics
from scripts.common import UserError
from scripts.job import DONE, PARTIAL, UNKNOWN, Deps, Job, add_job_arguments, exit_status, parse_time, run_locked

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

    def body(lock: aws.StackLock | None) -> int:
        group = aws.find_group(job.eks, job.cfg, pool.name)
        if group is None:
            job.emit_action(missing(pool.name))
            return PARTIAL
        action = plan_override(pool, job.at, group, override, job.prices.get(pool.name))
        if action is None:
            job.emit(pool=pool.name, action="unchanged", **{"from": group.scaling.desired, "to": args.size},
                     reason=f"already held at {args.size} by this override until {iso(until)}", changed=False)
        else:
            status = exit_status(job.execute([action], {pool.name: group}))
            if status != DONE:
                return status                # the operator's request was not carried out
        if args.wait and not job.dry_run:
            return wait_ready(job, pool.name, args.size, args.timeout)
        return DONE

    return run_locked(job, body)


def wait_ready(job: Job, pool: str, size: int, timeout: float) -> int:
    """Node group ACTIVE at `size`, then `size` Ready nodes, then the pool's models at the gateway:
    DONE when all were seen, PARTIAL on timeout, UNKNOWN when a step could not be checked."""
    deps = job.deps
    deadline = deps.monotonic() + timeout
    unchecked: list[str] = []
    models = sorted({m.name for m in job.cfg.models if any(p.pool == pool for p in m.placements)})
    url = job.args.gateway_url
    key = os.environ.get(GATEWAY_KEY_ENV)

    def group_ready() -> bool | None:
        g = aws.describe_group(job.eks, job.cfg, pool)
        return g.status in UPDATABLE and g.scaling.desired == size

    def nodes_ready() -> bool | None:
        n = deps.ready_nodes(pool)
        return None if n is None else n == size

    def served() -> bool | None:
        if size == 0 or not models:
            return True
        if not url:
            return None
        listed = metrics.gateway_models(url, key, deps.http)
        return listed is not None and set(models) <= listed

    why = {"nodes": "cannot check Ready nodes (no kubectl, no kubeconfig, or the endpoint is private)",
           "gateway": "no --gateway-url: cannot check that a replica serves"}
    steps = [("group", "node group ACTIVE at the size", group_ready), ("nodes", f"{size} Ready node(s)", nodes_ready),
             ("gateway", f"gateway lists {', '.join(models) or 'nothing'}", served)]
    for name, label, check in steps:
        while (seen := check()) is not True:
            if seen is None:
                unchecked.append(why[name])
                break
            if deps.monotonic() >= deadline:
                job.emit(pool=pool, action="wait", **{"from": None, "to": size}, ready=False,
                         reason=f"timed out after {timeout:.0f} s waiting for: {label}", changed=False)
                return PARTIAL
            deps.sleep(min(deps.poll_seconds, max(0.0, deadline - deps.monotonic())))
    if unchecked:
        job.emit(pool=pool, action="wait", **{"from": None, "to": size}, ready="unknown",
                 reason="; ".join(unchecked), changed=False)
        return UNKNOWN
    job.emit(pool=pool, action="wait", **{"from": None, "to": size}, ready=True, reason="ready", changed=False)
    return DONE
