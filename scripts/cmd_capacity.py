"""EC2 Capacity Blocks for the coming windows of each `capacity-block` pool.

For the next --weeks, the pool's windows (pre-warm included) are grouped into the blocks that would
cover them (blocks start and end at 11:30 UTC; instances stop 30 minutes before the end). A block
already bought that covers a span is reported as `covered`; otherwise every offering is printed
with its price against on-demand for the same hours and for only the scheduled node-hours, and
with --purchase the cheapest covering offering is bought (--dry-run: would buy). A purchase is
final: AWS does not refund or cancel Capacity Blocks. Exit status: 0 done, 2 user error (e.g. AccessDenied:
the line names the IAM action), 3 locked, 4 AWS error (an unexpected answer, a 500, an unreachable
endpoint: one line, the JSON lines above it are what was done); see docs/jobs.md."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, timedelta

from infra.planning.capacity import capacity_spans, cheapest_covering, covering, quote
from infra.planning.fleetops import iso
from infra.stack import names
from infra.stack.spec import PoolSpec
from scripts import aws
from scripts.common import UserError
from scripts.job import Deps, Job, add_job_arguments, run_locked

HELP = "find (and with --purchase buy) EC2 Capacity Blocks for capacity-block pools' windows"
MAX_WEEKS = 26


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument("--weeks", type=int, default=2, help=f"how far ahead to look (1-{MAX_WEEKS}, default 2)")
    parser.add_argument("--pool", help="only this pool (default: every capacity-block pool)")
    parser.add_argument("--purchase", action="store_true",
                        help="buy the cheapest offering covering each uncovered span (not refundable)")


def _pools(job: Job) -> list[PoolSpec]:
    blocks = [p for p in job.cfg.pools if p.capacity == "capacity-block"]
    if job.args.pool:
        if job.args.pool not in {p.name for p in job.cfg.pools}:
            raise UserError(f"--pool {job.args.pool}: no such pool in stack {job.cfg.stack}; pools: "
                            f"{', '.join(p.name for p in job.cfg.pools)}")
        blocks = [p for p in blocks if p.name == job.args.pool]
        if not blocks:
            raise UserError(f"--pool {job.args.pool}: not a capacity-block pool (capacity: capacity-block)")
    if not blocks:
        raise UserError(f"stack {job.cfg.stack} has no pool with capacity: capacity-block")
    # the windows the pool really keeps: pre-warm defaulted to the cold start, short gaps merged
    return [dataclasses.replace(p, schedule=job.schedules.get(p.name, p.schedule)) for p in blocks]


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    if not 1 <= args.weeks <= MAX_WEEKS:
        raise UserError(f"--weeks {args.weeks}: give 1 to {MAX_WEEKS} (Capacity Blocks are sold up to 182 days)")
    job = Job(args, deps or Deps(), "capacity", mutating=args.purchase)
    pools = _pools(job)
    end = job.at + timedelta(weeks=args.weeks)
    if not args.purchase:                    # reads only: no lock
        for pool in pools:
            survey(job, pool, end)
        return 0

    def body(lock: aws.StackLock | None) -> int:
        for pool in pools:
            survey(job, pool, end)
        return 0

    return run_locked(job, body)


def survey(job: Job, pool: PoolSpec, end: datetime) -> None:
    itype = pool.instance_type
    price = job.prices.get(pool.name)
    on_demand = None if price is None else price.on_demand_usd
    held = aws.reservations(job.ec2, itype)
    for span in capacity_spans(pool, job.at, end):
        base = {"pool": pool.name, "instanceType": itype, "count": span.count, "spanStart": iso(span.start),
                "spanEnd": iso(span.end), "windowsStart": iso(span.need_start), "windowsEnd": iso(span.need_end)}
        have = covering(span, held)
        if have is not None:
            job.emit(action="covered", **base, reservation=have.id,
                     reason=f"Capacity Block {have.id} ({have.state}) already covers these windows")
            continue
        offers = aws.offerings(job.ec2, itype, span.count, span.hours, span.start, span.end)
        best = cheapest_covering(span, offers)
        for offer in offers:
            q = quote(offer, pool, on_demand)
            job.emit(action="offer", **{**base, **q.to_json()}, covers=cheapest_covering(span, [offer]) is not None,
                     reason="Capacity Block offering vs on-demand for the same hours")
        if best is None:
            job.emit(action="no-offer", **base, reason=f"no offering covers these windows ({len(offers)} seen); "
                     "try another week, fewer nodes, or on-demand")
            continue
        if not job.args.purchase:
            continue
        tags = {**names.tags(job.cfg, "capacity"), names.LABEL_POOL: pool.name}
        if job.dry_run:
            job.emit(action="purchase", **base, offering=best.id, upfrontUSD=best.upfront_usd,
                     reason="would purchase the cheapest covering offering")
            continue
        bought = aws.purchase(job.ec2, best.id, tags)
        job.emit(action="purchase", **base, offering=best.id, upfrontUSD=best.upfront_usd,
                 reservation=bought.get("CapacityReservationId"), state=bought.get("State"),
                 reason=f"purchased; point pools.{pool.name}.capacityReservationId at "
                        f"{bought.get('CapacityReservationId')} for these windows and run `pulumi up`")

