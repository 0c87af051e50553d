"""What the fleet costs: per pool per hour and per month (schedules in their own zones), per model
per million tokens at a stated throughput, and the break-even volume against managed APIs. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from infra.planning.catalog import ApiPrice, InstanceShape
from infra.planning.schedule import AVERAGE_MONTH_HOURS, average_monthly_node_hours, month_bounds, node_hours
from infra.planning.sizing import DeploymentPlan
from infra.stack.spec import ModelSpec, PoolSpec

DAYS_PER_MONTH = 365 / 12


@dataclass(frozen=True)
class PoolCost:
    pool: str
    capacity: str
    instance_type: str
    gpus_per_node: int
    on_demand_hourly_usd: float       # list price per node
    hourly_usd: float                 # per node after the spot discount
    monthly_node_hours: float         # at the scheduled / desired size
    monthly_usd: float
    max_monthly_usd: float            # every node of maxSize all month
    basis: str


@dataclass(frozen=True)
class ModelCost:
    model: str
    monthly_usd: float                # this model's share of its pools
    output_tokens_per_month: float | None
    usd_per_million_tokens: float | None
    cheapest_api: ApiPrice | None
    break_even_million_tokens_per_day: float | None


def node_hourly_usd(pool: PoolSpec, shape: InstanceShape, region: str) -> tuple[float, float, str]:
    """(on-demand list, what this pool pays, basis) per node-hour. An existing cluster's pool (it picks
    its nodes by nodeSelector) on a shape the catalog prices nowhere, e.g. on-prem ascend-910b.8x, is
    counted as 0 USD/h; an EKS pool of an unpriced type is still refused."""
    if not shape.priced and pool.node_selector:
        return 0.0, 0.0, (f"{shape.name} has no price (on-prem or unpriced shape): counted as 0 USD/h; declare it "
                          "under shapes: with capexUSD/months/powerKW/usdPerKWh or hourlyUSD to price it")
    if (owned := shape.amortization) is not None:
        return owned.hourly_usd, owned.hourly_usd, _amortized_basis(shape)
    if shape.flat_hourly_usd is not None:
        return shape.flat_hourly_usd, shape.flat_hourly_usd, f"{shape.provider} list price per node-hour (shapes:)"
    listed = shape.hourly_usd(region)
    if pool.capacity == "spot":
        return listed, listed * (1 - shape.spot_discount), f"spot: on-demand less a typical {shape.spot_discount:.0%}"
    if pool.capacity == "capacity-block":
        return listed, listed, "capacity block: on-demand list as the basis (`fleet capacity` shows offering prices)"
    return listed, listed, "on-demand list price"


def _amortized_basis(shape: InstanceShape) -> str:
    a = shape.amortization
    return (f"on-prem {shape.name}: USD {a.capex_usd:,.0f} over {a.months} months = {a.capex_hourly_usd:.2f} USD/h "
            f"per owned node (all month, running or not) + {a.power_kw:g} kW x {a.usd_per_kwh:g} USD/kWh = "
            f"{a.power_hourly_usd:.2f} USD/h per running node")


def pool_cost(pool: PoolSpec, shape: InstanceShape, region: str, month: tuple[int, int] | None = None) -> PoolCost:
    """Monthly cost at the size the schedule wants (or desiredSize), exact for `month` if given."""
    listed, hourly, price_basis = node_hourly_usd(pool, shape, region)
    if month is not None:
        zone = pool.schedule.timezone if pool.schedule else "UTC"
        start, end = month_bounds(month[0], month[1], zone)
        hours_in_period = (end - start).total_seconds() / 3600
    else:
        start = end = None
        hours_in_period = AVERAGE_MONTH_HOURS
    if pool.schedule is not None:
        hours = (node_hours(pool.schedule, start, end) if month is not None
                 else average_monthly_node_hours(pool.schedule))
        sizes = sorted({w.size for w in pool.schedule.windows})
        basis = (f"schedule ({pool.schedule.timezone}): {'/'.join(map(str, sizes))} nodes in windows, "
                 f"{pool.schedule.off_size} outside, {pool.schedule.prewarm_minutes} min pre-warm")
    else:
        hours = pool.desired_size * hours_in_period
        basis = f"desiredSize {pool.desired_size} all month (autoscaler may add up to {pool.max_size})"
    monthly = hours * hourly
    if (owned := shape.amortization) is not None:
        # bought servers cost their amortization whether they run or not (the pool's maxSize are the
        # servers it owns); only power follows the node-hours
        monthly = owned.capex_hourly_usd * pool.max_size * hours_in_period + owned.power_hourly_usd * hours
        price_basis += f"; {pool.max_size} owned node(s)"
    return PoolCost(pool=pool.name, capacity=pool.capacity, instance_type=shape.name, gpus_per_node=shape.gpu_count,
                    on_demand_hourly_usd=listed, hourly_usd=hourly, monthly_node_hours=hours,
                    monthly_usd=monthly, max_monthly_usd=pool.max_size * hours_in_period * hourly,
                    basis=f"{basis}; {price_basis}")


def gpu_demand(dep: DeploymentPlan) -> int:
    return dep.layout.gpus * max(dep.max_replicas, 1)


def model_cost(spec: ModelSpec, deployments: Sequence[DeploymentPlan], all_deployments: Sequence[DeploymentPlan],
               pools: dict[str, PoolCost], api_prices: Sequence[ApiPrice]) -> ModelCost:
    """A pool shared by several models is split by GPU demand (GPUs per replica x max replicas)."""
    monthly = 0.0
    replica_hours = 0.0
    for dep in deployments:
        pool = pools[dep.pool]
        on_pool = [d for d in all_deployments if d.pool == dep.pool]
        share = gpu_demand(dep) / sum(gpu_demand(d) for d in on_pool)
        monthly += pool.monthly_usd * share
        replica_hours += pool.monthly_node_hours * share * dep.replicas_per_node / dep.layout.nodes
    tokens = cost_per_m = None
    if spec.throughput is not None:
        tokens = replica_hours * 3600 * spec.throughput.output_tokens_per_second * spec.throughput.utilization
        cost_per_m = monthly / (tokens / 1e6) if tokens > 0 else None
    cheapest = min(api_prices, key=lambda p: p.blended_usd_per_m, default=None)
    break_even = (monthly / cheapest.blended_usd_per_m / DAYS_PER_MONTH
                  if cheapest is not None and cheapest.blended_usd_per_m > 0 else None)
    return ModelCost(model=spec.name, monthly_usd=monthly, output_tokens_per_month=tokens,
                     usd_per_million_tokens=cost_per_m, cheapest_api=cheapest,
                     break_even_million_tokens_per_day=break_even)


def parse_month(text: str) -> tuple[int, int]:
    try:
        moment = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise ValueError(f"--month: {text!r} is not YYYY-MM") from None
    return moment.year, moment.month
