"""Issue 11, "blocks the first deploy" and the hardening it asked for: control-plane AZs EKS accepts, Helm
charts installed after the LB controller's webhook is ready, honest prices for shipped pools, the weights
cache on instance storage or refused, IMDS hop limit 1 on GPU nodes, node auto-repair, a dead-letter
queue and an alarm on the schedules, add-on pins checked against EKS at preview."""

from __future__ import annotations

import os
import subprocess
import sys

import pulumi
import pytest

from infra.aws.network import CONTROL_PLANE_UNSUPPORTED_AZS, choose_azs, control_plane_azs
from infra.planning.catalog import load_catalog
from infra.stack.config import load_stack_file
from infra.stack.reader import ConfigError
from scripts import render as render_module
from scripts.render import render
from tests.aws.test_later_edits import live, registered
from tests.aws.test_network import pool_of, render_error, stack_file
from tests.conftest import REPO, SHIPPED, STACKS, named, of_type

RELEASE = "kubernetes:helm.sh/v3:Release"


# ---------------------------------------------------------------------------------------------- item 1

def test_prod_control_plane_avoids_the_az_eks_refuses(rendered):
    records = rendered("prod")
    (cluster,) = of_type(records, "aws:eks/cluster:Cluster")
    subnets = cluster["inputs"]["vpcConfig"]["subnetIds"]
    assert subnets == ["network-private-use1-az1-id", "network-private-use1-az2-id", "network-private-use1-az4-id"]
    assert not [s for s in of_type(records, "aws:ec2/subnet:Subnet") if "use1-az3" in s["name"]]


def test_a_pool_pinned_to_an_unsupported_az_gets_it_but_the_control_plane_does_not(tmp_path):
    records = render(stack_file(tmp_path, lambda c: pool_of(c, "l40s-small").update(azIds=["use1-az3"])))
    (cluster,) = of_type(records, "aws:eks/cluster:Cluster")
    assert "network-private-use1-az3-id" not in cluster["inputs"]["vpcConfig"]["subnetIds"]
    assert named(records, "gpu-l40s-small")["inputs"]["subnetIds"] == ["network-private-use1-az3-id"]


def test_vpc_fills_with_supported_azs_first():
    region = [f"use1-az{i}" for i in range(1, 7)]
    assert choose_azs(region, 3, []) == ("use1-az1", "use1-az2", "use1-az4")
    assert set(choose_azs(region, 6, [])) == set(region)          # asked for all: az3 is still spanned


def test_an_existing_vpc_without_two_supported_azs_is_refused():
    assert control_plane_azs(("use1-az1", "use1-az3", "use1-az5")) == ("use1-az1", "use1-az5")
    with pytest.raises(pulumi.RunError, match=r"network: .*two AZs it supports.*use1-az3 refused by EKS"):
        control_plane_azs(("use1-az3", "use1-az4"))
    assert {"use1-az3", "usw1-az2", "cac1-az3"} == CONTROL_PLANE_UNSUPPORTED_AZS


# ---------------------------------------------------------------------------------------------- item 3

def test_charts_wait_for_the_lb_controller_webhook(tmp_path, monkeypatch):
    depends = registered(monkeypatch, "dependencies")

    def multi(c):   # a multi-node pool, so the EFA plugin is there too
        c["llm-fleet:pools"].append({"name": "h200-multi", "instanceTypes": ["p5en.48xlarge"], "capacity": "on-demand",
                                     "minSize": 0, "maxSize": 2, "diskGB": 300})
        c["llm-fleet:models"].append({"name": "glm-5-1-bf16", "source": "zai-org/GLM-5.1", "precision": "bf16",
                                      "engine": "vllm", "pool": "h200-multi", "replicas": {"min": 0, "max": 1},
                                      "maxNodesPerReplica": 2, "maxContext": 32768, "loading": "runai-streamer"})
    records = render(stack_file(tmp_path, multi))
    releases = {r["name"] for r in of_type(records, RELEASE) if r["parent"] == "gpu-addons"}
    lbc = "gpu-addons-aws-load-balancer-controller"
    assert releases >= {lbc, "gpu-addons-cluster-autoscaler", "gpu-addons-nvidia-device-plugin",
                        "gpu-addons-aws-efa-k8s-device-plugin"}
    for release in releases - {lbc}:
        assert any(urn.endswith(f"::{lbc}") for urn in depends[release]), release


# ---------------------------------------------------------------------------------------------- item 4

@pytest.mark.parametrize("stack", SHIPPED)
def test_every_shipped_pool_type_has_an_on_demand_price(stack):
    """A spot or on-demand pool is costed from the on-demand price of each type it may launch."""
    cfg, catalog = load_stack_file(STACKS / f"Pulumi.{stack}.yaml"), load_catalog()
    for pool in cfg.pools:
        if pool.capacity != "capacity-block":
            for itype in pool.instance_types:
                assert catalog.instance(itype).hourly_usd(cfg.region) > 0, (stack, pool.name, itype)


# ---------------------------------------------------------------------------------------------- item 8

def test_bottlerocket_pool_with_an_nvme_cached_checkpoint_is_refused(tmp_path):
    message = render_error(stack_file(
        tmp_path, lambda c: pool_of(c, "h200-base").update(amiType="BOTTLEROCKET_x86_64_NVIDIA")))
    assert message.startswith("pools.h200-base: BOTTLEROCKET_x86_64_NVIDIA keeps instance storage at /mnt/.ephemeral")
    assert "glm-5-1" in message and "300 GB EBS volume" in message and "loading: runai-streamer" in message


def test_single_nvme_shape_with_a_checkpoint_bigger_than_its_disk_is_refused(tmp_path):
    def edit(c):
        pool_of(c, "l40s-small").update(diskGB=50)
    message = render_error(stack_file(tmp_path, edit))
    assert message.startswith("pools.l40s-small: g6e.xlarge has no instance store we assemble at /mnt/k8s-disks/0")
    assert "raise pools.l40s-small.diskGB to" in message


def test_small_model_on_a_single_nvme_shape_fits_its_ebs_volume(rendered):
    assert named(rendered("prod"), "gpu-l40s-small")["inputs"]["instanceTypes"] == ["g6e.xlarge"]


# ---------------------------------------------------------------------------------------------- item 9

def test_gpu_nodes_answer_imds_only_to_the_host_and_repair_themselves(rendered):
    records = rendered("prod")
    for pool in ("h200-base", "h200-spot", "h200-peak", "l40s-small"):
        lt = named(records, f"gpu-{pool}-lt")["inputs"]["metadataOptions"]
        assert lt == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        assert named(records, f"gpu-{pool}")["inputs"]["nodeRepairConfig"] == {"enabled": True}


def test_an_addon_pin_newer_than_eks_offers_fails_at_preview(tmp_path, monkeypatch):
    newest = {v: dict(a) for v, a in render_module.EKS_ADDON_NEWEST.items()}
    newest["1.33"]["coredns"] = "v1.12.1-eksbuild.2"
    monkeypatch.setattr(render_module, "EKS_ADDON_NEWEST", newest)
    message = render_error(stack_file(tmp_path, lambda c: None))
    assert message.startswith("cluster.kubernetesVersion: the pinned coredns v1.12.4-eksbuild.18 is not offered "
                              "for Kubernetes 1.33 (newest EKS offers: v1.12.1-eksbuild.2)")


def test_an_addon_eks_does_not_offer_for_the_version_fails_at_preview(tmp_path):
    """The real invoke fails for an add-on EKS does not list for the version; so does the mock. A failed
    invoke leaves the SDK's mock runtime unusable for later renders, so this one runs in its own process."""
    path = stack_file(tmp_path, lambda c: None)
    code = ("import sys\nfrom pathlib import Path\nfrom scripts import render as r\n"
            "del r.EKS_ADDON_NEWEST['1.33']['aws-ebs-csi-driver']\n"
            "try:\n    r.render(Path(sys.argv[1]))\nexcept Exception as err:\n    print(err)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "reading EKS Add-On version info (aws-ebs-csi-driver, 1.33): empty result" in result.stdout, result.stderr


# ---------------------------------------------------------------------------------------------- item 2

def refusal(tmp_path, edit) -> str:
    with pytest.raises(ConfigError) as err:
        load_stack_file(stack_file(tmp_path, edit))
    return str(err.value)


def test_private_endpoint_with_github_hosted_runners_is_refused(tmp_path):
    message = refusal(tmp_path, lambda c: c.pop("llm-fleet:ci"))
    assert message.startswith("llm-fleet.ci.runner: 'github-hosted' runners cannot reach this stack's private API")
    assert "ci.runner: codebuild" in message and "cluster.endpointPublic: true" in message


@pytest.mark.parametrize(("ci", "expect"), [
    ({"runner": "codebuild", "runsOn": ["x"]}, "ci.runsOn: the CodeBuild runner's label is derived"),
    ({"runner": "codebuild"}, "ci.connectionArn: the CodeBuild runner registers with GitHub"),
    ({"runner": "self-hosted"}, "ci.runsOn: a self-hosted runner needs its labels"),
    ({"runner": "self-hosted", "runsOn": ["self-hosted"]}, "ci.runner: a self-hosted runner cannot be inside a VPC"),
])
def test_ci_settings_that_cannot_deploy_the_first_time_are_refused(tmp_path, ci, expect):
    assert expect in refusal(tmp_path, lambda c: c.update({"llm-fleet:ci": ci}))


def test_codebuild_runner_in_the_vpc_may_reach_the_private_endpoint(rendered):
    records = rendered("prod")
    project = named(records, "ci-runner-project")["inputs"]
    assert project["name"] == "llm-fleet-prod-deploy"
    assert project["source"]["type"] == "GITHUB" and project["source"]["location"] == "https://github.com/acme/llm-fleet.git"
    assert project["source"]["auth"]["type"] == "CODECONNECTIONS"
    assert project["vpcConfig"]["subnets"] == [f"network-private-use1-az{i}-id" for i in (1, 2, 4)]
    assert project["vpcConfig"]["securityGroupIds"] == ["network-runner-id"]
    hook = named(records, "ci-runner-webhook")["inputs"]
    assert hook["filterGroups"] == [{"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}]
    rule = named(records, "cluster-endpoint-from-runner")["inputs"]
    assert rule["securityGroupId"] == "sg-llm-fleet-prod" and rule["referencedSecurityGroupId"] == "network-runner-id"
    assert (rule["fromPort"], rule["toPort"], rule["ipProtocol"]) == (443, 443, "tcp")
    assert not of_type(rendered("dev"), "aws:codebuild/project:Project")       # public endpoint: GitHub-hosted


def test_bootstrap_run_creates_only_the_vpc_and_the_runner(tmp_path):
    records = render(stack_file(tmp_path, lambda c: c.update({"llm-fleet:bootstrap": True})))
    tops = {r["parent"] or r["name"] for r in records}
    assert tops == {"network", "ci-runner"}
    assert of_type(records, "aws:codebuild/project:Project") and not of_type(records, "aws:eks/cluster:Cluster")


def test_bootstrap_of_a_stack_whose_cluster_runs_is_refused(tmp_path, monkeypatch):
    live(monkeypatch, "llm-fleet-t", {"system": (2, 4, 2)})
    message = render_error(stack_file(tmp_path, lambda c: c.update({"llm-fleet:bootstrap": True})))
    assert message.startswith("llm-fleet:bootstrap: cluster llm-fleet-t already exists, and a bootstrap run would "
                              "delete it")
