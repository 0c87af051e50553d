"""The discrete-time simulation (1-minute steps) of a rendered stack's capacity control loops.

Each step, in order: EventBridge schedules fire (at their local times); the jobs run at their cron
(`fleet reconcile` through the same pure decisions the job uses, infra.planning.fleetops); the gateway
routes the offered requests (private Ready replicas first, the managed fallback only when the model has
no Ready private replica it routes to); KEDA evaluates every ScaledObject (cron and queue triggers,
activation from zero, cooldownPeriod to zero, the HPA's stabilization windows and pod policies);
replicas that KEDA removes go through the preStop drain; Pending replicas are placed, and
cluster-autoscaler adds nodes for what cannot be placed (the priority expander's order, a spot group
that fails to launch is backed off and the next group tried) and removes nodes empty for its
scale-down-unneeded time; nodes boot for the modeled node boot and replicas load for the modeled
engine start. Violations are recorded as they happen (infra.planning.simulate.checks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from infra.planning.schedule import intervals
from infra.planning.simulate import cron
from infra.planning.simulate.checks import Recorder
from infra.planning.simulate.inputs import (
    BACKOFF_SECONDS,
    REQUEST_SECONDS,
    SPOT_FAILURE_SECONDS,
    SimInput,
    WorkloadIn,
)
from infra.planning.simulate.state import Group, KedaState, Node, Replica

STEP = 60
WARMUP_MINUTES = 24 * 60          # simulated, not reported: the fleet has been running before `start`
CRON_LOOKBACK_DAYS = 8            # to know which cron triggers are already active at the warm-up start


class Simulation:
    def __init__(self, sim: SimInput, start: datetime, minutes: int, rpm: dict[str, Sequence[float]],
                 spot_unavailable: Sequence[tuple[datetime, datetime]] = (),
                 reconcile: Callable[[datetime, dict[str, Group]], list[tuple[str, int, int, int]]] | None = None):
        self.sim, self.start, self.minutes = sim, start.astimezone(UTC), minutes
        self.origin = self.start - timedelta(minutes=WARMUP_MINUTES)
        self.total = minutes + WARMUP_MINUTES
        self.rpm = rpm
        self.spot_down = [(self._minute(a), self._minute(b)) for a, b in spot_unavailable]
        self.reconcile = reconcile
        self.rec = Recorder(sim, WARMUP_MINUTES, self.origin)
        self.groups = {p.name: Group(p, p.min_size, p.max_size, 0) for p in sim.pools}
        self.replicas: dict[str, list[Replica]] = {w.name: [] for w in sim.workloads}
        self.size = {w.name: (w.replicas if w.scaler is None else max(w.scaler.min_replicas, 0))
                     for w in sim.workloads}
        self.keda = {w.name: KedaState() for w in sim.workloads}
        self.waiting: dict[str, float] = {}
        self.next_node = 0
        self._crons()
        self._windows()
        self._warm_start()

    # ------------------------------------------------------------------ time
    def _minute(self, at: datetime) -> int:
        return int((at.astimezone(UTC) - self.origin).total_seconds() // 60)

    def at(self, minute: int) -> datetime:
        return self.origin + timedelta(minutes=minute)

    def _crons(self) -> None:
        """Per cron trigger, per minute: active or not (start fired more recently than end)."""
        lookback = CRON_LOOKBACK_DAYS * 1440
        locals_by_zone: dict[str, list[datetime]] = {}

        def local(zone: str) -> list[datetime]:
            if zone not in locals_by_zone:
                z = ZoneInfo(zone)
                locals_by_zone[zone] = [(self.origin + timedelta(minutes=m)).astimezone(z)
                                        for m in range(-lookback, self.total)]
            return locals_by_zone[zone]

        self.cron_active: dict[tuple[str, int], list[bool]] = {}
        for w in self.sim.workloads:
            for i, t in enumerate(w.scaler.crons if w.scaler else ()):
                start, end, times = cron.parse(t.start), cron.parse(t.end), local(t.timezone)
                state, out = False, []
                for m, moment in enumerate(times):
                    if start.matches(moment):
                        state = True
                    if end.matches(moment):
                        state = False
                    if m >= lookback:
                        out.append(state)
                self.cron_active[(w.name, i)] = out
        self.action_fires: dict[int, list] = {}
        for action in self.sim.actions:
            expr, times = cron.parse(action.cron), local(action.timezone)
            for m in range(self.total):
                if expr.matches(times[m + lookback]):
                    self.action_fires.setdefault(m, []).append(action)
        self.job_fires: set[int] = set()
        if self.sim.reconcile_cron and self.reconcile is not None:
            expr, times = cron.parse(self.sim.reconcile_cron), local("UTC")
            self.job_fires = {m for m in range(self.total) if expr.matches(times[m + lookback])}

    def _windows(self) -> None:
        """The minutes where a pool's window starts (its local start, after the pre-warm lead)."""
        self.window_starts: dict[int, list[str]] = {}
        end = self.origin + timedelta(minutes=self.total)
        for p in self.sim.pools:
            if p.schedule is None:
                continue
            lead = timedelta(minutes=p.schedule.prewarm_minutes)
            for i in intervals(p.schedule, self.origin, end):
                minute = self._minute(i.start + lead)
                if 0 <= minute < self.total:
                    self.window_starts.setdefault(minute, []).append(p.name)

    def _check_window(self, minute: int, pool: str) -> None:
        expected = ready = 0
        for w in self.sim.workloads:
            if not w.pools or w.pools[0] != pool or w.scaler is None:
                continue
            expected += max((t.desired for j, t in enumerate(w.scaler.crons)
                             if self.cron_active[(w.name, j)][minute]), default=0)
            ready += sum(1 for r in self.replicas[w.name] if r.ready(minute))
        self.rec.window_start(minute, pool, expected, ready)

    def _warm_start(self) -> None:
        """Nodes and Ready replicas for every workload's starting size, as after a long run."""
        for w in self.sim.workloads:
            for _ in range(self.size[w.name]):
                replica = Replica(w, -10**6, ready_at=-10**6)
                self.replicas[w.name].append(replica)
                if not self._place(replica, 0, warm=True):
                    self.replicas[w.name].remove(replica)
        for g in self.groups.values():
            g.desired = max(g.desired, len(g.nodes), g.min_size)
            while len(g.nodes) < g.desired:
                g.nodes.append(self._node(g.pool.name, -10**6, warm=True))

    def _node(self, pool: str, minute: int, warm: bool = False) -> Node:
        self.next_node += 1
        p = self.groups[pool].pool
        if warm:
            return Node(self.next_node, pool, minute, minute)
        node = Node(self.next_node, pool, minute, minute + math.ceil(p.boot_seconds / STEP))
        if p.capacity == "spot" and any(a <= minute < b for a, b in self.spot_down):
            node.fails_at = minute + math.ceil(SPOT_FAILURE_SECONDS / STEP)
        return node

    # ------------------------------------------------------------------ run
    def run(self) -> Recorder:
        for minute in range(self.total):
            for action in self.action_fires.get(minute, ()):
                self._write(minute, action.pool, "eventbridge", action.min_size, action.max_size, action.desired)
            if minute in self.job_fires:
                groups = self.groups
                for pool, low, high, desired in self.reconcile(self.at(minute), groups):
                    self._write(minute, pool, "fleet-reconcile", low, high, desired)
            self._nodes(minute)
            self._gateway(minute)
            self._keda(minute)
            self._drain(minute)
            self._schedule(minute)
            self._autoscaler(minute)
            for pool in self.window_starts.get(minute, ()):
                self._check_window(minute, pool)
            self.rec.minute(minute, self.groups, self.replicas)
        return self.rec

    # ------------------------------------------------------------------ node groups
    def _write(self, minute: int, pool: str, who: str, low: int | None, high: int | None,
               desired: int | None) -> None:
        g = self.groups[pool]
        g.min_size = g.min_size if low is None else low
        g.max_size = g.max_size if high is None else high
        if desired is not None and desired != g.desired:
            self.rec.write(minute, pool, who, desired)
            self._resize(minute, g, desired)

    def _resize(self, minute: int, g: Group, desired: int) -> None:
        live = [n for n in g.nodes if not n.leaving]
        for _ in range(desired - len(live)):
            g.nodes.append(self._node(g.pool.name, minute))
            self.rec.launch(minute, g.pool)
        surplus = len(live) - desired
        if surplus > 0:          # the ASG scales in: EKS drains the chosen nodes (eviction, preStop)
            self.rec.node_removed(minute, g.pool)
            for node in sorted(live, key=lambda n: (len(n.replicas) > 0, n.launched), reverse=False)[:surplus]:
                node.leaving = True
                for r in list(node.replicas):
                    self._evict(minute, r)
        g.desired = desired

    def _evict(self, minute: int, replica: Replica) -> None:
        """Eviction: the pod drains (preStop) and goes; its workload's size is unchanged, so a new
        Pending replica takes its place."""
        if not replica.draining:
            replica.draining = True
            self.replicas[replica.workload.name].append(Replica(replica.workload, minute))

    def _nodes(self, minute: int) -> None:
        for g in self.groups.values():
            for node in list(g.nodes):
                if node.fails_at is not None and minute >= node.fails_at:
                    g.nodes.remove(node)
                    for r in node.replicas:
                        r.nodes = []
                    g.backoff_until = minute + math.ceil(BACKOFF_SECONDS / STEP)
                    g.desired = max(0, g.desired - 1)
                    self.rec.write(minute, g.pool.name, "cluster-autoscaler", g.desired)
                    self.rec.launch_failed(minute, g.pool)
                elif node.leaving and not node.replicas:
                    g.nodes.remove(node)
                    self.rec.node_removed(minute, g.pool)

    # ------------------------------------------------------------------ gateway
    def _gateway(self, minute: int) -> None:
        self.waiting = {}
        i = minute - WARMUP_MINUTES
        for model, series in self.rpm.items():
            offered = series[i] if 0 <= i < len(series) else 0.0
            routed = [r for name in self.sim.routes.get(model, ()) for r in self.replicas.get(name, ())
                      if r.ready(minute)]
            capacity = sum(r.workload.capacity_rpm for r in routed)
            served = min(offered, capacity)
            for r in routed:
                r.load = served * r.workload.capacity_rpm / capacity if capacity else 0.0
            queued = offered - served if routed else 0.0
            fallback = offered if not routed and model in self.sim.fallbacks else 0.0
            unserved = offered if not routed and model not in self.sim.fallbacks else 0.0
            self.waiting[model] = queued * REQUEST_SECONDS / 60
            for r in routed:                          # the queue waits on the replicas' engines
                r.load += queued * r.workload.capacity_rpm / capacity
            spare = [r for w in self.sim.workloads if w.model == model for r in self.replicas[w.name]
                     if r.ready(minute) and r.load < r.workload.capacity_rpm]
            self.rec.requests(minute, model, offered, fallback, unserved, spare if fallback else [])
        for replicas in self.replicas.values():
            for r in replicas:
                if not r.ready(minute):
                    r.load = 0.0
                r.in_flight = r.load * REQUEST_SECONDS / 60

    # ------------------------------------------------------------------ KEDA + HPA
    def _keda(self, minute: int) -> None:
        for w in self.sim.workloads:
            s = w.scaler
            if s is None or minute % max(1, s.polling_seconds // STEP):
                continue                                  # KEDA polls every pollingInterval
            state, now = self.keda[w.name], minute * STEP
            cron_want = max((t.desired for j, t in enumerate(s.crons) if self.cron_active[(w.name, j)][minute]),
                            default=0)
            waiting = sum(self.waiting.get(m, 0.0) for m in s.queue_models) if s.queue_threshold else 0.0
            queue_want = math.ceil(waiting / s.queue_threshold) if s.queue_threshold and waiting > 0 else 0
            demand = s.wake and self.rpm.get(w.model) is not None and self._offered(w.model, minute) > 0
            active = cron_want > 0 or queue_want > 0 or demand
            if active:
                state.last_active = now
            current = self.size[w.name]
            # the HPA (min is at least 1 while KEDA keeps the target active) on the larger trigger
            raw = min(max(cron_want, queue_want, s.min_replicas, 1), s.max_replicas)
            state.history.append((now, raw))
            horizon = now - s.down_window_seconds
            while state.history and state.history[0][0] < horizon:
                state.history.pop(0)
            want = raw if raw >= current else max(r for _, r in state.history)
            new = current
            if want > current and now - state.last_up >= s.up_period_seconds:
                new, state.last_up = min(want, current + s.up_pods), now
            elif want < current and now - state.last_down >= s.down_period_seconds:
                new, state.last_down = max(want, current - s.down_pods), now
            if s.min_replicas == 0 and not active and now - state.last_active >= s.cooldown_seconds:
                new = 0
            if current == 0 and active:
                new = max(new, 1)
            if new != current:
                self._scale(minute, w, new)

    def _offered(self, model: str, minute: int) -> float:
        i = minute - WARMUP_MINUTES
        series = self.rpm.get(model, ())
        return series[i] if 0 <= i < len(series) else 0.0

    def _scale(self, minute: int, w: WorkloadIn, new: int) -> None:
        self.size[w.name] = new
        live = [r for r in self.replicas[w.name] if not r.draining]
        for _ in range(new - len(live)):
            self.replicas[w.name].append(Replica(w, minute))
        # the ReplicaSet removes unscheduled, then not-ready, then the newest Ready pods first
        victims = sorted(live, key=lambda r: (not r.nodes, r.ready_at is None, r.created), reverse=True)
        for r in victims[:max(0, len(live) - new)]:
            if not r.nodes:
                self.replicas[w.name].remove(r)
            else:
                r.draining = True

    def _drain(self, minute: int) -> None:
        """preStop: a draining replica takes no new request and goes once its in-flight ones finish
        (each lasts REQUEST_SECONDS), bounded by the grace period; without preStop it goes at once."""
        for w in self.sim.workloads:
            for r in [r for r in self.replicas[w.name] if r.draining]:
                drained = w.drains and w.grace_seconds >= REQUEST_SECONDS
                lost = 0.0 if drained else r.in_flight
                self.rec.replica_removed(minute, r, lost)
                self.replicas[w.name].remove(r)
                for node in r.nodes:
                    if r in node.replicas:
                        node.replicas.remove(r)

    # ------------------------------------------------------------------ scheduler + cluster-autoscaler
    def _free(self, node: Node, w: WorkloadIn) -> bool:
        if node.leaving or node.fails_at is not None:
            return False
        if not node.replicas:
            return True
        return all(r.workload.name == w.name for r in node.replicas) and len(node.replicas) < w.replicas_per_node \
            and w.nodes_per_replica == 1

    def _place(self, replica: Replica, minute: int, warm: bool = False) -> bool:
        w = replica.workload
        for pool in sorted(w.pools, key=lambda p: -self.groups[p].pool.priority if p in self.groups else 0):
            g = self.groups.get(pool)
            if g is None:
                continue
            free = [n for n in g.nodes if self._free(n, w)]
            if warm and len(free) < w.nodes_per_replica:
                fresh = [self._node(pool, -10**6, warm=True) for _ in range(w.nodes_per_replica - len(free))]
                g.nodes.extend(fresh)
                free += fresh
            if len(free) >= w.nodes_per_replica:
                replica.nodes = free[:w.nodes_per_replica]
                for n in replica.nodes:
                    n.replicas.append(replica)
                    n.empty_since = None
                return True
        return False

    def _schedule(self, minute: int) -> None:
        for w in self.sim.workloads:
            for r in self.replicas[w.name]:
                if r.draining:
                    continue
                if not r.nodes:
                    self._place(r, minute)
                if r.nodes and r.ready_at is None and all(minute >= n.ready_at and n.fails_at is None
                                                           for n in r.nodes):
                    r.ready_at = minute + math.ceil(w.engine_seconds / STEP)
                    self.rec.cold_start(r, self.groups[r.nodes[0].pool].pool, r.created, r.ready_at)

    def _autoscaler(self, minute: int) -> None:
        pending = [r for w in self.sim.workloads for r in self.replicas[w.name] if not r.nodes and not r.draining]
        for r in pending:                       # scale-up: the expander's highest priority that can grow
            if self._place(r, minute):
                continue
            w = r.workload
            options = [self.groups[p] for p in w.pools if p in self.groups]
            options = [g for g in options if g.backoff_until <= minute
                       and len([n for n in g.nodes if not n.leaving]) + w.nodes_per_replica <= g.max_size]
            if not options:
                continue
            g = max(options, key=lambda g: g.pool.priority)
            self._write(minute, g.pool.name, "cluster-autoscaler", None, None,
                        len([n for n in g.nodes if not n.leaving]) + w.nodes_per_replica)
            self._place(r, minute)
        unneeded = math.ceil(self.sim.unneeded_seconds / STEP)
        for g in self.groups.values():          # scale-down: nodes empty for the unneeded time
            for node in list(g.nodes):
                if node.replicas or node.leaving or node.fails_at is not None or minute < node.ready_at:
                    node.empty_since = None if node.replicas else node.empty_since
                    continue
                if node.empty_since is None:
                    node.empty_since = minute
                live = len([n for n in g.nodes if not n.leaving])
                if minute - node.empty_since >= unneeded and live > g.min_size:
                    g.nodes.remove(node)
                    g.desired = live - 1
                    self.rec.write(minute, g.pool.name, "cluster-autoscaler", g.desired)
                    self.rec.node_removed(minute, g.pool)
