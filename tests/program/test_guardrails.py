"""The shipped stacks pass our own policy pack: its pure checks run over each stack's render.

The pack itself is unit-tested in policy/tests; this proves the program and the pack agree on
resource shapes, so `pulumi preview --policy-pack policy` will not block a shipped stack."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO, SHIPPED

sys.path.insert(0, str(REPO / "policy"))
import llmfleet_policies as lp  # noqa: E402

RESOURCE_CHECKS = (lp.check_gpu_pool_max_size, lp.check_exposed_endpoint, lp.check_images_pinned,
                   lp.check_helm_chart_pinned, lp.check_engine_pods, lp.check_imdsv2)
STACK_CHECKS = (lp.check_spot_fallback, lp.check_buckets, lp.check_nodegroup_subnets,
                lambda rs: lp.check_gpu_total(rs, lp.DEFAULT_MAX_TOTAL_GPUS))


def as_policy_resources(records):
    """Render records in the shape the checks read: props carry the mock id the program wired with."""
    return [{"type": r["type"], "name": r["name"], "urn": f"urn:pulumi:stack::llm-fleet::{r['type']}::{r['name']}",
             "parent": r["parent"], "props": {**r["inputs"], "id": f"{r['name']}-id"}} for r in records]


@pytest.mark.parametrize("stack", SHIPPED)
def test_shipped_stack_passes_every_mandatory_policy(rendered, stack):
    resources = as_policy_resources(rendered(stack))
    problems = [f"{r['type']} {r['name']}: {m}" for r in resources for check in RESOURCE_CHECKS for m in check(r)]
    problems += [v.message for check in STACK_CHECKS for v in check(resources)]
    assert problems == []


def test_the_checks_see_the_rendered_resources(rendered):
    """Guard against a vacuous pass: the checks do find what they check in the prod render."""
    resources = as_policy_resources(rendered("prod"))
    assert sum(lp.is_gpu_node_group(r) for r in resources) == 4
    assert any(lp.pod_templates(r) for r in resources)
    broken = [dict(r, props={**r["props"], "metadataOptions": {"httpTokens": "optional"}})
              for r in resources if r["type"] == lp.LAUNCH_TEMPLATE]
    assert broken and all(lp.check_imdsv2(r) for r in broken)
    spot_only = [r for r in resources if not (lp.is_gpu_node_group(r) and r["props"].get("capacityType") != "SPOT"
                                              and r["props"].get("tags", {}).get(lp.TAG_LARGE_MODELS))]
    assert lp.check_spot_fallback(spot_only)                 # drop the on-demand GLM pools: the check fires
