"""Size every model against its pool and cost the stack, offline (no cloud account, no Pulumi).

Prints pools, deployments (layout, memory fit, KV budget, load time) and the monthly bill; with
--json one JSON object. A model that does not fit, or a bad stack file, exits 2 with the reason."""

from __future__ import annotations

import argparse
import json
import sys

from infra.planning.cost import parse_month
from infra.planning.plan import Plan, build_plan
from infra.stack.config import load_stack_file
from scripts.common import UserError, add_stack_args, stack_path

HELP = "size models against pools and cost the stack (offline)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--month", metavar="YYYY-MM",
                        help="cost this calendar month exactly (DST included) instead of an average month")


def run(args: argparse.Namespace) -> int:
    try:
        month = parse_month(args.month) if args.month else None
    except ValueError as err:
        raise UserError(str(err)) from None
    plan = build_plan(load_stack_file(stack_path(args)), month=month)     # as written: the plan resolves it, with notes
    if args.json:
        json.dump(plan.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(plan))
    return 0


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]) + "\n"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"


def cold_start_table(plan: Plan) -> str:
    """Each deployment's cold start term by term (seconds), its physical limit and the ratio."""
    rows = []
    for d in plan.deployments:
        c = d.cold_start
        if c is None:
            continue
        fetch = f"{c.image_seconds}|{c.weights_seconds}" if c.overlapped else f"{c.image_seconds}+{c.weights_seconds}"
        rows.append([d.model, d.pool, c.path, str(c.node_seconds), fetch, str(c.load_seconds), str(c.warmup_seconds),
                     str(c.total_seconds), str(c.limit_seconds), f"{c.ratio:.2f}x", str(c.restart_seconds),
                     str(d.load.probe_seconds)])
    return ("\nCold start (seconds; image|weights run side by side, image+weights one after the other)\n"
            + _table(["model", "pool", "path", "node", "image, weights", "load", "warm-up", "total", "limit",
                      "total/limit", "same-node restart", "startup probe"], rows))


def economics_table(plan: Plan) -> str:
    """$/M tokens beside the API's on the same input:output mix; capacity beside break-even."""
    rows = []
    for m in plan.models:
        e = plan.economics.get(m.model)
        reach = "-" if e is None or e.reachable is None else (
            "yes" if e.reachable else "not reachable at the stated throughput")
        rows.append([m.model, _usd(m.monthly_usd),
                     "-" if e is None or e.usd_per_million_tokens is None else f"${e.usd_per_million_tokens:.2f}",
                     "-" if m.cheapest_api is None or e is None or e.api_usd_per_million_tokens is None
                     else f"{m.cheapest_api.provider} ${e.api_usd_per_million_tokens:.2f}",
                     "-" if e is None or e.capacity_million_tokens_per_day is None
                     else f"{e.capacity_million_tokens_per_day:,.0f}",
                     "-" if e is None or e.break_even_million_tokens_per_day is None
                     else f"{e.break_even_million_tokens_per_day:,.0f}", reach,
                     "-" if e is None else f"{e.idle_node_hours:,.0f}"])
    mix = next(iter(plan.economics.values())).mix if plan.economics else 3.0
    return (f"\nModels (tokens = input + output at {mix:g} input per output token, on both sides)\n"
            + _table(["model", "$/month", "$/M tokens", "cheapest API $/M", "capacity M tok/day",
                      "break-even M tok/day", "break-even reachable", "idle node-h/mo (pre-warm, cold start)"], rows))


def platform_table(plan: Plan) -> str:
    if not plan.platform:
        return ""
    return ("\nPlatform (non-GPU, monthly)\n"
            + _table(["item", "$/month", "basis"], [[c.item, _usd(c.monthly_usd), c.basis] for c in plan.platform]))


def render_table(plan: Plan) -> str:
    out = [f"stack {plan.stack} ({plan.environment}, {plan.region})\n\nPools\n"]
    out.append(_table(
        ["pool", "capacity", "instance", "GPUs", "$/node-h", "node-h/mo", "$/month", "max $/month"],
        [[p.pool, p.capacity, p.instance_type, str(p.gpus_per_node), f"{p.hourly_usd:.2f}",
          f"{p.monthly_node_hours:,.0f}", _usd(p.monthly_usd), _usd(p.max_monthly_usd)] for p in plan.pools]))
    out.append("\nDeployments\n")
    out.append(_table(
        ["model", "pool", "engine", "prec", "weights GB", "layout", "GB/GPU used/total", "KV GB", "KV B/token",
         "tokens in flight", "context", "seqs", "replicas", "load"],
        [[d.model, d.pool, d.engine, d.precision, f"{d.weights_gb:,.0f}",
          f"{d.layout.nodes}x node TP{d.layout.tp}" + (f" PP{d.layout.pp}" if d.layout.pp > 1 else "")
          + (" EP" if d.layout.ep else ""),
          f"{d.memory.weights_per_gpu_gb + d.memory.overhead_per_gpu_gb:.1f}/{d.gpu_memory_gb:.1f}",
          f"{d.kv_cache_gb:,.1f}", f"{d.kv_bytes_per_token:,}", f"{d.max_tokens_in_flight:,}", f"{d.max_context:,}",
          str(d.max_concurrent_sequences), f"{d.min_replicas}-{d.max_replicas}",
          f"~{d.load.seconds // 60} min (probe {d.load.probe_seconds // 60} min)"] for d in plan.deployments]))
    out.append(cold_start_table(plan))
    out.append(economics_table(plan))
    out.append(platform_table(plan))
    out.append(f"\nTotal: {_usd(plan.monthly_usd)}/month GPU pools at scheduled/desired sizes "
               f"({_usd(plan.max_monthly_usd)}/month if every pool ran at maxSize)"
               + (f" + {_usd(plan.platform_monthly_usd)}/month platform = "
                  f"{_usd(plan.monthly_usd + plan.platform_monthly_usd)}/month" if plan.platform else "") + "\n")
    for d in plan.deployments:
        out.append(f"\n{d.model} on {d.pool} ({d.engine_image}):\n  {' '.join(d.engine_args)}\n")
    if plan.egress:
        out.append("\nTraffic that may leave the cluster (managed fallback when no private replica answers)\n"
                   + "".join(f"- {line}\n" for line in plan.egress))
    if plan.notes:
        out.append("\nNotes\n" + "".join(f"- {n}\n" for n in plan.notes))
    return "".join(out)
