"""Refresh the reviewed golden renders: `python -m scripts.golden` (all shipped stacks) or name stacks.

Review the diff of tests/golden/ before committing it: it is what the program will create."""

from __future__ import annotations

import sys
from pathlib import Path

from scripts.cmd_render import dumps
from scripts.common import REPO_ROOT
from scripts.render import render

GOLDEN = REPO_ROOT / "tests" / "golden"


def shipped_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (REPO_ROOT / "stacks").glob("Pulumi.*.yaml"))


def golden_path(stack: str) -> Path:
    return GOLDEN / f"{stack}.json"


def main(argv: list[str] | None = None) -> int:
    stacks = (argv if argv is not None else sys.argv[1:]) or shipped_stacks()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for stack in stacks:
        text = dumps(render(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml"))
        path = golden_path(stack)
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        print(f"{path.relative_to(REPO_ROOT)}: {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
