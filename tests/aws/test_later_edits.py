"""Issue 11, "breaks a later edit": node groups that can be replaced, a desired size that is valid and never
below what runs, GPU updates that do not launch a second fleet. Rendered under mocks; where the behaviour
is the provider's, infra.aws.scaling's docstring names the source."""

from __future__ import annotations

import json

import yaml
from hypothesis import given
from hypothesis import strategies as st
from pulumi.runtime import mocks

from infra.aws.scaling import LiveScaling, scaling_inputs
from scripts import render as render_module
from scripts.cmd_diff import diff_records, node_group_replacements, to_markdown
from scripts.render import MOCK_UNIQUE_ID, render
from tests.aws.test_network import pool_of, stack_file
from tests.conftest import named, of_type

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


def live(monkeypatch, cluster: str, groups: dict[str, tuple[int, int, int]]) -> None:
    """Pretend the cluster runs: one node group per pool (found by its tag) with (min, max, desired)."""
    running = tuple((cluster, {"nodeGroupName": f"{cluster}-{pool}-{MOCK_UNIQUE_ID}", "tags": {"llm-fleet/pool": pool},
                               "scalingConfigs": [{"minSize": lo, "maxSize": hi, "desiredSize": want}]})
                    for pool, (lo, hi, want) in groups.items())
    monkeypatch.setattr(render_module.Recorder, "live_groups", running)


def registered(monkeypatch, field: str) -> dict[str, list[str]]:
    """Resource name -> a list field of its RegisterResource request (ignoreChanges, dependencies)."""
    seen: dict[str, list[str]] = {}
    original = mocks.MockMonitor.RegisterResource

    def register(self, request):
        seen[request.name] = list(getattr(request, field))
        return original(self, request)

    monkeypatch.setattr(mocks.MockMonitor, "RegisterResource", register)
    return seen


def ignored(monkeypatch) -> dict[str, list[str]]:
    return registered(monkeypatch, "ignoreChanges")


# ---------------------------------------------------------------------------------------------- item 5

def test_node_groups_have_generated_names_and_the_pool_in_a_tag(rendered):
    records = rendered("prod")
    for ng in of_type(records, NODE_GROUP):
        inputs = ng["inputs"]
        assert "nodeGroupName" not in inputs            # a fixed name collides on create-before-delete
        pool = inputs["tags"]["llm-fleet/pool"]
        assert inputs["nodeGroupNamePrefix"] == f"llm-fleet-prod-{pool}-"
        assert len(inputs["nodeGroupNamePrefix"]) + len(MOCK_UNIQUE_ID) <= 63


def test_long_cluster_and_pool_names_still_fit_eks_63_characters(tmp_path):
    def edit(c):
        c["llm-fleet:cluster"]["name"] = "a-rather-long-cluster-name-here"
    records = render(stack_file(tmp_path, edit))
    for ng in of_type(records, NODE_GROUP):
        assert len(ng["inputs"]["nodeGroupNamePrefix"]) + len(MOCK_UNIQUE_ID) <= 63
        assert ng["inputs"]["nodeGroupNamePrefix"].endswith("-")


def test_autoscaler_priorities_and_schedules_follow_the_generated_names(rendered):
    records = rendered("prod")
    priorities = yaml.safe_load(named(records, "gpu-addons-ca-priorities")["inputs"]["data"]["priorities"])
    assert f"^eks-llm-fleet-prod-h200-spot-{MOCK_UNIQUE_ID}-[0-9a-f-]+$" in priorities[50]
    for schedule in of_type(records, "aws:scheduler/schedule:Schedule"):
        body = json.loads(schedule["inputs"]["target"]["input"])
        assert body["NodegroupName"] == f"llm-fleet-prod-h200-peak-{MOCK_UNIQUE_ID}"


# ---------------------------------------------------------------------------------------------- item 6

def test_first_deploy_creates_groups_at_the_stack_file_size_and_ignores_it_after(tmp_path, monkeypatch):
    seen = ignored(monkeypatch)
    records = render(stack_file(tmp_path, lambda c: None))
    assert named(records, "gpu-h200-base")["inputs"]["scalingConfig"]["desiredSize"] == 1
    assert seen["gpu-h200-spot"] == ["scalingConfig.desiredSize"]


def test_raising_min_above_the_live_size_sends_a_valid_size(tmp_path, monkeypatch):
    """Live 0..2 at 0; the stack raises min to 1: EKS refuses desired 0 < min 1, so 1 is sent."""
    live(monkeypatch, "llm-fleet-t", {"h200-spot": (0, 2, 0)})
    seen = ignored(monkeypatch)
    records = render(stack_file(tmp_path, lambda c: pool_of(c, "h200-spot").update(minSize=1)))
    assert named(records, "gpu-h200-spot")["inputs"]["scalingConfig"] == {"minSize": 1, "maxSize": 2,
                                                                          "desiredSize": 1}
    assert seen["gpu-h200-spot"] == []


def test_changing_bounds_never_sends_less_than_what_runs(tmp_path, monkeypatch):
    """The autoscaler runs 2 spot nodes (created at 0); raising max to 3 must send 2, not the stale 0."""
    live(monkeypatch, "llm-fleet-t", {"h200-spot": (0, 2, 2)})
    seen = ignored(monkeypatch)
    records = render(stack_file(tmp_path, lambda c: pool_of(c, "h200-spot").update(maxSize=3)))
    assert named(records, "gpu-h200-spot")["inputs"]["scalingConfig"]["desiredSize"] == 2
    assert seen["gpu-h200-spot"] == []


def test_unchanged_bounds_leave_the_desired_size_to_the_autoscaler(tmp_path, monkeypatch):
    live(monkeypatch, "llm-fleet-t", {"h200-spot": (0, 2, 2), "system": (2, 4, 3)})
    seen = ignored(monkeypatch)
    render(stack_file(tmp_path, lambda c: None))
    assert seen["gpu-h200-spot"] == ["scalingConfig.desiredSize"]
    assert seen["cluster-system"] == ["scalingConfig.desiredSize"]


@given(lo=st.integers(0, 8), span=st.integers(0, 8), live_lo=st.integers(0, 8), live_span=st.integers(0, 8),
       live_at=st.integers(0, 16))
def test_sent_desired_size_is_valid_and_keeps_running_nodes(lo, span, live_lo, live_span, live_at):
    hi, live_hi = lo + span, live_lo + live_span
    running = min(live_lo + live_at, live_hi)
    out = scaling_inputs(lo, hi, lo, LiveScaling(live_lo, live_hi, running))
    assert lo <= out.desired_size <= hi                               # EKS accepts it
    assert out.desired_size >= min(running, hi)                       # nothing that runs is drained below max
    assert out.ignore_desired == ((live_lo, live_hi) == (lo, hi))      # no scaling update: leave it alone


# ---------------------------------------------------------------------------------------------- item 7

def test_gpu_pools_update_with_the_minimal_strategy(rendered):
    records = rendered("prod")
    for ng in of_type(records, NODE_GROUP):
        strategy = ng["inputs"]["updateConfig"].get("updateStrategy")
        assert strategy == ("MINIMAL" if ng["name"].startswith("gpu-") else None), ng["name"]


def base_and_head(tmp_path, edit) -> tuple[list[dict], list[dict]]:
    """The prod stack before and after `edit`, rendered under the same stack name."""
    (tmp_path / "base").mkdir()
    (tmp_path / "head").mkdir()
    return render(stack_file(tmp_path / "base", lambda c: None)), render(stack_file(tmp_path / "head", edit))


def test_fleet_diff_flags_a_gpu_node_group_replacement(tmp_path):
    base, head = base_and_head(tmp_path, lambda c: pool_of(c, "h200-spot").update(azIds=["use1-az2"]))
    replaced = node_group_replacements(base, head)
    assert replaced == [{"pool": "h200-spot", "name": "gpu-h200-spot", "inputs": ["subnetIds"]}]
    resources = diff_records(base, head)
    cost = {"before": 0.0, "after": 0.0, "delta": 0.0, "pools": []}
    text = to_markdown("prod", "origin/main", resources, cost, [], replaced)
    assert "**Replaces the GPU node group of pool `h200-spot`** (changed: `subnetIds`)" in text
    assert "drains and deletes the old one" in text.split("**Monthly cost:**")[0]   # at the top of the comment


def test_fleet_diff_does_not_flag_in_place_edits(tmp_path):
    base, head = base_and_head(tmp_path, lambda c: pool_of(c, "h200-spot").update(maxSize=3, diskGB=400))
    assert diff_records(base, head)["changed"]
    assert node_group_replacements(base, head) == []      # scaling and launch template versions update in place
