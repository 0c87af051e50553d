"""The shipped stacks pass our own policy pack: its pure checks run over each stack's render.

The pack itself is unit-tested in policy/tests; this proves the program and the pack agree on
resource shapes, so `pulumi preview --policy-pack policy` will not block a shipped stack."""

from __future__ import annotations

import llmfleet_policies as lp  # on the path from tests/conftest.py, as Pulumi runs the pack from policy/
import pytest

from scripts.policy_check import as_policy_resources, verdicts
from tests.conftest import SHIPPED


@pytest.mark.parametrize("stack", SHIPPED)
def test_shipped_stack_passes_every_mandatory_policy(rendered, stack):
    found = verdicts(rendered(stack))
    assert found is not None and [v for v in found if v["level"] == "mandatory"] == []
    # what is left is advisory only: the internal gateway NLB without TLS (allowed inside the VPC)
    assert {v["policy"] for v in found} <= {"llmfleet-internal-lb-tls"}


def test_a_mandatory_violation_is_reported_with_its_policy_id(rendered):
    records = [dict(r, inputs={**r["inputs"], "metadataOptions": {"httpTokens": "optional"}})
               if r["type"] == lp.LAUNCH_TEMPLATE else r for r in rendered("dev")]
    found = verdicts(records)
    assert any(v["policy"] == "llmfleet-imdsv2-required" and v["level"] == "mandatory" for v in found)


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
