"""Pools off AWS have a price: an on-prem amortization (capex over months + power) or a GPU cloud's
hourly list price, used by cost and break-even exactly like a catalog price."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.planning.cost import DAYS_PER_MONTH, pool_cost
from infra.planning.plan import build_plan
from infra.planning.schedule import AVERAGE_MONTH_HOURS
from infra.planning.shapes import instance_shape
from infra.stack.config import load_stack_file
from infra.stack.spec import Amortized
from tests.conftest import STACKS
from tests.planning.test_sizing import pool
from tests.planning.test_targets import HGX

NO_FETCH = lambda *_: pytest.fail("nothing may be fetched")  # noqa: E731


def existing(itype: str, desired: int, max_size: int):
    return dataclasses.replace(pool(itype), desired_size=desired, min_size=0, max_size=max_size,
                               node_selector=(("k", "v"),))


@given(capex=st.floats(1e4, 1e6), months=st.integers(12, 72), kw=st.floats(0, 20), tariff=st.floats(0, 0.5),
       desired=st.integers(0, 4), extra=st.integers(0, 4))
def test_owned_servers_pay_their_amortization_all_month_and_power_only_when_running(
        capex, months, kw, tariff, desired, extra):
    shape = instance_shape(dataclasses.replace(HGX, amortized=Amortized(capex, months, kw, tariff)))
    p = existing(shape.name, desired, desired + extra or 1)
    cost = pool_cost(p, shape, "us-east-1")
    capex_h = capex / (months * AVERAGE_MONTH_HOURS)
    assert cost.hourly_usd == pytest.approx(capex_h + kw * tariff)
    assert cost.monthly_usd == pytest.approx(capex_h * p.max_size * AVERAGE_MONTH_HOURS
                                             + kw * tariff * desired * AVERAGE_MONTH_HOURS)
    assert cost.monthly_usd > 0                         # a pool at zero still owns its servers
    assert "owned node" in cost.basis and f"{months} months" in cost.basis


def test_a_gpu_cloud_shape_is_billed_by_the_hour():
    shape = instance_shape(dataclasses.replace(HGX, provider="nebius", hourly_usd=28.0))
    cost = pool_cost(existing(shape.name, 1, 2), shape, "eu-north-1")       # any region: no per-region table
    assert (cost.hourly_usd, cost.monthly_usd) == (28.0, pytest.approx(28.0 * AVERAGE_MONTH_HOURS))
    assert "nebius list price" in cost.basis


def test_an_unpriced_on_prem_shape_still_says_how_to_price_it():
    from infra.planning.catalog import load_catalog
    cost = pool_cost(existing("ascend-910b.8x", 1, 1), load_catalog().instance("ascend-910b.8x"), "us-east-1")
    assert cost.monthly_usd == 0 and "capexUSD/months/powerKW/usdPerKWh" in cost.basis


def test_onprem_ascend_plans_glm51_with_a_cost_and_a_break_even():
    cfg = load_stack_file(STACKS / "Pulumi.onprem-ascend.yaml")
    plan = build_plan(cfg, fetch=NO_FETCH)
    (dep,) = plan.deployments
    assert dep.model == "glm-5-1" and dep.precision == "w4a8"
    a = cfg.shapes[0].amortized
    assert plan.monthly_usd == pytest.approx(a.capex_usd / a.months * cfg.pool("ascend-a2").max_size
                                             + a.power_kw * a.usd_per_kwh * AVERAGE_MONTH_HOURS)
    (m,) = plan.models
    assert m.cheapest_api is not None and m.break_even_million_tokens_per_day == pytest.approx(
        plan.monthly_usd / m.cheapest_api.blended_usd_per_m / DAYS_PER_MONTH)
    assert m.break_even_million_tokens_per_day > 0


def test_existing_cluster_prices_hgx_as_owned_not_at_the_aws_list_price():
    cfg = load_stack_file(STACKS / "Pulumi.existing-cluster.yaml")
    plan = build_plan(cfg, fetch=lambda hf_id, rev: pytest.fail(f"fetched {hf_id}")
                      if hf_id != "Qwen/Qwen2.5-7B-Instruct" else _qwen())
    hgx = plan.pool("glm51")
    assert hgx.instance_type == "hgx-h100.8x" and "on-prem hgx-h100.8x" in hgx.basis
    assert hgx.hourly_usd < 55.04                       # not p5.48xlarge's list price
    dep = next(d for d in plan.deployments if d.model == "glm-5-1")
    assert (dep.layout.nodes, dep.layout.gpus, dep.interconnect) == (2, 16, "infiniband")


def _qwen():
    import json

    from tests.conftest import FIXTURES
    return json.loads((FIXTURES / "hf" / "Qwen__Qwen2.5-7B-Instruct" / "config.json").read_text())
