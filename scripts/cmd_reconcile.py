"""Put every pool at what its schedule wants now (pre-warm included), honouring unexpired overrides
and removing expired ones; change only what differs. Run it every few minutes: it also repairs drift,
and a run with nothing to do changes nothing.

Every action is one JSON line on stdout. A scale-down waits for the pool's engines to drain (bounded
by jobs.drainTimeoutSeconds) and does not happen if they do not. Exit status: 0 done, 2 user error
(nothing changed), 3 another run holds the stack's lock (nothing changed)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, TextIO

import requests
from botocore.exceptions import ClientError

from infra.planning.catalog import CatalogError, load_catalog
from infra.planning.fleetops import Action, NodeGroup, Price, hold, plan_reconcile, pool_prices
from infra.stack import names
from infra.stack.spec import StackConfig
from scripts import aws, metrics
from scripts.common import UserError, add_stack_args, emit, load_stack, parse_iso

HELP = "put every pool at its scheduled size (run it every few minutes)"
BUSY = 3


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


def add_job_arguments(parser: argparse.ArgumentParser, *, at: bool = True, drain: bool = True) -> None:
    add_stack_args(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON lines; change nothing")
    if at:
        parser.add_argument("--at", metavar="ISO-TIME",
                            help="act as if it were this instant, with an offset or Z (default: now)")
    if drain:
        parser.add_argument("--prometheus-url", metavar="URL", help="Prometheus for engine metrics "
                            "(default: the stack's jobs.prometheusUrl)")
        parser.add_argument("--metrics-url", metavar="POOL=URL", action="append", default=[],
                            help="a Prometheus text page (engine /metrics) for a pool; repeatable")
        parser.add_argument("--drain-timeout", type=int, metavar="SECONDS",
                            help="how long a scale-down waits for requests to finish "
                                 "(default: jobs.drainTimeoutSeconds)")
        parser.add_argument("--no-drain-check", action="store_true",
                            help="scale down without reading engine metrics (live requests may be cut)")


def parse_time(text: str, flag: str) -> datetime:
    return parse_iso(text, flag).astimezone(UTC)


class Job:
    """One run of one job on one stack: config, clients, the instant, the output."""

    def __init__(self, args: argparse.Namespace, deps: Deps, command: str):
        self.args, self.deps, self.command = args, deps, command
        self.cfg: StackConfig = load_stack(args)
        if self.cfg.cluster.existing is not None:
            raise UserError(f"stack {self.cfg.stack} runs on an existing cluster (cluster.existing): its pools are "
                            "not EKS node groups this program made, so the jobs have nothing to scale; size them "
                            "with that cluster's own tools")
        at = getattr(args, "at", None)
        self.at = parse_time(at, "--at") if at else deps.clock()
        self.dry_run = bool(getattr(args, "dry_run", False))
        self.pages: dict[str, list[str]] = {}
        for item in getattr(args, "metrics_url", None) or []:
            pool, sep, page = item.partition("=")
            if not sep or not page or pool not in {p.name for p in self.cfg.pools}:
                raise UserError(f"--metrics-url {item!r}: expected POOL=URL with a pool of this stack")
            self.pages.setdefault(pool, []).append(page)
        self.session = deps.session(self.cfg.region)
        self._drain_start: float | None = None

    @cached_property
    def eks(self) -> Any:
        return self.deps.client(self.session, "eks")

    @cached_property
    def ec2(self) -> Any:
        return self.deps.client(self.session, "ec2")

    @cached_property
    def prices(self) -> dict[str, Price | None]:
        try:
            return pool_prices(self.cfg, load_catalog())
        except CatalogError:
            return {}

    def emit(self, **fields: Any) -> None:
        extra = {"at": self.at.isoformat(timespec="seconds")} if getattr(self.args, "at", None) else {}
        emit(self.deps.out or sys.stdout, stack=self.cfg.stack, **fields, **extra, dryRun=self.dry_run)

    def emit_action(self, action: Action) -> None:
        self.emit(**action.record())

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
        lock = aws.StackLock(s3, bucket, self.cfg.stack, self.command, clock=self.deps.clock)
        with lock:
            yield lock

    # ------------------------------------------------------------------ drain and apply

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

    def drain(self, action: Action, lock: aws.StackLock | None) -> Action:
        """A scale-down only after the pool's requests finish; otherwise a hold. The bound is per run,
        not per pool, so a run (and its lock) lasts at most about drainTimeoutSeconds."""
        if not action.scale_down or getattr(self.args, "no_drain_check", False):
            return action
        source = self.metrics
        timeout = self.args.drain_timeout if getattr(self.args, "drain_timeout", None) is not None \
            else self.cfg.jobs.drain_timeout_seconds
        if source is None:
            return hold(action, "no engine metrics configured (jobs.prometheusUrl, --prometheus-url or "
                                "--metrics-url); --no-drain-check skips this check")
        where = ", ".join(([self.prometheus_url] if self.prometheus_url else [])
                          + [u for pages in self.pages.values() for u in pages])
        if self.dry_run:
            now = source.in_flight(action.pool)
            shown = f"unknown (cannot read {where})" if now is None else f"{now:g}"
            return _note(action, f"would wait up to {timeout} s for drain; in flight now: {shown}")
        if self._drain_start is None:
            self._drain_start = self.deps.monotonic()
        left = max(0.0, timeout - (self.deps.monotonic() - self._drain_start))
        if lock is not None:
            lock.extend(timedelta(seconds=left) + timedelta(minutes=5))
        result = metrics.wait_for_drain(lambda: source.in_flight(action.pool), left,
                                        clock=self.deps.monotonic, sleep=self.deps.sleep,
                                        interval=self.deps.poll_seconds)
        if not result.drained:
            return hold(action, result.reason + ("" if result.in_flight is not None else f" (tried {where})"))
        return _note(action, result.reason)

    def execute(self, actions: Sequence[Action], groups: dict[str, NodeGroup],
                lock: aws.StackLock | None) -> list[Action]:
        """Drain-check, apply (unless dry run) and print each action; returns what was done."""
        done = []
        for action in actions:
            action = self.drain(action, lock)
            if action.changes and not self.dry_run:
                try:
                    aws.apply(self.eks, self.cfg, groups[action.pool], action.scaling, dict(action.set_tags),
                              list(action.remove_tags), self.deps.sleep)
                except ClientError as err:
                    if aws.error_code(err) != "ResourceInUseException":
                        raise
                    action = Action(action.pool, "skip", action.current, None,
                                    f"{action.reason}; node group busy ({err}): the next run retries")
            self.emit_action(action)
            done.append(action)
        return done


def _note(action: Action, text: str) -> Action:
    return replace(action, reason=f"{action.reason}; {text}")


def run_locked(job: Job, body: Callable[[aws.StackLock | None], int]) -> int:
    """Check, lock, re-read under the lock (in `body`), act; a held lock exits BUSY, changing nothing."""
    try:
        with job.locked() as lock:
            return body(lock)
    except aws.LockBusy as err:
        print(f"fleet {job.command}: {err}", file=sys.stderr)
        return BUSY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)


def run(args: argparse.Namespace, deps: Deps | None = None) -> int:
    job = Job(args, deps or Deps(), "reconcile")
    job.groups()                             # a missing node group stops here, before any lock or change

    def body(lock: aws.StackLock | None) -> int:
        groups = job.groups()
        job.execute(plan_reconcile(job.cfg, job.at, groups, job.prices), groups, lock)
        return 0

    return run_locked(job, body)

