"""`fleet`: the one CLI around `pulumi up`. Every subcommand shares the stack flags, prints user
errors as one line with exit status 2, and (for jobs) one JSON line per action on stdout."""

from __future__ import annotations

import argparse
import importlib
import sys

from infra.planning.catalog import CatalogError
from infra.planning.hub import HubError
from infra.planning.sizing import SizingError
from infra.stack.reader import ConfigError
from scripts.common import run_command

# name -> module under scripts/ exposing add_arguments(parser), run(args) and HELP
COMMANDS = {
    "plan": "scripts.cmd_plan",
    "render": "scripts.cmd_render",
    "diff": "scripts.cmd_diff",
    "status": "scripts.cmd_status",
    "scale": "scripts.cmd_scale",
    "reconcile": "scripts.cmd_reconcile",
    "capacity": "scripts.cmd_capacity",
    "sweep": "scripts.cmd_sweep",
    "simulate": "scripts.cmd_simulate",
}
USER_ERRORS = (ConfigError, SizingError, CatalogError, HubError)


class _Parser(argparse.ArgumentParser):
    """Usage errors are user errors too: one line, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All subcommands; with `only`, import just that command's module (the others get a bare entry),
    so `fleet plan` never loads what the AWS jobs import (boto3, requests)."""
    parser = _Parser(prog="fleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(func=module.run, user_errors=getattr(module, "USER_ERRORS", ()))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(first if first in COMMANDS else None).parse_args(argv)
    return run_command(args.func, args, USER_ERRORS + tuple(args.user_errors))


if __name__ == "__main__":
    sys.exit(main())
