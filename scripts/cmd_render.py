"""Run the real Pulumi program offline under Pulumi's mocks runtime and print every resource it
registers: a readable tree, or with --json one JSON array of {type, name, parent, inputs} (the
inputs as the engine receives them, camelCase, secrets masked). No credentials, no Pulumi CLI."""

from __future__ import annotations

import argparse
import json
import sys

from scripts.common import UserError, add_stack_args, load_stack, stack_path

HELP = "print every resource the program would create (offline, deterministic)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON array")


def render_records(args: argparse.Namespace) -> list[dict]:
    """Run the program under mocks. A bad stack file is refused with `fleet plan`'s message: file and
    YAML errors by loading it here, schema and sizing errors by the program, which plans the same way."""
    try:
        import pulumi
    except ImportError:
        raise UserError("needs the Pulumi SDK and providers, which the light install (`pip install -e .`, "
                        "enough for plan and the jobs) leaves out: pip install -e '.[deploy]'") from None

    from scripts.render import CloudRefusal, render

    load_stack(args)
    try:
        return render(stack_path(args))
    except pulumi.RunError as err:
        raise UserError(str(err)) from None
    except CloudRefusal as err:
        raise UserError(f"the cloud would refuse this stack at `pulumi preview`: {err}") from None


def dumps(records: list[dict]) -> str:
    return json.dumps(records, indent=1, sort_keys=True) + "\n"


def run(args: argparse.Namespace) -> int:
    from scripts.render import to_tree

    records = render_records(args)
    sys.stdout.write(dumps(records) if args.json else to_tree(records))
    return 0
