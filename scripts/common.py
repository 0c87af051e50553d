"""What every `fleet` command shares: stack selection, user errors (exit 2, one line), JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from infra.stack.config import load_stack_file
from infra.stack.spec import StackConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class UserError(Exception):
    """Something the user can fix: printed as one line, exit status 2, nothing changed."""


def stacks_dir() -> Path:
    env = os.environ.get("LLMFLEET_STACKS_DIR")
    if env:
        return Path(env)
    local = Path.cwd() / "stacks"
    return local if local.is_dir() else REPO_ROOT / "stacks"


def add_stack_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--stack", metavar="NAME", help="stack name: reads stacks/Pulumi.NAME.yaml")
    group.add_argument("--stack-file", metavar="PATH", help="a Pulumi.<stack>.yaml file anywhere")


def stack_path(args: argparse.Namespace) -> Path:
    if args.stack_file:
        return Path(args.stack_file)
    path = stacks_dir() / f"Pulumi.{args.stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir().glob("Pulumi.*.yaml"))
        raise UserError(f"--stack {args.stack}: no {path}; stacks here: {', '.join(known) or '(none)'}")
    return path


def load_stack(args: argparse.Namespace) -> StackConfig:
    """The stack as the program runs it (`prewarmMinutes: auto` set from the modeled cold start), so the
    jobs scale on the same lead as the EventBridge schedules and KEDA."""
    from infra.planning.plan import with_prewarm

    return with_prewarm(load_stack_file(stack_path(args)))


def parse_iso(text: str, flag: str) -> datetime:
    """An ISO 8601 instant with an offset (or Z), as the user wrote it; anything else is a user error."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{flag} {text!r} is not an ISO time such as 2026-11-20T09:00+08:00") from None
    if moment.tzinfo is None:
        raise UserError(f"{flag} {text!r} has no UTC offset; add one (e.g. +08:00) or Z for UTC")
    return moment


def emit(stream: TextIO, **fields: Any) -> None:
    """One JSON line per action, in the order the fields are given, with the time first."""
    record = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **fields}
    stream.write(json.dumps(record, sort_keys=False, default=str) + "\n")
    stream.flush()


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                user_errors: tuple[type[BaseException], ...]) -> int:
    try:
        return func(args)
    except (UserError, *user_errors) as err:
        # one line whatever the message holds (a hub or provider error may carry newlines)
        print(f"fleet {args.command}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:
        from scripts.aws_errors import AWS_FAILURE, describe_error, is_aws_error  # botocore: only on a failure
        if not is_aws_error(err):
            raise
        print(f"fleet {args.command}: AWS error: {describe_error(err)}; the JSON lines above (if any) are "
              "what was done; run again, or see docs/jobs.md", file=sys.stderr)
        return AWS_FAILURE
