"""Pure decisions behind the scaling jobs (`fleet status/scale/reconcile/sweep/capacity`).

No boto3, no Pulumi: the jobs read AWS into the plain values below, ask these functions what to do,
and apply the answer.

One owner per number (docs/capacity.md): a node group's desired size belongs to cluster-autoscaler
(nodes follow pods); replicas belong to KEDA (pods follow demand and the schedule's cron triggers).
The jobs write only bounds: min and max. Without an override they are the stack's (a scheduled pool's
floor is the lower of minSize and offSize: its windows are KEDA's business); an operator's override
(`TAG_SIZE`, `TAG_UNTIL`, `TAG_BY` on the node group, so there is no other state) holds min = max =
the size while unexpired. Desired is touched only to keep it inside the bounds (EKS requires
min <= desired <= max); a smaller size removes nodes through the managed node group's drain, which
runs each engine's preStop, so no decision here needs engine metrics to be safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.planning.catalog import Catalog, CatalogError
from infra.planning.cost import node_hourly_usd
from infra.planning.schedule import intervals, size_at, transitions
from infra.stack.spec import PoolSpec, StackConfig
from infra.stack.windows import Schedule

TAG_SIZE = "llm-fleet/override-size"
TAG_UNTIL = "llm-fleet/override-until"
TAG_BY = "llm-fleet/override-by"
OVERRIDE_TAGS = (TAG_SIZE, TAG_UNTIL, TAG_BY)
MAX_OVERRIDE = timedelta(days=7)          # a forgotten override on 8x H200 nodes costs thousands a day
LOOKAHEAD = timedelta(days=8)             # far enough to see the next transition of any weekly schedule
UPDATABLE = ("ACTIVE", "DEGRADED")        # a DEGRADED group (e.g. no spot capacity) can still be resized


# ---------------------------------------------------------------------------------------------- state

@dataclass(frozen=True)
class Scaling:
    min_size: int
    max_size: int
    desired: int

    def to_json(self) -> dict[str, int]:
        return {"min": self.min_size, "max": self.max_size, "desired": self.desired}


@dataclass(frozen=True)
class Override:
    size: int
    until: datetime                       # aware, UTC
    by: str

    def active(self, at: datetime) -> bool:
        return at < self.until

    def tags(self) -> dict[str, str]:
        return {TAG_SIZE: str(self.size), TAG_UNTIL: iso(self.until), TAG_BY: self.by or "unknown"}


@dataclass(frozen=True)
class NodeGroup:
    """What AWS reports for one pool's node group."""
    pool: str
    name: str
    arn: str
    status: str                           # ACTIVE, UPDATING, ...
    scaling: Scaling
    tags: Mapping[str, str] = field(default_factory=dict)
    modified_at: datetime | None = None


@dataclass(frozen=True)
class Price:
    on_demand_usd: float                  # list price per node-hour
    paid_usd: float                       # what this pool pays per node-hour (spot discount applied)


def pool_prices(cfg: StackConfig, catalog: Catalog) -> dict[str, Price | None]:
    """Per-node hourly prices from the catalog; None for a pool the catalog cannot price here."""
    out: dict[str, Price | None] = {}
    for pool in cfg.pools:
        try:
            listed, paid, _ = node_hourly_usd(pool, catalog.instance(pool.instance_type), cfg.region)
        except CatalogError:
            out[pool.name] = None
        else:
            out[pool.name] = Price(listed, paid)
    return out


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_override(tags: Mapping[str, str]) -> tuple[Override | None, str | None]:
    """(override, problem): problem says why present-but-unreadable tags will be removed."""
    if not any(k in tags for k in OVERRIDE_TAGS):
        return None, None
    try:
        size = int(tags[TAG_SIZE])
        until = datetime.fromisoformat(tags[TAG_UNTIL].replace("Z", "+00:00"))
        if size < 0 or until.tzinfo is None:
            raise ValueError
    except (KeyError, ValueError):
        shown = {k: tags.get(k) for k in OVERRIDE_TAGS}
        return None, f"unreadable override tags {shown}"
    return Override(size, until.astimezone(UTC), tags.get(TAG_BY, "unknown")), None


def override_bounds(pool: PoolSpec) -> tuple[int, int]:
    """Sizes an override may ask for: a scheduled pool may go as low as its off-window size."""
    low = pool.min_size if pool.schedule is None else min(pool.min_size, pool.schedule.off_size)
    return low, pool.max_size


def check_override(pool: PoolSpec, size: int, until: datetime, at: datetime) -> None:
    """Raise ValueError (a user error) for an override the pool cannot take."""
    low, high = override_bounds(pool)
    if not low <= size <= high:
        raise ValueError(f"--size {size} is outside pool {pool.name}'s bounds {low}..{high} (minSize/maxSize "
                         "in the stack file); change the stack to go beyond them")
    if until <= at:
        raise ValueError(f"--until {iso(until)} is not in the future")
    if until - at > MAX_OVERRIDE:
        raise ValueError(f"--until {iso(until)} is more than {MAX_OVERRIDE.days} days away; change the "
                         "schedule in the stack file for a lasting change")


# ---------------------------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    scaling: Scaling                      # what the node group should be
    reason: str
    clear_override: bool                  # the override tags are expired or unreadable: remove them
    holds: str = "stack"                  # what sets the bounds: stack | override


def stack_bounds(pool: PoolSpec) -> tuple[int, int]:
    """(min, max) the stack gives the node group when no override holds (EKS rejects maxSize 0)."""
    low = pool.min_size if pool.schedule is None else min(pool.min_size, pool.schedule.off_size)
    return low, max(pool.max_size, 1)


def _within(current: Scaling, low: int, high: int) -> int:
    return min(max(current.desired, low), high)


def target(pool: PoolSpec, at: datetime, current: Scaling, tags: Mapping[str, str]) -> Target:
    """The bounds `pool`'s node group should have at `at`, given what it is and its override tags;
    desired stays the autoscaler's unless it is outside them."""
    override, problem = read_override(tags)
    if override is not None and override.active(at):
        size = min(max(override.size, override_bounds(pool)[0]), pool.max_size)
        high = max(size, 1)
        return Target(Scaling(size, high, _within(current, size, high)),
                      f"override {size} until {iso(override.until)} by {override.by}", False, "override")
    clear = override is not None or problem is not None
    gone = (f"; override by {override.by} expired at {iso(override.until)}" if override is not None
            else f"; {problem}" if problem else "")
    low, high = stack_bounds(pool)
    why = (f"stack bounds {low}..{high}" + ("; windows are KEDA cron triggers" if pool.schedule else "")
           + "; desired is the autoscaler's")
    return Target(Scaling(low, high, _within(current, low, high)), why + gone, clear)


# ---------------------------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class Action:
    pool: str
    kind: str                             # scale | override | clear-override | hold | skip | note | missing
    current: Scaling | None
    scaling: Scaling | None               # to apply; None: no scaling change
    reason: str
    set_tags: Mapping[str, str] = field(default_factory=dict)
    remove_tags: tuple[str, ...] = ()
    hourly_saving_usd: float | None = None

    @property
    def scale_down(self) -> bool:
        return (self.scaling is not None and self.current is not None
                and self.scaling.desired < self.current.desired)

    @property
    def changes(self) -> bool:
        return self.kind in ("scale", "override", "clear-override")

    def record(self) -> dict[str, Any]:
        """The JSON fields of this action's line (after time and stack)."""
        before = None if self.current is None else self.current.desired
        after = before if self.scaling is None else self.scaling.desired
        out: dict[str, Any] = {"pool": self.pool, "action": self.kind, "from": before, "to": after,
                               "reason": self.reason}
        if self.scaling is not None:
            out["scaling"] = self.scaling.to_json()
        if self.set_tags:
            out["setTags"] = dict(self.set_tags)
        if self.remove_tags:
            out["removeTags"] = list(self.remove_tags)
        out["hourlySavingUSD"] = None if self.hourly_saving_usd is None else round(self.hourly_saving_usd, 2)
        return out


def saving(price: Price | None, before: int | None, after: int | None) -> float | None:
    """Dollars an hour saved by going from `before` to `after` nodes (negative: it costs more)."""
    if price is None or before is None or after is None:
        return None
    return (before - after) * price.paid_usd


def hold(action: Action, why: str) -> Action:
    """A scale-down that did not happen (traffic, no metrics, ...): nothing changes."""
    return replace(action, kind="hold", scaling=None, set_tags={}, remove_tags=(), hourly_saving_usd=0.0,
                   reason=f"{action.reason}; not scaled down: {why}")


def _action(pool: PoolSpec, group: NodeGroup, goal: Target, price: Price | None,
            set_tags: Mapping[str, str] | None = None) -> Action | None:
    scale = goal.scaling != group.scaling
    remove = tuple(k for k in OVERRIDE_TAGS if k in group.tags) if goal.clear_override else ()
    tags = {k: v for k, v in (set_tags or {}).items() if group.tags.get(k) != v}
    if not (scale or remove or tags):
        return None
    kind = "scale" if scale else "override" if tags else "clear-override"
    if group.status not in UPDATABLE:
        return Action(pool.name, "skip", group.scaling, None,
                      f"{goal.reason}; node group is {group.status}: the next run retries")
    return Action(pool.name, kind, group.scaling, goal.scaling if scale else None, goal.reason, tags, remove,
                  saving(price, group.scaling.desired, goal.scaling.desired) if scale else None)


def plan_reconcile(cfg: StackConfig, at: datetime, groups: Mapping[str, NodeGroup],
                   prices: Mapping[str, Price | None] | None = None) -> list[Action]:
    """Every pool at what the schedule (or an unexpired override) wants; only what differs."""
    out = []
    for pool in cfg.pools:
        group = groups.get(pool.name)
        if group is None:
            out.append(missing(pool.name))
            continue
        goal = target(pool, at, group.scaling, group.tags)
        found = _action(pool, group, goal, (prices or {}).get(pool.name))
        if found is not None:
            out.append(found)
    return out


def missing(pool: str) -> Action:
    return Action(pool, "missing", None, None, f"pool {pool} has no node group yet (not deployed: run pulumi up); "
                  "other pools are handled")


def plan_override(pool: PoolSpec, at: datetime, group: NodeGroup, override: Override,
                  price: Price | None = None) -> Action | None:
    """`fleet scale`: tag the override and apply it now, exactly as reconcile will keep it."""
    tags = {**group.tags, **override.tags()}
    goal = target(pool, at, group.scaling, tags)
    return _action(pool, group, goal, price, override.tags())


# ---------------------------------------------------------------------------------------------- status

def next_transitions(schedule: Schedule | None, at: datetime, count: int = 2) -> list[dict[str, Any]]:
    if schedule is None:
        return []
    return [{"at": iso(t.at), "local": t.local(schedule.timezone).isoformat(timespec="minutes"),
             "size": t.size, "reason": t.reason}
            for t in transitions(schedule, at + timedelta(microseconds=1), at + LOOKAHEAD)[:count]]


def status_row(pool: PoolSpec, at: datetime, group: NodeGroup, price: Price | None,
               schedule: Schedule | None = None) -> dict[str, Any]:
    """One pool: what holds its bounds now (an active override wins over the stack and the schedule,
    and its end is the next step), what the schedule's KEDA triggers ask for, what AWS reports."""
    schedule = schedule if schedule is not None else pool.schedule
    goal = target(pool, at, group.scaling, group.tags)
    override, _ = read_override(group.tags)
    active = override is not None and override.active(at)
    upcoming = next_transitions(schedule, at)
    if active:
        upcoming = [{"at": iso(override.until), "local": None, "size": None,
                     "reason": f"override by {override.by} ends; stack bounds and schedule again"}] + [
            t for t in upcoming if t["at"] > iso(override.until)][:1]
    return {
        "pool": pool.name, "capacity": pool.capacity, "nodegroup": group.name, "status": group.status,
        "holds": goal.holds,
        "want": override.size if active else (size_at(schedule, at)[0] if schedule is not None else None),
        "wantReason": goal.reason if active or schedule is None else f"{size_at(schedule, at)[1]} (KEDA cron)",
        "bounds": goal.scaling.to_json(), "aws": group.scaling.to_json(),
        "override": None if override is None else {"size": override.size, "until": iso(override.until),
                                                    "by": override.by, "active": active},
        "timezone": schedule.timezone if schedule else None,
        "next": upcoming,
        "hourlyUSD": None if price is None else round(price.paid_usd * group.scaling.desired, 2),
    }


# ---------------------------------------------------------------------------------------------- sweep

@dataclass(frozen=True)
class Activity:
    """A pool's traffic from the engines' metrics; None where the metrics could not say (no series is
    unknown, never idle: a pool whose engines are still loading reports nothing yet)."""
    in_flight: float | None               # running + waiting requests now
    finished: float | None                # requests finished over the pool's idleMinutes


def in_window(schedule: Schedule, at: datetime) -> bool:
    """Inside a window or its pre-warm lead."""
    return any(i.start <= at < i.end for i in intervals(schedule, at, at + timedelta(microseconds=1)))


def plan_sweep(cfg: StackConfig, at: datetime, groups: Mapping[str, NodeGroup],
               activity: Mapping[str, Activity | None], on_demand_nodes: Mapping[str, int | None],
               prices: Mapping[str, Price | None]) -> list[Action]:
    """The cost report, which changes nothing (sizes are KEDA's and the autoscaler's, bounds the stack's
    and the operator's): idle pools that still have nodes, with what they cost and what holds them (an
    override, or the cooldowns that will remove them); spot pools running on-demand nodes."""
    out: list[Action] = []
    for pool in cfg.pools:
        group, price = groups.get(pool.name), prices.get(pool.name)
        if group is None:
            out.append(missing(pool.name))
            continue
        found = _idle(pool, at, group, activity.get(pool.name), price) if pool.idle_minutes is not None else None
        if found is not None:
            out.append(found)
        extra = on_demand_nodes.get(pool.name)
        if pool.capacity == "spot" and extra:
            out.append(Action(pool.name, "note", group.scaling, None,
                              f"{extra} on-demand node(s) in spot pool {pool.name}: spot capacity fell back; "
                              "they cost the full price until spot returns",
                              hourly_saving_usd=None if price is None
                              else extra * (price.on_demand_usd - price.paid_usd)))
    return out


def _idle(pool: PoolSpec, at: datetime, group: NodeGroup, seen: Activity | None,
          price: Price | None) -> Action | None:
    low, _ = stack_bounds(pool)
    if group.scaling.desired <= low:
        return None
    if group.modified_at is not None and at - group.modified_at < timedelta(minutes=pool.idle_minutes or 0):
        return None                       # resized recently (e.g. a pre-warm): not idle long enough yet
    if seen is None or seen.in_flight is None or seen.finished is None:
        return Action(pool.name, "note", group.scaling, None,
                      f"idle unknown for pool {pool.name}: no request metrics (no series or no Prometheus); "
                      "nothing changed")
    if seen.in_flight > 0 or seen.finished > 0:
        return None
    override, _ = read_override(group.tags)
    cost = saving(price, group.scaling.desired, low)
    if override is not None and override.active(at):
        return Action(pool.name, "note", group.scaling, None,
                      f"idle: no requests for {pool.idle_minutes} min, but the override by {override.by} holds "
                      f"{override.size} node(s) until {iso(override.until)}; end it early with "
                      f"`fleet scale --pool {pool.name} --size {low} --until +1m`", hourly_saving_usd=cost)
    return Action(pool.name, "note", group.scaling, None,
                  f"idle: no requests for {pool.idle_minutes} min with {group.scaling.desired} node(s); KEDA's "
                  "cooldown and the autoscaler remove them (nothing for a job to change)", hourly_saving_usd=cost)
