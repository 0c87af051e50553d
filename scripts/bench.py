"""Time `fleet plan` and `fleet render` on generated stacks of growing size, offline.

    python -m scripts.bench                 # 1, 5, 20, 50, 100 pools
    python -m scripts.bench --pools 1 20 --json

Each generated stack is the dev stack with N scheduled spot pools, each serving its own small model
(one Deployment, Service, PDB, ScaledObject, pre-pull DaemonSet and node group per pool), so the
resource count grows linearly with N. A render whose cost per resource grows with N has a dependency
fan-out somewhere (every Kubernetes object waiting on every pool, say). Prints seconds for the plan and
the render, resources rendered, and milliseconds per resource.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from scripts.common import REPO_ROOT

SIZES = (1, 5, 20, 50, 100)


def stack_document(pools: int) -> dict[str, Any]:
    """The dev stack with `pools` scheduled pools (each its own window) and one model per pool."""
    doc = yaml.safe_load((REPO_ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    cfg = doc["config"]
    template_pool = cfg["llm-fleet:pools"][0]
    template_model = cfg["llm-fleet:models"][0]
    # distinct schedules per pool (window start and pre-warm vary), so no per-schedule cache flatters it
    cfg["llm-fleet:pools"] = [
        {**template_pool, "name": f"p{i:03d}",
         "schedule": {**template_pool["schedule"], "prewarmMinutes": 10 + i % 20,
                      "windows": [{**w, "start": f"{6 + i % 6:02d}:{(i * 5) % 60:02d}"}
                                  for w in template_pool["schedule"]["windows"]]}}
        for i in range(pools)]
    cfg["llm-fleet:models"] = [{**template_model, "name": f"m{i:03d}", "pool": f"p{i:03d}"} for i in range(pools)]
    return doc


def measure(pools: int, directory: Path) -> dict[str, Any]:
    from infra.planning.plan import build_plan
    from infra.stack.config import load_stack_file
    from scripts.render import render

    path = directory / f"Pulumi.bench{pools}.yaml"
    path.write_text(yaml.safe_dump(stack_document(pools), sort_keys=False))
    started = time.perf_counter()
    build_plan(load_stack_file(path))
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    records = render(path)
    render_s = time.perf_counter() - started
    return {"pools": pools, "planSeconds": round(plan_s, 3), "renderSeconds": round(render_s, 2),
            "resources": len(records), "msPerResource": round(1000 * render_s / len(records), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=int, nargs="+", default=list(SIZES), help="stack sizes (pools)")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        measure(1, Path(tmp))          # warm-up: imports and the first event loop are not the render's cost
        if not args.json:
            print(f"{'pools':>5}  {'plan s':>7}  {'render s':>8}  {'resources':>9}  {'ms/resource':>11}")
        for n in args.pools:
            row = measure(n, Path(tmp))
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['pools']:>5}  {row['planSeconds']:>7.3f}  {row['renderSeconds']:>8.2f}  "
                      f"{row['resources']:>9}  {row['msPerResource']:>11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
