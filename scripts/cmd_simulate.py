"""Simulate the stack's capacity control loops minute by minute (offline): EventBridge schedules, KEDA
(cron and queue triggers, cooldown, HPA stabilization), cluster-autoscaler (node boot, priority
expander, scale-down-unneeded time, spot launches that fail), engine cold starts from the plan, preStop
drains, the jobs at their cron and the gateway (private replicas first, fallback only with none Ready).

It runs the real program under mocks (`fleet render`) and reads that render, so what it simulates is
what `pulumi up` would deploy. Prints a per-pool timeline and totals, or with --json one object with
requests, fallbackRequests, costUSD, planCostUSD, gpuHours, coldStarts and violations. Exit status:
0 no violation, 1 violations found, 2 user error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.planning.plan import build_plan
from infra.planning.simulate import simulate
from infra.planning.simulate.checks import text
from infra.planning.simulate.cron import CronError
from infra.planning.simulate.inputs import InputError, from_render, peak_rpm
from infra.planning.simulate.traffic import TrafficError, business_hours, from_rows, parse_csv
from infra.stack.config import load_stack_file
from scripts.common import UserError, add_stack_args, parse_iso, stack_path

HELP = "simulate a week of the stack's capacity control loops and report violations (offline)"
USER_ERRORS = (TrafficError, InputError, CronError)
MAX_DAYS = 31


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_args(parser)
    parser.add_argument("--start", required=True, metavar="ISO-TIME", help="first simulated instant, with offset")
    parser.add_argument("--days", type=float, default=7, help=f"how many days (default 7, at most {MAX_DAYS})")
    parser.add_argument("--traffic", metavar="FILE",
                        help="CSV `time,model,rpm` (a rate holds until the model's next row); default: weekday "
                             "business hours per model")
    parser.add_argument("--spot-unavailable", metavar="START/END", action="append", default=[],
                        help="a span (ISO/ISO) when spot launches fail; repeatable")
    parser.add_argument("--json", action="store_true", help="one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        import pulumi  # noqa: F401                    # it runs the program: the Pulumi SDK (the deploy extra)
    except ImportError:
        raise UserError("simulates what the program renders, so it needs the Pulumi SDK and providers: "
                        "pip install -e '.[deploy]'") from None
    from scripts.render import render

    start = parse_iso(args.start, "--start")
    if not 0 < args.days <= MAX_DAYS:
        raise UserError(f"--days {args.days:g}: give more than 0 and at most {MAX_DAYS}")
    cfg = load_stack_file(stack_path(args))                  # as written: the plan resolves it, with its notes
    if cfg.cluster.existing is not None:
        raise UserError(f"stack {cfg.stack} runs on an existing cluster (cluster.existing): its node pools are not "
                        "ours, so there is no node autoscaling to simulate")
    plan = build_plan(cfg)
    cfg = plan.config or cfg
    sim = from_render(render(stack_path(args)), cfg, plan)
    minutes = int(round(args.days * 1440))
    models = [m.name for m in cfg.models]
    if args.traffic:
        path = Path(args.traffic)
        if not path.is_file():
            raise UserError(f"--traffic {args.traffic}: no such file")
        profile = from_rows(parse_csv(path.read_text(), models, f"--traffic {args.traffic}"), models, start, minutes)
    else:
        zones = {}
        for w in sim.workloads:
            pool = next((p for p in sim.pools if p.name in w.pools and p.schedule is not None), None)
            if pool is not None:
                zones.setdefault(w.model, pool.schedule.timezone)
        first = next((p.schedule.timezone for p in sim.pools if p.schedule is not None), "UTC")
        peaks = peak_rpm(sim)
        profile = business_hours({m: peaks.get(m, 0.0) for m in models}, {m: zones.get(m, first) for m in models},
                                 start, minutes)
    spans = []
    for item in args.spot_unavailable:
        a, sep, b = item.partition("/")
        if not sep:
            raise UserError(f"--spot-unavailable {item!r}: expected START/END, two ISO times")
        spans.append((parse_iso(a, "--spot-unavailable"), parse_iso(b, "--spot-unavailable")))
    result, timeline = simulate(sim, cfg, start, args.days, profile.rpm, spans, plan.notes)
    out = sys.stdout
    if args.json:
        out.write(json.dumps(result, indent=1) + "\n")
    else:
        out.write(text(result, timeline, start))
    return 1 if result["violations"] else 0
