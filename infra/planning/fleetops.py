"""Pure decisions behind the scaling jobs (`fleet status/scale/reconcile/sweep/capacity`).

No boto3, no Pulumi: the jobs read AWS into the plain values below, ask these functions what to do,
and apply the answer. Sizes come from `infra.planning.schedule`, so the jobs, the EventBridge schedules and
the cost model cannot disagree.

Node group rules (EKS managed node groups reject maxSize 0): a scheduled pool is pinned with
min = desired = the wanted size and max = the pool's maxSize; an unscheduled pool keeps the stack's
min/max and leaves desired to the autoscaler. An operator's override lives on the node group as tags
(`TAG_SIZE`, `TAG_UNTIL`, `TAG_BY`), so there is no other state: while unexpired it wins over the
schedule; once expired it is removed and the schedule (or the stack's sizes) comes back.
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
SWEEP_BY = "fleet-sweep"
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


def _pinned(pool: PoolSpec, size: int) -> Scaling:
    return Scaling(size, max(pool.max_size, 1), size)


def target(pool: PoolSpec, at: datetime, current: Scaling, tags: Mapping[str, str]) -> Target:
    """What `pool`'s node group should be at `at`, given what it is and its override tags."""
    override, problem = read_override(tags)
    if override is not None and override.active(at):
        size = min(max(override.size, override_bounds(pool)[0]), pool.max_size)
        why = f"override {size} until {iso(override.until)} by {override.by}"
        if pool.schedule is not None:
            return Target(_pinned(pool, size), why, False)
        return Target(Scaling(min(pool.min_size, size), pool.max_size, size), why, False)
    clear = override is not None or problem is not None
    gone = (f"; override by {override.by} expired at {iso(override.until)}" if override is not None
            else f"; {problem}" if problem else "")
    if pool.schedule is not None:
        size, why = size_at(pool.schedule, at)
        return Target(_pinned(pool, size), why + gone, clear)
    if clear:
        return Target(Scaling(pool.min_size, pool.max_size, pool.desired_size),
                      "back to the stack's sizes" + gone, True)
    desired = min(max(current.desired, pool.min_size), pool.max_size)
    return Target(Scaling(pool.min_size, pool.max_size, desired),
                  "unscheduled: min/max as the stack says, desired left to the autoscaler", False)


# ---------------------------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class Action:
    pool: str
    kind: str                             # scale | override | clear-override | hold | skip | note
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
        group = groups[pool.name]
        goal = target(pool, at, group.scaling, group.tags)
        found = _action(pool, group, goal, (prices or {}).get(pool.name))
        if found is not None:
            out.append(found)
    return out


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


def status_row(pool: PoolSpec, at: datetime, group: NodeGroup, price: Price | None) -> dict[str, Any]:
    goal = target(pool, at, group.scaling, group.tags)
    override, _ = read_override(group.tags)
    return {
        "pool": pool.name, "capacity": pool.capacity, "nodegroup": group.name, "status": group.status,
        "want": goal.scaling.desired if pool.schedule is not None or override is not None else None,
        "wantReason": goal.reason, "aws": group.scaling.to_json(),
        "override": None if override is None else {"size": override.size, "until": iso(override.until),
                                                    "by": override.by, "active": override.active(at)},
        "timezone": pool.schedule.timezone if pool.schedule else None,
        "next": next_transitions(pool.schedule, at),
        "hourlyUSD": None if price is None else round(price.paid_usd * group.scaling.desired, 2),
    }


# ---------------------------------------------------------------------------------------------- sweep

@dataclass(frozen=True)
class Activity:
    """A pool's traffic from the engines' metrics; None where the metrics could not say."""
    in_flight: float | None               # running + waiting requests now
    finished: float | None                # requests finished over the pool's idleMinutes


def in_window(schedule: Schedule, at: datetime) -> bool:
    """Inside a window or its pre-warm lead."""
    return any(i.start <= at < i.end for i in intervals(schedule, at, at + timedelta(microseconds=1)))


def _next_change(schedule: Schedule, at: datetime) -> datetime:
    upcoming = transitions(schedule, at + timedelta(microseconds=1), at + LOOKAHEAD)
    return upcoming[0].at if upcoming else at + timedelta(days=1)


def _sweep_to(pool: PoolSpec, at: datetime, group: NodeGroup, size: int, why: str,
              price: Price | None) -> Action | None:
    """Scale to `size`; a scheduled pool gets a sweep override until its next transition so that
    reconcile keeps the size instead of undoing it."""
    if pool.schedule is None:
        goal = Target(Scaling(pool.min_size, pool.max_size, size), why, False)
        return _action(pool, group, goal, price)
    if size_at(pool.schedule, at)[0] == size:
        return _action(pool, group, Target(_pinned(pool, size), why, False), price)
    override = Override(size, _next_change(pool.schedule, at), SWEEP_BY)
    goal = target(pool, at, group.scaling, {**group.tags, **override.tags()})
    return _action(pool, group, replace(goal, reason=f"{why}; {goal.reason}"), price, override.tags())


def plan_sweep(cfg: StackConfig, at: datetime, groups: Mapping[str, NodeGroup],
               activity: Mapping[str, Activity | None], on_demand_nodes: Mapping[str, int | None],
               prices: Mapping[str, Price | None]) -> list[Action]:
    """Idle pools to their floor, dev/staging to zero outside windows, spot pools on on-demand noted."""
    out: list[Action] = []
    for pool in cfg.pools:
        group, price = groups[pool.name], prices.get(pool.name)
        override, _ = read_override(group.tags)
        operator = override is not None and override.active(at) and override.by != SWEEP_BY
        found = None
        if operator:
            pass                              # an operator's unexpired override is left alone
        elif (cfg.environment in ("dev", "staging") and pool.schedule is not None
              and not in_window(pool.schedule, at) and group.scaling.desired > 0):
            found = _sweep_to(pool, at, group, 0, f"{cfg.environment} stack outside its windows", price)
        elif pool.idle_minutes is not None:
            found = _idle(pool, at, group, activity.get(pool.name), price)
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
    floor = pool.min_size if pool.schedule is None else pool.schedule.off_size
    if group.scaling.desired <= floor:
        return None
    idle = timedelta(minutes=pool.idle_minutes or 0)
    if group.modified_at is not None and at - group.modified_at < idle:
        return None                       # resized recently (e.g. a pre-warm): not idle long enough yet
    if seen is None or seen.in_flight is None or seen.finished is None:
        return Action(pool.name, "note", group.scaling, None,
                      f"cannot tell whether pool {pool.name} is idle: no request metrics (Prometheus)")
    if seen.in_flight > 0 or seen.finished > 0:
        return None
    return _sweep_to(pool, at, group, floor, f"idle: no requests for {pool.idle_minutes} min", price)
