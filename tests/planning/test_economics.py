"""Economics like for like: same token mix on both sides, capacity vs break-even, idle hours, non-GPU costs."""

from __future__ import annotations

import pytest

from infra.planning.catalog import ApiPrice
from infra.planning.economics import (
    DAYS_PER_MONTH,
    INPUT_PER_OUTPUT,
    api_on_mix,
    node_starts_per_month,
    platform_costs,
    prices,
    token_economics,
)
from infra.planning.plan import build_plan
from infra.stack.config import load_stack_file
from scripts.common import REPO_ROOT


def _cfg(stack: str):
    return load_stack_file(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml")


def _api(inp, out, blended=1.0):
    return ApiPrice("glm-5.1", "x", inp, out, blended, None, "2026-05", "facts-seed-003")


def test_the_api_price_is_taken_on_the_same_mix():
    # Z.ai 0.98 in / 3.08 out on 3:1 -> (3 x 0.98 + 3.08) / 4
    assert api_on_mix(_api(0.98, 3.08)) == pytest.approx((3 * 0.98 + 3.08) / 4)
    assert api_on_mix(_api(None, None, 0.74)) == 0.74


def test_fleet_tokens_count_input_and_output_on_the_mix():
    e = token_economics(30_000.0, 1e9, _api(None, None, 0.74), 0.0)
    assert e.usd_per_million_tokens == pytest.approx(30_000 / (1e9 * (1 + INPUT_PER_OUTPUT) / 1e6))
    assert e.capacity_million_tokens_per_day == pytest.approx(4e9 / 1e6 / DAYS_PER_MONTH)
    assert e.break_even_million_tokens_per_day == pytest.approx(30_000 / 0.74 / DAYS_PER_MONTH)
    assert e.reachable is False                      # 1,333 M/day break-even vs 131 M/day capacity
    assert token_economics(30.0, 1e9, _api(None, None, 0.74), 0.0).reachable is True


def test_prod_says_break_even_is_not_reachable_and_counts_idle_hours():
    plan = build_plan(_cfg("prod"))
    e = plan.economics["glm-5-1"]
    assert e.reachable is False and e.break_even_million_tokens_per_day > e.capacity_million_tokens_per_day
    assert e.idle_node_hours > 0                     # the peak pool's pre-warm is paid and serves nothing
    glm = plan.to_json()["models"][0]["economics"]
    assert glm["breakEvenReachable"] is False and glm["inputPerOutputTokens"] == INPUT_PER_OUTPUT


def test_non_gpu_costs_are_shown_apart_and_only_for_a_stack_we_build():
    plan = build_plan(_cfg("prod"))
    items = {c.item: c.monthly_usd for c in plan.platform}
    hours = 8760 / 12
    assert items["EKS control plane"] == pytest.approx(prices()["eksControlPlanePerHour"]["value"] * hours)
    assert items["NAT gateways"] == pytest.approx(3 * prices()["natGatewayPerHour"]["value"] * hours)  # per-az, 3 AZ
    assert items["NAT data processing (estimate)"] > 0
    assert plan.to_json()["platformMonthlyUSD"] == pytest.approx(sum(items.values()), abs=0.05)
    assert plan.to_json()["monthlyUSD"] == plan.to_json()["gpuMonthlyUSD"]
    assert platform_costs(_cfg("existing-cluster"), 10, 12, 100) == ()


def test_node_starts_come_from_the_schedule():
    starts = node_starts_per_month(_cfg("prod"))
    assert starts["h200-base"] == 0
    assert starts["h200-peak"] == pytest.approx(2 * 5 * 2 * 365 / 12 / 7)    # 2 windows x 5 days x 2 nodes


def test_json_says_which_tokens_each_price_counts():
    glm = build_plan(_cfg("prod")).to_json()["models"][0]
    assert glm["usdPerMillionTokens"] == glm["economics"]["usdPerMillionTokens"]
    assert glm["usdPerMillionOutputTokens"] > glm["usdPerMillionTokens"] * INPUT_PER_OUTPUT    # output-only, dearer
    assert glm["cheapestApi"]["usdPerMillionTokensOnMix"] == glm["economics"]["apiUSDPerMillionTokens"]
