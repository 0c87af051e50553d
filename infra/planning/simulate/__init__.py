"""`fleet simulate`: a week (or N days) of a rendered stack's capacity control loops, minute by minute,
and the violations of the one-owner design (docs/capacity.md). Pure: the CLI renders the stack and
builds the plan, this package reads them (inputs.py), runs them (engine.py) and reports (checks.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from infra.planning.fleetops import NodeGroup, Scaling, plan_reconcile
from infra.planning.simulate.engine import Group, Simulation
from infra.planning.simulate.inputs import REQUEST_SECONDS, TOKENS_PER_REQUEST, SimInput
from infra.stack.spec import StackConfig


def _reconciler(cfg: StackConfig):
    """`fleet reconcile` at its cron, through the job's own pure decisions (infra.planning.fleetops)."""
    def run(at: datetime, groups: Mapping[str, Group]) -> list[tuple[str, int, int, int]]:
        seen = {name: NodeGroup(name, g.pool.node_group, "", "ACTIVE", Scaling(g.min_size, g.max_size, g.desired))
                for name, g in groups.items()}
        return [(a.pool, a.scaling.min_size, a.scaling.max_size, a.scaling.desired)
                for a in plan_reconcile(cfg, at, seen) if a.scaling is not None and a.changes]
    return run


def simulate(sim: SimInput, cfg: StackConfig, start: datetime, days: float, rpm: Mapping[str, Sequence[float]],
             spot_unavailable: Sequence[tuple[datetime, datetime]] = (),
             notes: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """(the JSON result, the per-pool per-minute timeline of Ready nodes)."""
    minutes = int(round(days * 1440))
    run = Simulation(sim, start, minutes, dict(rpm), spot_unavailable, _reconciler(cfg))
    recorder = run.run()
    assumptions = [f"a request holds a slot for {REQUEST_SECONDS} s and {TOKENS_PER_REQUEST} KV tokens; replica "
                   "capacity is the plan's KV budget over that"]
    return recorder.result(start, days, [*assumptions, *notes]), recorder.timeline
