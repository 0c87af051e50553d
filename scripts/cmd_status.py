"""For every pool: the size the schedule (or an override) wants now, what AWS reports, the next
transitions (in the pool's zone and in UTC) and what it costs per hour now. Reads only.

A readable table by default; --json prints one JSON line per pool."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infra.planning.fleetops import status_row
from scripts.cmd_reconcile import Deps, Job, add_job_arguments

HELP = "show each pool's scheduled size, AWS size, next transitions and cost now"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, drain=False)
    parser.add_argument("--json", action="store_true", help="one JSON line per pool")


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "status")
    groups = job.groups()
    rows = [status_row(pool, job.at, groups[pool.name], job.prices.get(pool.name)) for pool in job.cfg.pools]
    if args.json:
        for row in rows:
            job.emit(**row)
    else:
        (job.deps.out or sys.stdout).write(render(job.cfg.stack, job.at.isoformat(timespec="minutes"), rows))
    return 0


def _next(row: dict[str, Any]) -> str:
    if not row["next"]:
        return "-"
    return "; ".join(f"{t['size']} at {t['local'][5:16].replace('T', ' ')} {row['timezone']} "
                     f"({t['at'][5:16].replace('T', ' ')} UTC)" for t in row["next"])


def render(stack: str, at: str, rows: list[dict[str, Any]]) -> str:
    headers = ["pool", "capacity", "want", "aws min/max/desired", "status", "override", "$/h now", "next"]
    cells = []
    for r in rows:
        aws, ov = r["aws"], r["override"]
        cells.append([
            r["pool"], r["capacity"], "autoscaler" if r["want"] is None else str(r["want"]),
            f"{aws['min']}/{aws['max']}/{aws['desired']}", r["status"],
            "-" if ov is None else f"{ov['size']} until {ov['until']}{'' if ov['active'] else ' (expired)'}",
            "-" if r["hourlyUSD"] is None else f"{r['hourlyUSD']:,.2f}", _next(r)])
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [f"stack {stack} at {at}", "", line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    out += ["", "why:"] + [f"  {r['pool']}: {r['wantReason']}" for r in rows]
    return "\n".join(out) + "\n"
