"""A pool schedule as weekly EventBridge Scheduler cron actions. Pure (no Pulumi).

Each action is one `cron(M H ? * DAYS *)` in the pool's own IANA zone (EventBridge evaluates it in
local wall-clock time, DST included) that sets the node group's scaling config. The actions are the
change points of the weekly size profile that `infra.planning.schedule.size_at` describes: a window's start is
moved earlier by the pre-warm lead (a 00:15 start with 30 minutes of pre-warm fires at 23:45 the
previous day, so the day-of-week field moves too), overlapping windows take the larger size, and a
window that starts (pre-warm included) before the previous one ends gets no scale-down in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from infra.stack.windows import DAYS, Schedule

DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES


@dataclass(frozen=True)
class State:
    """What the node group should look like between two actions."""
    size: int
    in_window: bool


@dataclass(frozen=True)
class CronAction:
    days: tuple[int, ...]        # 0 = Monday, local days on which it fires
    minute_of_day: int           # local wall-clock minute, 0..1439
    state: State

    @property
    def hour(self) -> int:
        return self.minute_of_day // 60

    @property
    def minute(self) -> int:
        return self.minute_of_day % 60

    @property
    def kind(self) -> str:
        return "start" if self.state.in_window else "end"

    @property
    def expression(self) -> str:
        """EventBridge Scheduler 6-field cron: minutes hours day-of-month month day-of-week year."""
        return f"cron({self.minute} {self.hour} ? * {cron_days(self.days)} *)"

    def scaling(self, max_size: int) -> dict[str, int]:
        """Node group scaling config, the same rule `fleet reconcile` applies (infra.fleetops): min =
        desired = the scheduled size, max = the pool's maxSize (EKS rejects 0), so the two never undo
        each other; in a window the autoscaler may add nodes up to the max."""
        size = self.state.size
        return {"minSize": size, "maxSize": max(max_size, size, 1), "desiredSize": size}


def cron_days(days: tuple[int, ...]) -> str:
    """(0, 1, 2, 3, 4) -> "MON-FRI"; (6, 0) -> "MON,SUN"; runs of 3+ days become ranges (never wrapping)."""
    ordered = sorted(set(days))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{DAYS[ordered[i]].upper()}-{DAYS[ordered[j]].upper()}")
        else:
            parts.extend(DAYS[d].upper() for d in ordered[i:j + 1])
        i = j + 1
    return ",".join(parts)


def _minutes(t: time) -> int:
    return DAY_MINUTES if t == time.max else t.hour * 60 + t.minute


def weekly_profile(schedule: Schedule) -> list[State]:
    """The wanted state for each local minute of the week (index 0 = Monday 00:00)."""
    best: list[int | None] = [None] * WEEK_MINUTES
    for window in schedule.windows:
        for day in window.days:
            start = day * DAY_MINUTES + _minutes(window.start) - schedule.prewarm_minutes
            end = day * DAY_MINUTES + _minutes(window.end)
            for minute in range(start, end):
                i = minute % WEEK_MINUTES
                current = best[i]
                best[i] = window.size if current is None else max(current, window.size)
    return [State(schedule.off_size, False) if b is None else State(b, True) for b in best]


def cron_actions(schedule: Schedule) -> tuple[CronAction, ...]:
    """One action per (local time of day, state), firing on every weekday where the profile changes to
    that state at that time; sorted by first day and time. Empty when the profile never changes."""
    profile = weekly_profile(schedule)
    grouped: dict[tuple[int, State], set[int]] = {}
    for i, state in enumerate(profile):
        if state != profile[i - 1]:
            grouped.setdefault((i % DAY_MINUTES, state), set()).add(i // DAY_MINUTES)
    actions = [CronAction(tuple(sorted(days)), minute, state) for (minute, state), days in grouped.items()]
    return tuple(sorted(actions, key=lambda a: (a.days[0], a.minute_of_day, a.state.size)))


def state_at(actions: tuple[CronAction, ...], local: datetime, default: State) -> State:
    """Replay the actions: the state set by the last action at or before the local wall-clock time
    `local` (cyclic over the week); `default` when there are no actions."""
    if not actions:
        return default
    now = local.weekday() * DAY_MINUTES + local.hour * 60 + local.minute
    firings = [((day * DAY_MINUTES + a.minute_of_day), a.state) for a in actions for day in a.days]
    before = [f for f in firings if f[0] <= now]
    return max(before, key=lambda f: f[0])[1] if before else max(firings, key=lambda f: f[0])[1]
