"""The figure the rest of the fleet reads: a replica's modeled cold start and its startup-probe budget.

Pure. The term-by-term model is infra/planning/coldstart.py (rates in catalog/loading.yaml); this
module keeps `LoadEstimate`, which other code reads (`load.seconds`, `load.probe_seconds`), in step
with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.planning.coldstart import ColdStart, cold_start, probe_seconds


@dataclass(frozen=True)
class LoadEstimate:
    method: str
    seconds: int                  # the modeled end-to-end cold start (ColdStart.total_seconds)
    probe_seconds: int            # startup-probe budget derived from it
    basis: str


def estimate_load(weights_gb: float, method: str, shape: Any, engine: str = "vllm",
                  launches_nodes: bool = True) -> tuple[LoadEstimate, ColdStart]:
    """(the load estimate, its breakdown) for one replica on a new node of `shape`."""
    cs = cold_start(weights_gb, method, engine, shape, launches_nodes)
    return (LoadEstimate(method, cs.total_seconds, probe_seconds(cs.total_seconds),
                         "; ".join(cs.basis) + " (catalog/loading.yaml)"), cs)
