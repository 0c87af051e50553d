"""What every scaling job shares: the stack (the local file, or with --deployed the copy the last
`pulumi up` stored), AWS clients, the instant, the stack lock, applying node-group changes pool by pool
and the exit status. Exit status (docs/jobs.md): 0 done; 1 not all done (the JSON lines say which pool
was skipped, held, missing or failed, and `changed` says what did change); 2 user error, nothing
changed; 3 another run holds the stack's lock, nothing changed; 4 AWS could not be read or answered
unexpectedly (the JSON lines above it are what was done); 5 `fleet scale --wait` could not check
readiness (unknown)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

import requests
from botocore.exceptions import ClientError

from infra.planning.catalog import CatalogError, load_catalog
from infra.planning.fleetops import Action, NodeGroup, Price, pool_prices
from infra.stack import names
from infra.stack.config import load_stack_file
from infra.stack.spec import StackConfig
from infra.stack.windows import Schedule
from scripts import aws, metrics
from scripts.common import UserError, add_stack_args, emit, load_stack, parse_iso

DONE, PARTIAL, BUSY, UNKNOWN = 0, 1, 3, 5
NOT_DONE = frozenset({"skip", "hold", "missing", "error"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """Everything a job touches outside itself, so tests can inject it."""
    clock: Callable[[], datetime] = _now
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    session: Callable[[str], Any] = aws.session
    client: Callable[[Any, str], Any] = aws.client
    http: requests.Session = field(default_factory=requests.Session)
    ready_nodes: Callable[[str], int | None] = metrics.ready_nodes_kubectl
    out: TextIO | None = None
    poll_seconds: float = 15.0


def add_job_arguments(parser: argparse.ArgumentParser, *, at: bool = True, metrics_args: bool = False,
                      lock: bool = True) -> None:
    add_stack_args(parser)
    parser.add_argument("--deployed", action="store_true",
                        help="act on the stack as the last `pulumi up` stored it in the stack's bucket "
                             "(the scheduled jobs do), not on the local file")
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON lines; change nothing")
    if at:
        parser.add_argument("--at", metavar="ISO-TIME",
                            help="act as if it were this instant, with an offset or Z (default: now); "
                                 "a command that changes something takes it only with --dry-run")
    if lock:
        parser.add_argument("--break-lock", action="store_true",
                            help="take the stack's lock over from a run that died holding it")
    if metrics_args:
        parser.add_argument("--prometheus-url", metavar="URL", help="Prometheus for engine metrics "
                            "(default: the stack's jobs.prometheusUrl)")
        parser.add_argument("--metrics-url", metavar="POOL=URL", action="append", default=[],
                            help="a Prometheus text page (engine /metrics) for a pool; repeatable")


def parse_time(text: str, flag: str) -> datetime:
    return parse_iso(text, flag).astimezone(UTC)


class Job:
    """One run of one job on one stack: config, clients, the instant, the output."""

    def __init__(self, args: argparse.Namespace, deps: Deps, command: str, *, mutating: bool = True):
        self.args, self.deps, self.command = args, deps, command
        self.dry_run = bool(getattr(args, "dry_run", False))
        at = getattr(args, "at", None)
        if at and mutating and not self.dry_run:
            raise UserError(f"--at {at}: `fleet {command}` would change the real fleet as if it were another "
                            "time; add --dry-run to see what it would do then")
        self.cfg: StackConfig = load_stack(args)
        if self.cfg.cluster.existing is not None:
            raise UserError(f"stack {self.cfg.stack} runs on an existing cluster (cluster.existing): its pools are "
                            "not EKS node groups this program made, so the jobs have nothing to scale; size them "
                            "with that cluster's own tools")
        self.at = parse_time(at, "--at") if at else deps.clock()
        self.pages: dict[str, list[str]] = {}
        for item in getattr(args, "metrics_url", None) or []:
            pool, sep, page = item.partition("=")
            if not sep or not page or pool not in {p.name for p in self.cfg.pools}:
                raise UserError(f"--metrics-url {item!r}: expected POOL=URL with a pool of this stack")
            self.pages.setdefault(pool, []).append(page)
        self.session = deps.session(self.cfg.region)
        if getattr(args, "deployed", False):
            self.cfg = self._deployed()

    def _deployed(self) -> StackConfig:
        """The stack file the last `pulumi up` stored (names.deployed_key) in the stack's bucket; the
        local file only says where that bucket is."""
        s3 = self.deps.client(self.session, "s3")
        bucket = names.bucket_name(self.cfg, aws.account_id(self.deps.client(self.session, "sts")))
        key = names.deployed_key(self.cfg.stack)
        try:
            with aws.user_errors(f"s3://{bucket}/{key}"):
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as err:
            if aws.error_code(err) in ("NoSuchKey", "NoSuchBucket", "404"):
                raise UserError(f"--deployed: no s3://{bucket}/{key}; run `pulumi up -s {self.cfg.stack}` once with "
                                "this version (it stores the deployed stack there)") from None
            raise
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"Pulumi.{self.cfg.stack}.yaml"
            path.write_bytes(body)
            return load_stack_file(path)

    @cached_property
    def eks(self) -> Any:
        return self.deps.client(self.session, "eks")

    @cached_property
    def ec2(self) -> Any:
        return self.deps.client(self.session, "ec2")

    @cached_property
    def schedules(self) -> dict[str, Schedule]:
        """The schedules the plan gives the pools (pre-warm defaulted, short gaps merged); the stack's
        own when the plan cannot be built here (model facts may need the hub)."""
        from infra.planning.hub import HubError
        from infra.planning.plan import build_plan
        from infra.planning.sizing import SizingError
        try:
            return dict(build_plan(self.cfg).schedules)
        except (SizingError, CatalogError, HubError):
            return {p.name: p.schedule for p in self.cfg.pools if p.schedule is not None}

    @cached_property
    def prices(self) -> dict[str, Price | None]:
        try:
            return pool_prices(self.cfg, load_catalog())
        except CatalogError:
            return {}

    def emit(self, **fields: Any) -> None:
        extra = {"at": self.at.isoformat(timespec="seconds")} if getattr(self.args, "at", None) else {}
        emit(self.deps.out or sys.stdout, stack=self.cfg.stack, **fields, **extra, dryRun=self.dry_run)

    def emit_action(self, action: Action, changed: bool = False) -> None:
        self.emit(**action.record(), changed=changed)

    def groups(self) -> dict[str, NodeGroup]:
        return aws.describe_groups(self.eks, self.cfg)

    @contextmanager
    def locked(self) -> Iterator[aws.StackLock | None]:
        """The stack's lock, unless this is a dry run (which writes nothing, not even a lock)."""
        if self.dry_run:
            yield None
            return
        sts, s3 = self.deps.client(self.session, "sts"), self.deps.client(self.session, "s3")
        bucket = names.bucket_name(self.cfg, aws.account_id(sts))
        lock = aws.StackLock(s3, bucket, self.cfg.stack, self.command, clock=self.deps.clock,
                             break_lock=bool(getattr(self.args, "break_lock", False)))
        with lock:
            if lock.broken is not None:
                held = lock.broken
                self.emit(pool=None, action="break-lock", reason=f"took the lock over from {held.get('owner')} "
                          f"(pid {held.get('pid')}, {held.get('command')}, until {held.get('expires')})")
            yield lock

    @cached_property
    def metrics(self) -> metrics.Source | None:
        sources: list[metrics.Source] = []
        if self.prometheus_url:
            sources.append(metrics.Prometheus(self.prometheus_url, self.deps.http))
        if self.pages:
            sources.append(metrics.Scrape(self.pages, self.deps.http))
        return metrics.FirstOf(sources) if sources else None

    @property
    def prometheus_url(self) -> str | None:
        return (getattr(self.args, "prometheus_url", None) or self.cfg.jobs.prometheus_url
                or self.cfg.monitoring.prometheus_url)

    def execute(self, actions: Sequence[Action], groups: dict[str, NodeGroup]) -> list[tuple[Action, bool]]:
        """Apply (unless dry run) and print each action, pool by pool: one pool's failure is that pool's
        `error` line, never the end of the run. Returns (action, changed) pairs."""
        done = []
        for action in actions:
            changed = False
            if action.changes and not self.dry_run:
                try:
                    aws.apply(self.eks, self.cfg, groups[action.pool], action.scaling, dict(action.set_tags),
                              list(action.remove_tags), self.deps.sleep)
                    changed = True
                except aws.ApplyFailed as err:
                    busy = "ResourceInUseException" in str(err)
                    left = "" if err.left else "; nothing changed"
                    action = replace(action, kind="skip" if busy else "error", scaling=None, set_tags={},
                                     remove_tags=(), hourly_saving_usd=None,
                                     reason=f"{action.reason}; not done: {err}{left}"
                                            + ("; the next run retries" if busy else ""))
                except UserError as err:          # e.g. AccessDenied on this node group only
                    action = replace(action, kind="error", scaling=None, set_tags={}, remove_tags=(),
                                     hourly_saving_usd=None, reason=f"{action.reason}; not done: {err}")
            self.emit_action(action, changed)
            done.append((action, changed))
        return done


def exit_status(done: Sequence[tuple[Action, bool]]) -> int:
    return PARTIAL if any(a.kind in NOT_DONE for a, _ in done) else DONE


def run_locked(job: Job, body: Callable[[aws.StackLock | None], int]) -> int:
    """Check, lock, re-read under the lock (in `body`), act; a held lock exits BUSY, changing nothing."""
    try:
        with job.locked() as lock:
            return body(lock)
    except aws.LockBusy as err:
        print(f"fleet {job.command}: {err}", file=sys.stderr)
        return BUSY
