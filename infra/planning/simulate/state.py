"""The simulated objects: nodes, replicas (pods), node groups and KEDA's memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.planning.simulate.inputs import PoolIn, WorkloadIn


@dataclass
class Node:
    id: int
    pool: str
    launched: int                  # minute
    ready_at: int
    fails_at: int | None = None    # a spot launch that will not succeed
    replicas: list[Replica] = field(default_factory=list)
    empty_since: int | None = None
    leaving: bool = False          # drained by a scale-in, terminated once its replicas are gone


@dataclass
class Replica:
    workload: WorkloadIn
    created: int
    nodes: list[Node] = field(default_factory=list)
    ready_at: int | None = None    # when the engine is Ready (set once its nodes are up)
    draining: bool = False
    load: float = 0.0              # requests per minute routed to it this step
    in_flight: float = 0.0

    def ready(self, minute: int) -> bool:
        return self.ready_at is not None and minute >= self.ready_at and not self.draining


@dataclass
class Group:
    pool: PoolIn
    min_size: int
    max_size: int
    desired: int
    backoff_until: int = -1
    nodes: list[Node] = field(default_factory=list)


@dataclass
class KedaState:
    history: list[tuple[int, int]] = field(default_factory=list)   # (minute, recommendation)
    last_active: int = -10**9
    last_down: int = -10**9
    last_up: int = -10**9
