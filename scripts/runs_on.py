"""Where the workflows preview and deploy each stack, read from the stack files (`ci:`), as GitHub Actions
step outputs. A private-endpoint stack deploys from the CodeBuild runner it makes in its VPC; until that
runner exists (the first deploy) its bootstrap run goes on a GitHub-hosted runner and creates only the
VPC and the runner (README "First deploy of a private stack").

    python -m scripts.runs_on --projects dev staging prod
        the CodeBuild runner projects of those stacks, space-separated (the workflow asks AWS which exist)
    python -m scripts.runs_on --run-id ID --attempt N --existing "p1 p2" dev staging prod >> "$GITHUB_OUTPUT"
        runs_on / preview_on / bootstrap: JSON objects keyed by stack
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.stack import names
from infra.stack.config import load_stack_file
from infra.stack.reader import ConfigError
from infra.stack.spec import StackConfig

STACKS = Path(__file__).resolve().parent.parent / "stacks"
BOOTSTRAP_RUNNER = ["ubuntu-24.04"]


def routes(configs: dict[str, StackConfig], run_id: str, attempt: str, existing: set[str]) -> dict[str, dict]:
    """Per stack: the deploy job's labels, the preview job's labels, and whether a bootstrap run comes first."""
    runs_on, preview_on, bootstrap = {}, {}, {}
    for stack, cfg in configs.items():
        labels = names.runs_on(cfg, run_id, attempt)
        first = cfg.ci.runner == "codebuild" and names.runner_project(cfg) not in existing
        runs_on[stack], bootstrap[stack] = labels, first
        preview_on[stack] = BOOTSTRAP_RUNNER if first else labels
    return {"runs_on": runs_on, "preview_on": preview_on, "bootstrap": bootstrap}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.runs_on", description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="+", metavar="STACK")
    parser.add_argument("--projects", action="store_true", help="print the stacks' CodeBuild runner projects")
    parser.add_argument("--run-id", default="0")
    parser.add_argument("--attempt", default="1")
    parser.add_argument("--existing", default="", help="space-separated runner projects that exist")
    args = parser.parse_args(argv)
    try:
        configs = {s: load_stack_file(STACKS / f"Pulumi.{s}.yaml") for s in args.stacks}
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.projects:
        print(" ".join(names.runner_project(c) for c in configs.values() if c.ci.runner == "codebuild"))
        return 0
    for key, value in routes(configs, args.run_id, args.attempt, set(args.existing.split())).items():
        print(f"{key}={json.dumps(value, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
