"""Cost: pool hours from schedules (zones, DST), spot discounts, shared pools, tokens and break-even."""

from __future__ import annotations

import pytest

from infra.planning.catalog import load_catalog
from infra.planning.cost import AVERAGE_MONTH_HOURS, DAYS_PER_MONTH, pool_cost
from infra.planning.plan import build_plan
from infra.stack.config import parse_config

CAT = load_catalog()


def cfg(stack_values, name="prod", edit=None):
    values = stack_values(name)
    if edit:
        edit(values)
    return parse_config(values, name)


def test_on_demand_pool_runs_all_month_at_desired(stack_values):
    c = cfg(stack_values)
    base = pool_cost(c.pool("h200-base"), CAT.instance("p5en.48xlarge"), "us-east-1")
    assert base.hourly_usd == 63.296 and base.monthly_node_hours == AVERAGE_MONTH_HOURS
    assert base.monthly_usd == pytest.approx(63.296 * 730)


def test_spot_pool_pays_the_discounted_rate_and_nothing_at_zero(stack_values):
    c = cfg(stack_values)
    spot = pool_cost(c.pool("h200-spot"), CAT.instance("p5en.48xlarge"), "us-east-1")
    shape = CAT.instance("p5en.48xlarge")
    assert spot.hourly_usd == pytest.approx(63.296 * (1 - shape.spot_discount))
    assert spot.monthly_usd == 0.0                                     # desiredSize 0: scaled to zero stays zero
    assert spot.max_monthly_usd == pytest.approx(2 * 730 * spot.hourly_usd)


def test_scheduled_peak_pool_in_shanghai(stack_values):
    c = build_plan(cfg(stack_values)).config                 # `prewarmMinutes: auto` resolved
    peak = pool_cost(c.pool("h200-peak"), CAT.instance("p5en.48xlarge"), "us-east-1")
    lead = c.pool("h200-peak").schedule.prewarm_minutes / 60
    # 2026: 261 weekdays; windows 09:00-12:00 and 13:30-19:00, each with the pre-warm lead, 2 nodes
    hours_per_day = (3 + lead) + (5.5 + lead)
    assert peak.monthly_node_hours == pytest.approx(261 * hours_per_day * 2 / 12)
    assert peak.monthly_usd == pytest.approx(peak.monthly_node_hours * 63.296)


def test_exact_month_counts_dst_in_the_pools_zone(stack_values):
    def london_all_day(values):
        values["llm-fleet:pools"][0]["schedule"] = {"timezone": "Europe/London", "offSize": 0, "windows": [
            {"days": "daily", "start": "00:00", "end": "24:00", "size": 1}]}
    c = cfg(stack_values, "dev", london_all_day)
    shape = CAT.instance("g6.xlarge")
    march = pool_cost(c.pool("l4-spot"), shape, "us-east-1", month=(2026, 3))
    october = pool_cost(c.pool("l4-spot"), shape, "us-east-1", month=(2026, 10))
    assert march.monthly_node_hours == 31 * 24 - 1 and october.monthly_node_hours == 31 * 24 + 1


def test_region_without_a_price_is_refused(stack_values):
    c = cfg(stack_values, edit=lambda v: v.__setitem__("aws:region", "eu-north-1"))
    with pytest.raises(ValueError, match="regions with a price"):
        build_plan(c)


def test_plan_totals_and_model_economics(stack_values):
    p = build_plan(cfg(stack_values))
    assert p.monthly_usd == pytest.approx(sum(x.monthly_usd for x in p.pools))
    glm = next(m for m in p.models if m.model == "glm-5-1")
    small = next(m for m in p.models if m.model == "qwen2-5-7b")
    glm_pools = ("h200-base", "h200-spot", "h200-peak")
    assert glm.monthly_usd == pytest.approx(sum(p.pool(n).monthly_usd for n in glm_pools))
    assert small.monthly_usd == pytest.approx(p.pool("l40s-small").monthly_usd)
    # tokens: replica-hours x 3600 x stated rate x utilisation (prod states 2000 tok/s, 0.5)
    replica_hours = sum(p.pool(n).monthly_node_hours for n in glm_pools)
    assert glm.output_tokens_per_month == pytest.approx(replica_hours * 3600 * 2000 * 0.5)
    assert glm.usd_per_million_tokens == pytest.approx(glm.monthly_usd / (glm.output_tokens_per_month / 1e6))
    cheapest = min(CAT.api_prices_for("glm-5.1"), key=lambda a: a.blended_usd_per_m)
    assert glm.cheapest_api == cheapest
    expected = glm.monthly_usd / cheapest.blended_usd_per_m / DAYS_PER_MONTH
    assert glm.break_even_million_tokens_per_day == pytest.approx(expected)
    assert small.usd_per_million_tokens is None and small.cheapest_api is None


def test_shared_pool_cost_is_split_by_gpu_demand(stack_values):
    def share(values):
        values["llm-fleet:models"].append({"name": "llama", "source": "meta-llama/Llama-3.1-8B-Instruct",
                                           "precision": "bf16", "pool": "l40s-small", "maxContext": 8192,
                                           "replicas": {"min": 1, "max": 1}})
    p = build_plan(cfg(stack_values, edit=share))
    qwen = next(m for m in p.models if m.model == "qwen2-5-7b")
    llama = next(m for m in p.models if m.model == "llama")
    assert qwen.monthly_usd == pytest.approx(3 * llama.monthly_usd)       # 1 GPU x 3 replicas vs 1 x 1
    assert qwen.monthly_usd + llama.monthly_usd == pytest.approx(p.pool("l40s-small").monthly_usd)
