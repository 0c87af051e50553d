"""Economics that compare like with like (pure): the platform's non-GPU monthly cost apart from the GPU
pools, and per model the cost per million tokens next to the managed API on the same input:output mix,
the token capacity per day at the stated throughput next to the break-even volume, and the node-hours
paid while replicas pre-warm or cold-start and serve nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

from infra.planning.catalog import ApiPrice, read_yaml
from infra.planning.coldstart import prewarm_minutes
from infra.planning.cost import DAYS_PER_MONTH
from infra.planning.schedule import AVERAGE_MONTH_HOURS
from infra.stack.spec import StackConfig

# Input tokens per output token the comparison assumes on both sides (a blended API price assumes a mix;
# 3:1 is the common one, FACTS.md "Managed API prices").
INPUT_PER_OUTPUT = 3.0
WEEKS_PER_MONTH = DAYS_PER_MONTH / 7


@dataclass(frozen=True)
class PlatformCost:
    item: str
    monthly_usd: float
    basis: str


@dataclass(frozen=True)
class TokenEconomics:
    mix: float                                   # input tokens per output token, both sides
    usd_per_million_tokens: float | None         # fleet, input + output tokens on the mix
    api_usd_per_million_tokens: float | None     # cheapest API on the same mix
    capacity_million_tokens_per_day: float | None
    break_even_million_tokens_per_day: float | None
    reachable: bool | None                       # break-even <= capacity at the stated throughput
    idle_node_hours: float                       # pre-warm / cold-start node-hours a month that serve nothing


@functools.cache
def prices() -> dict[str, Any]:
    return read_yaml(resources.files("infra.planning.catalog").joinpath("platform_prices.yaml").read_text())


def platform_costs(cfg: StackConfig, node_starts_per_month: float, image_gb: float, weights_gb: float
                   ) -> tuple[PlatformCost, ...]:
    """Monthly non-GPU cost of an EKS stack (none on a cluster you run). NAT data: engine image pulls
    per node start and one hub -> S3 weights copy a month go through NAT (estimate); weights reads use
    the S3 gateway endpoint (free)."""
    if cfg.cluster.existing is not None:
        return ()
    p, hours = prices(), AVERAGE_MONTH_HOURS
    out = [PlatformCost("EKS control plane", p["eksControlPlanePerHour"]["value"] * hours, "1 cluster")]
    node_rate = p["systemNodePerHour"].get(cfg.cluster.system_instance_type)
    out.append(PlatformCost(
        "system nodes", (node_rate or 0.0) * cfg.cluster.system_min * hours,
        f"{cfg.cluster.system_min} x {cfg.cluster.system_instance_type}"
        + ("" if node_rate else " (no list price in platform_prices.yaml: counted as 0)")))
    if cfg.network.existing_vpc_id is None:
        gateways = 1 if cfg.network.nat == "single" else cfg.network.az_count
        data_gb = node_starts_per_month * image_gb + weights_gb
        out.append(PlatformCost("NAT gateways", gateways * p["natGatewayPerHour"]["value"] * hours,
                                f"{gateways} gateway(s)"))
        out.append(PlatformCost("NAT data processing (estimate)", data_gb * p["natPerGB"]["value"],
                                f"~{data_gb:,.0f} GB: {node_starts_per_month:,.0f} node starts x {image_gb:g} GB "
                                f"image + {weights_gb:,.0f} GB hub copy"))
        endpoints = len(cfg.network.interface_endpoints) * cfg.network.az_count
        out.append(PlatformCost("interface endpoints", endpoints * p["interfaceEndpointPerAzHour"]["value"] * hours,
                                f"{len(cfg.network.interface_endpoints)} endpoint(s) x {cfg.network.az_count} AZ"))
    out.append(PlatformCost("gateway load balancer (NLB)", p["nlbPerHour"]["value"] * hours, "1 NLB, LCUs not counted"))
    return tuple(out)


def node_starts_per_month(cfg: StackConfig) -> dict[str, float]:
    """Per pool, nodes launched a month by its schedule (each window opening starts `size` nodes);
    autoscaled starts are not predictable and not counted."""
    out = {}
    for pool in cfg.pools:
        s = pool.schedule
        out[pool.name] = 0.0 if s is None else sum(len(w.days) * max(0, w.size - s.off_size)
                                                   for w in s.windows) * WEEKS_PER_MONTH
    return out


def idle_node_hours(cfg: StackConfig, pool: str, cold_start_seconds: int) -> float:
    """Node-hours a month a scheduled pool pays before its replicas serve: the pre-warm lead, or the
    cold start where the lead is shorter."""
    spec = cfg.pool(pool)
    if spec.schedule is None:
        return 0.0
    lead_minutes = max(spec.schedule.prewarm_minutes, prewarm_minutes(cold_start_seconds))
    return node_starts_per_month(cfg)[pool] * lead_minutes / 60


def api_on_mix(price: ApiPrice, mix: float = INPUT_PER_OUTPUT) -> float:
    """The API's price per million tokens on the mix: from its input and output prices when listed,
    else its blended price (which the provider computes on a 3:1 mix)."""
    if price.input_usd_per_m is not None and price.output_usd_per_m is not None:
        return (mix * price.input_usd_per_m + price.output_usd_per_m) / (mix + 1)
    return price.blended_usd_per_m


def token_economics(monthly_usd: float, output_tokens_per_month: float | None, api: ApiPrice | None,
                    idle_hours: float, mix: float = INPUT_PER_OUTPUT) -> TokenEconomics:
    tokens = None if output_tokens_per_month is None else output_tokens_per_month * (1 + mix)
    per_m = monthly_usd / (tokens / 1e6) if tokens else None
    api_m = None if api is None else api_on_mix(api, mix)
    capacity = None if tokens is None else tokens / 1e6 / DAYS_PER_MONTH
    break_even = monthly_usd / api_m / DAYS_PER_MONTH if api_m else None
    reachable = None if capacity is None or break_even is None else break_even <= capacity
    return TokenEconomics(mix, per_m, api_m, capacity, break_even, reachable, idle_hours)
