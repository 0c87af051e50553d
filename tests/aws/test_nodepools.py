"""GPU node pools: node groups, launch templates, scale-from-zero tags, schedules and cluster add-ons."""

from __future__ import annotations

import base64
import json
import re

import pulumi
import pytest
import yaml

from infra.aws.addons import CA_VERSION, LBC_VERSION, asg_pattern, lb_controller_policy
from scripts.render import MOCK_UNIQUE_ID, render
from tests.aws.test_network import narrow_offerings, pool_of, render_error, stack_file
from tests.conftest import named, of_type

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SCHEDULE = "aws:scheduler/schedule:Schedule"
RELEASE = "kubernetes:helm.sh/v3:Release"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def group(records, pool: str) -> dict:
    return named(records, f"gpu-{pool}")["inputs"]


def test_prod_node_groups_capacity_and_instance_types(rendered):
    records = rendered("prod")
    expected = {"h200-base": ("ON_DEMAND", ["p5en.48xlarge"], (1, 3)),
                "h200-spot": ("SPOT", ["p5en.48xlarge"], (0, 2)),
                "h200-peak": ("ON_DEMAND", ["p5en.48xlarge"], (0, 2)),
                "l40s-small": ("ON_DEMAND", ["g6e.xlarge"], (1, 3))}
    for pool, (capacity, types, (low, high)) in expected.items():
        ng = group(records, pool)
        assert "nodeGroupName" not in ng and ng["nodeGroupNamePrefix"] == f"llm-fleet-prod-{pool}-"
        assert ng["tags"]["llm-fleet/pool"] == pool
        assert ng["capacityType"] == capacity and ng["instanceTypes"] == types
        assert ng["amiType"] == "AL2023_x86_64_NVIDIA"
        assert (ng["scalingConfig"]["minSize"], ng["scalingConfig"]["maxSize"]) == (low, high)
        assert ng["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]


def test_labels_and_policy_pack_tags(rendered):
    records = rendered("prod")
    spot = group(records, "h200-spot")
    assert spot["labels"]["llm-fleet/pool"] == "h200-spot"
    assert spot["labels"]["llm-fleet/gpu"] == "h200"
    assert spot["labels"]["llm-fleet/capacity"] == "spot"
    assert spot["tags"]["llm-fleet/gpus-per-node"] == "8"
    assert spot["tags"]["llm-fleet/large-models"] == "glm-5-1"
    assert spot["tags"]["project"] == "llm-fleet" and spot["tags"]["stack"] == "prod"
    small = group(records, "l40s-small")
    assert small["labels"]["llm-fleet/gpu"] == "l40s" and small["tags"]["llm-fleet/large-models"] == ""
    assert small["tags"]["llm-fleet/gpus-per-node"] == "1"


def test_scale_from_zero_tags_on_node_group_and_its_asg(rendered):
    records = rendered("prod")
    spot = group(records, "h200-spot")
    assert spot["tags"][f"{TEMPLATE}/resources/nvidia.com/gpu"] == "8"
    assert spot["tags"][f"{TEMPLATE}/taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert spot["tags"][f"{TEMPLATE}/label/llm-fleet/pool"] == "h200-spot"
    asg_tags = {t["inputs"]["tag"]["key"]: t["inputs"] for t in of_type(records, "aws:autoscaling/tag:Tag")
                if t["inputs"]["autoscalingGroupName"] == f"eks-llm-fleet-prod-h200-spot-{MOCK_UNIQUE_ID}-asg"}
    template_tags = {k: v for k, v in spot["tags"].items() if k.startswith(TEMPLATE)}
    assert {k: v["tag"]["value"] for k, v in asg_tags.items()} == template_tags
    assert all(v["tag"]["propagateAtLaunch"] is False for v in asg_tags.values())


def test_launch_templates_require_imdsv2_and_raid_the_nvme(rendered):
    records = rendered("prod")
    big = named(records, "gpu-h200-base-lt")["inputs"]
    assert big["metadataOptions"]["httpTokens"] == "required"
    assert big["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 300
    assert big["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
    user_data = base64.b64decode(big["userData"]).decode()
    assert "Content-Type: application/node.eks.aws" in user_data
    node_config = yaml.safe_load(user_data.split("application/node.eks.aws")[1].split("--//--")[0])
    assert node_config["kind"] == "NodeConfig"
    assert node_config["spec"]["instance"]["localStorage"]["strategy"] == "RAID0"
    small = named(records, "gpu-l40s-small-lt")["inputs"]
    assert "userData" not in small                     # one 250 GB disk: no RAID (amazon-eks-ami#2386)
    assert "networkInterfaces" not in big and "placement" not in big


# ---------------------------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("stack", ["prod", "dev", "staging"])
def test_no_schedule_writes_a_node_group_size(rendered, stack):
    """Nodes follow pods (docs/capacity.md): a pool's schedule is KEDA cron triggers, never an
    EventBridge action that sets a node group's size under running engines or cuts an override."""
    records = rendered(stack)
    assert of_type(records, SCHEDULE) == []
    assert not [r for r in records if "eks:updateNodegroupConfig" in json.dumps(r["inputs"])]
    scaled = [r for r in records if r["type"].endswith("ScaledObject")]
    assert any(t["type"] == "cron" for r in scaled for t in r["inputs"]["spec"]["triggers"])


# ---------------------------------------------------------------------------------------------- add-ons

def test_cluster_autoscaler_priority_expander_tries_spot_first(rendered):
    records = rendered("prod")
    config = named(records, "gpu-addons-ca-priorities")["inputs"]
    assert config["metadata"] == {"name": "cluster-autoscaler-priority-expander", "namespace": "kube-system"}
    priorities = yaml.safe_load(config["data"]["priorities"])
    ordered = sorted(priorities, reverse=True)
    assert priorities[ordered[0]] == [asg_pattern(f"llm-fleet-prod-h200-spot-{MOCK_UNIQUE_ID}")]
    assert asg_pattern(f"llm-fleet-prod-h200-base-{MOCK_UNIQUE_ID}") in priorities[10]
    assert priorities[min(priorities)] == [".*"]
    assert re.match(asg_pattern("llm-fleet-prod-h200-spot"), "eks-llm-fleet-prod-h200-spot-8ec8f9b2-1a2b-3c4d")
    assert not re.match(asg_pattern("llm-fleet-prod-h200-spot"), "eks-llm-fleet-prod-h200-spot2-8ec8f9b2")


def test_cluster_autoscaler_release_is_pinned_and_fits_gpu_boot(rendered):
    release = named(rendered("prod"), "gpu-addons-cluster-autoscaler")["inputs"]
    assert release["version"] == CA_VERSION and release["repositoryOpts"]["repo"] == "https://kubernetes.github.io/autoscaler"
    values = release["values"]
    assert values["image"]["tag"] == "v1.33.6"
    assert values["extraArgs"]["expander"] == "priority"
    assert values["extraArgs"]["max-node-provision-time"] == "25m0s"
    assert values["autoDiscovery"]["clusterName"] == "llm-fleet-prod"
    assert values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "role/llm-fleet-prod-cluster-autoscaler")


def test_cluster_autoscaler_may_scale_only_this_clusters_groups(rendered):
    records = rendered("prod")
    policy = json.loads(named(records, "gpu-addons-cluster-autoscaler-policy")["inputs"]["policy"])
    write = next(s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"])
    assert write["Condition"] == {"StringEquals": {
        "aws:ResourceTag/k8s.io/cluster-autoscaler/llm-fleet-prod": "owned"}}


def test_device_plugin_targets_al2023_gpu_nodes_and_tolerates_the_taint(rendered):
    values = named(rendered("prod"), "gpu-addons-nvidia-device-plugin")["inputs"]["values"]
    term = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == [{"matchExpressions": [{"key": "llm-fleet/device-plugin", "operator": "In",
                                           "values": ["daemonset"]}]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    assert values["image"]["tag"] == "v0.20.0"


def test_lb_controller_uses_its_official_policy_and_irsa(rendered):
    records = rendered("prod")
    release = named(records, "gpu-addons-aws-load-balancer-controller")["inputs"]
    assert release["version"] == LBC_VERSION and release["values"]["clusterName"] == "llm-fleet-prod"
    assert release["values"]["vpcId"] == "network-vpc-id"
    policy = named(records, "gpu-addons-aws-lb-controller-policy")["inputs"]["policy"]
    assert policy == lb_controller_policy()
    actions = {a for s in json.loads(policy)["Statement"] for a in
               (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert "elasticloadbalancing:CreateLoadBalancer" in actions


def test_every_release_is_pinned_and_uses_the_explicit_provider(rendered):
    releases = [r for r in of_type(rendered("prod"), RELEASE) if r["parent"] == "gpu-addons"]
    assert {r["inputs"]["name"] for r in releases} == {"cluster-autoscaler", "nvidia-device-plugin",
                                                       "aws-load-balancer-controller"}
    for r in releases:
        assert r["inputs"]["version"][0].isdigit() and r["inputs"]["repositoryOpts"]["repo"].startswith("https://")


# ---------------------------------------------------------------------------------------------- other shapes

def test_capacity_block_pool(tmp_path):
    def edit(c):
        pool_of(c, "h200-peak").pop("schedule")
        pool_of(c, "h200-peak").update(capacity="capacity-block", capacityReservationId="cr-0123456789abcdef0",
                                       azIds=["use1-az4"])
    records = render(stack_file(tmp_path, edit))
    ng = group(records, "h200-peak")
    assert ng["capacityType"] == "CAPACITY_BLOCK" and ng["subnetIds"] == ["network-private-use1-az4-id"]
    lt = named(records, "gpu-h200-peak-lt")["inputs"]
    assert lt["instanceMarketOptions"] == {"marketType": "capacity-block"}
    assert lt["capacityReservationSpecification"] == {
        "capacityReservationTarget": {"capacityReservationId": "cr-0123456789abcdef0"}}


def test_multi_node_pool_launch_template_has_efa_cards_and_placement(tmp_path):
    from tests.aws.test_network import add_multi_node

    records = render(stack_file(tmp_path, add_multi_node))
    lt = named(records, "gpu-h200-multi-lt")["inputs"]
    cards = lt["networkInterfaces"]
    assert len(cards) == 16                                   # p5en: 16 EFA interfaces (catalog)
    assert cards[0]["interfaceType"] == "efa" and cards[0]["deviceIndex"] == 0
    assert {c["interfaceType"] for c in cards[1:]} == {"efa-only"}
    assert [c["networkCardIndex"] for c in cards] == list(range(16))
    assert all(c["securityGroups"] == ["sg-llm-fleet-t", "network-efa-id"] for c in cards)
    assert lt["placement"] == {"groupName": "llm-fleet-t-h200-multi"}
    ng = group(records, "h200-multi")
    assert ng["labels"]["vpc.amazonaws.com/efa.present"] == "true"
    assert ng["tags"][f"{TEMPLATE}/resources/vpc.amazonaws.com/efa"] == "16"
    efa = named(records, "gpu-addons-aws-efa-k8s-device-plugin")["inputs"]
    assert efa["values"]["nodeSelector"] == {"vpc.amazonaws.com/efa.present": "true"}


def test_bottlerocket_pool_uses_its_own_raid_and_device_plugin(tmp_path):
    def edit(c):
        pool_of(c, "h200-base").update(amiType="BOTTLEROCKET_x86_64_NVIDIA")
        # Bottlerocket has no NVMe cache mount (test_first_deploy): the engine streams from S3 instead
        next(m for m in c["llm-fleet:models"] if m["name"] == "glm-5-1")["loading"] = "runai-streamer"
    records = render(stack_file(tmp_path, edit))
    lt = named(records, "gpu-h200-base-lt")["inputs"]
    assert lt["blockDeviceMappings"][0]["deviceName"] == "/dev/xvdb"
    toml = base64.b64decode(lt["userData"]).decode()
    assert '["apiclient", "ephemeral-storage", "init"]' in toml and "settings.bootstrap-commands" in toml
    ng = group(records, "h200-base")
    assert ng["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA" and "llm-fleet/device-plugin" not in ng["labels"]


# ---------------------------------------------------------------------------------------------- refused stacks

def test_scheduled_pool_without_windows_is_refused(tmp_path):
    message = render_error(stack_file(tmp_path, lambda c: pool_of(c, "h200-peak")["schedule"].update(windows=[])))
    assert "schedule.windows" in message and "at least one window" in message


def test_capacity_block_pool_without_reservation_is_refused(tmp_path):
    def edit(c):
        pool_of(c, "h200-peak").pop("schedule")
        pool_of(c, "h200-peak").update(capacity="capacity-block")
    message = render_error(stack_file(tmp_path, edit))
    assert "capacityReservationId" in message and "reservation id" in message


def test_capacity_block_pool_without_its_az_is_refused(tmp_path):
    def edit(c):
        pool_of(c, "h200-peak").pop("schedule")
        pool_of(c, "h200-peak").update(capacity="capacity-block", capacityReservationId="cr-0123456789abcdef0")
    assert "pin exactly the AZ id of the reservation" in render_error(stack_file(tmp_path, edit))


def test_pool_whose_shape_no_vpc_az_offers_is_refused(tmp_path, monkeypatch):
    narrow_offerings(monkeypatch, {"g6e.xlarge": {f"use1-az{i}" for i in range(1, 7)}})
    with pytest.raises(pulumi.RunError, match=r"pools\.l40s-small\.instanceTypes: none of the VPC's AZs"):
        render(stack_file(tmp_path, lambda c: None))
