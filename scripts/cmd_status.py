"""For every pool: what holds its bounds now (an operator's override, or the stack), the size the
schedule's KEDA cron triggers ask for (or the override's), what AWS reports, the next steps (an active
override's end first, then the schedule's transitions, in the pool's zone and in UTC) and what it costs
per hour now. Reads only; a pool not deployed yet is shown as missing.

A readable table by default; --json prints one JSON line per pool."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infra.planning.fleetops import status_row
from scripts.job import Deps, Job, add_job_arguments

HELP = "show each pool's bounds, what holds them, AWS size, next steps and cost now"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, lock=False)
    parser.add_argument("--json", action="store_true", help="one JSON line per pool")


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "status", mutating=False)
    groups = job.groups()
    schedules = job.schedules
    rows = []
    for pool in job.cfg.pools:
        if pool.name not in groups:
            rows.append({"pool": pool.name, "capacity": pool.capacity, "status": "MISSING", "missing": True,
                         "wantReason": "no node group yet: not deployed (pulumi up)"})
            continue
        rows.append(status_row(pool, job.at, groups[pool.name], job.prices.get(pool.name), schedules.get(pool.name)))
    if args.json:
        for row in rows:
            job.emit(**row)
    else:
        (job.deps.out or sys.stdout).write(render(job.cfg.stack, job.at.isoformat(timespec="minutes"), rows))
    return 1 if any(r.get("missing") for r in rows) else 0


def _next(row: dict[str, Any]) -> str:
    if not row.get("next"):
        return "-"
    out = []
    for t in row["next"]:
        when = f"{t['at'][5:16].replace('T', ' ')} UTC"
        if t["size"] is None:
            out.append(f"override ends {when}")
        else:
            out.append(f"{t['size']} at {t['local'][5:16].replace('T', ' ')} {row['timezone']} ({when})")
    return "; ".join(out)


def render(stack: str, at: str, rows: list[dict[str, Any]]) -> str:
    headers = ["pool", "capacity", "holds", "want", "bounds min/max", "aws min/max/desired", "status", "override",
               "$/h now", "next"]
    cells = []
    for r in rows:
        if r.get("missing"):
            cells.append([r["pool"], r["capacity"], "-", "-", "-", "-", "MISSING", "-", "-", "-"])
            continue
        aws, ov, b = r["aws"], r["override"], r["bounds"]
        cells.append([
            r["pool"], r["capacity"], r["holds"], "autoscaler" if r["want"] is None else str(r["want"]),
            f"{b['min']}/{b['max']}", f"{aws['min']}/{aws['max']}/{aws['desired']}", r["status"],
            "-" if ov is None else f"{ov['size']} until {ov['until']}{'' if ov['active'] else ' (expired)'}",
            "-" if r["hourlyUSD"] is None else f"{r['hourlyUSD']:,.2f}", _next(r)])
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [f"stack {stack} at {at}", "", line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    out += ["", "why:"] + [f"  {r['pool']}: {r['wantReason']}" for r in rows]
    return "\n".join(out) + "\n"
