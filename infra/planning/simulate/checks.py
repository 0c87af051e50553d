"""What `fleet simulate` records while it runs: requests, cost, GPU hours, cold starts, a per-pool
timeline, every write to a node group's size, and the violations of the one-owner design:

- `scale-down-under-load`: a replica (or its node) removed while it had requests in flight;
- `not-ready-at-window-start`: at a window's local start, fewer Ready replicas than its cron asks for;
- `flap`: a pool launched a node again within its cold start of removing one;
- `fallback-with-capacity`: a request sent to the managed API while a private replica of that model
  was Ready and not saturated;
- `conflict`: two controllers set a pool's size to different numbers within 10 minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from infra.planning.simulate.inputs import PoolIn, SimInput

CONFLICT_MINUTES = 10
SLOT_MINUTES = 30                 # one character of the text timeline


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


@dataclass
class Recorder:
    sim: SimInput
    warmup: int
    origin: datetime
    requests_total: float = 0.0
    fallback_total: float = 0.0
    unserved_total: float = 0.0
    cost: float = 0.0
    gpu_hours: dict[str, float] = field(default_factory=dict)
    cold_starts: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    writes: dict[str, list[tuple[int, str, int]]] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    timeline: dict[str, list[int]] = field(default_factory=dict)   # per pool, per minute: Ready nodes (-1 booting)
    failed_launches: int = 0
    _fallback_open: set[str] = field(default_factory=set)

    def _at(self, minute: int) -> datetime:
        return self.origin + timedelta(minutes=minute)

    def counted(self, minute: int) -> bool:
        return minute >= self.warmup

    def violation(self, minute: int, kind: str, pool: str | None, detail: str) -> None:
        if self.counted(minute):
            self.violations.append({"kind": kind, "pool": pool, "at": iso(self._at(minute)), "detail": detail})

    # ------------------------------------------------------------------ events from the engine
    def write(self, minute: int, pool: str, who: str, desired: int) -> None:
        history = self.writes.setdefault(pool, [])
        for when, other, size in reversed(history):
            if minute - when > CONFLICT_MINUTES:
                break
            if other != who and size != desired:
                self.violation(minute, "conflict", pool,
                               f"{who} set {desired} node(s) {minute - when} min after {other} set {size}")
                break
        history.append((minute, who, desired))

    def launch(self, minute: int, pool: PoolIn) -> None:
        gone = self.removed.get(pool.name)
        if gone is not None and (minute - gone) * 60 < pool.cold_start_seconds:
            self.violation(minute, "flap", pool.name,
                           f"a node launched {minute - gone} min after one was removed; the pool's cold start is "
                           f"{pool.cold_start_seconds // 60} min")

    def launch_failed(self, minute: int, pool: PoolIn) -> None:
        if self.counted(minute):
            self.failed_launches += 1

    def node_removed(self, minute: int, pool: PoolIn) -> None:
        self.removed[pool.name] = minute

    def replica_removed(self, minute: int, replica: Any, lost: float) -> None:
        if lost > 0:
            pool = replica.nodes[0].pool if replica.nodes else None
            self.violation(minute, "scale-down-under-load", pool,
                           f"replica of {replica.workload.name} removed with {lost:.1f} request(s) in flight "
                           f"({'no preStop drain' if not replica.workload.drains else 'grace period too short'})")

    def cold_start(self, replica: Any, pool: PoolIn, created: int, ready: int) -> None:
        if self.counted(ready):
            self.cold_starts.append({"pool": pool.name, "model": replica.workload.model,
                                     "at": iso(self._at(max(created, 0))), "readyAt": iso(self._at(ready))})

    def requests(self, minute: int, model: str, offered: float, fallback: float, unserved: float,
                 spare: Sequence[Any]) -> None:
        if not self.counted(minute):
            return
        self.requests_total += offered
        self.fallback_total += fallback
        self.unserved_total += unserved
        if fallback > 0 and spare:
            if model not in self._fallback_open:
                names = sorted({r.workload.name for r in spare})
                self.violation(minute, "fallback-with-capacity", spare[0].nodes[0].pool if spare[0].nodes else None,
                               f"{model}: {fallback:.0f} request(s)/min sent to the managed API while "
                               f"{', '.join(names)} had a Ready replica with room (not routed by the gateway?)")
                self._fallback_open.add(model)
        else:
            self._fallback_open.discard(model)

    def window_start(self, minute: int, pool: str, expected: int, ready: int) -> None:
        if ready < expected:
            self.violation(minute, "not-ready-at-window-start", pool,
                           f"{ready} of {expected} replica(s) Ready at the window's start")

    def minute(self, minute: int, groups: Mapping[str, Any], replicas: Mapping[str, Any]) -> None:
        if not self.counted(minute):
            return
        for name, g in groups.items():
            nodes = [n for n in g.nodes if n.fails_at is None]       # a spot launch that fails is not billed
            self.cost += len(nodes) * g.pool.hourly_usd / 60
            self.gpu_hours[name] = self.gpu_hours.get(name, 0.0) + len(nodes) * g.pool.gpus_per_node / 60
            ready = sum(1 for n in nodes if minute >= n.ready_at and n.fails_at is None)
            self.timeline.setdefault(name, []).append(ready if ready or not nodes else -1)

    # ------------------------------------------------------------------ report
    def result(self, start: datetime, days: float, notes: Sequence[str]) -> dict[str, Any]:
        return {
            "stack": self.sim.stack, "start": start.isoformat(), "days": days,
            "requests": round(self.requests_total), "fallbackRequests": round(self.fallback_total),
            "unservedRequests": round(self.unserved_total),
            "costUSD": round(self.cost, 2), "planCostUSD": round(self.sim.plan_monthly_usd * days / (365 / 12), 2),
            "gpuHours": {k: round(v, 1) for k, v in sorted(self.gpu_hours.items())},
            "failedSpotLaunches": self.failed_launches,
            "coldStarts": self.cold_starts,
            "violations": self.violations,
            "notes": list(notes),
        }


def text(result: Mapping[str, Any], timeline: Mapping[str, list[int]], start: datetime) -> str:
    """Per pool, one line a day: a character per 30 minutes (Ready nodes, '+' booting, '.' none)."""
    out = [f"stack {result['stack']}: {result['days']:g} day(s) from {result['start']}", ""]
    for pool, series in sorted(timeline.items()):
        out.append(f"{pool} (Ready nodes per {SLOT_MINUTES} min, from {start.strftime('%H:%M %z')})")
        for day in range(0, len(series), 1440):
            chunk = series[day:day + 1440]
            line = ""
            for s in range(0, len(chunk), SLOT_MINUTES):
                slot = chunk[s:s + SLOT_MINUTES]
                top = max(slot)
                line += "." if top == 0 else "+" if top < 0 else str(min(top, 9))
            out.append(f"  {(start + timedelta(days=day // 1440)).strftime('%a %m-%d')}  {line}")
        out.append("")
    out.append(f"requests {result['requests']:,}, fallback {result['fallbackRequests']:,}, "
               f"unserved {result['unservedRequests']:,}")
    out.append(f"cost ${result['costUSD']:,.2f} (plan ${result['planCostUSD']:,.2f} for the same days); GPU hours "
               + ", ".join(f"{k} {v:,.1f}" for k, v in result["gpuHours"].items()))
    out.append(f"cold starts {len(result['coldStarts'])}, failed spot launches {result['failedSpotLaunches']}")
    out.append(f"violations: {len(result['violations'])}")
    out += [f"  {v['kind']}  {v['pool']}  {v['at']}  {v['detail']}" for v in result["violations"]]
    out += [f"note: {n}" for n in result["notes"]]
    return "\n".join(out) + "\n"
