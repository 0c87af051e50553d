"""Existing clusters: the provider, the pool schema for nodes without an EC2 type, the on-prem Ascend
and NVIDIA example stacks rendered end to end."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from infra.planning.plan import build_plan
from infra.serving.existing import kubeconfig_input
from infra.stack.config import load_stack_file, parse_config
from infra.stack.reader import ConfigError
from infra.stack.spec import ExistingCluster
from scripts.render import MASK, render

STACKS = Path(__file__).resolve().parents[2] / "stacks"


@functools.cache
def rendered(stack: str) -> tuple:
    return tuple(render(STACKS / f"Pulumi.{stack}.yaml"))


def of_type(records, typ):
    return [r for r in records if r["type"] == typ]


def test_provider_reads_the_kubeconfig_path_at_deploy_time_with_server_side_apply():
    (provider,) = of_type(rendered("onprem-ascend"), "pulumi:providers:kubernetes")
    assert provider["name"] == "existing-cluster"
    assert provider["inputs"]["kubeconfig"] == "/home/deploy/.kube/onprem-ascend.yaml"   # a path, not contents
    assert provider["inputs"]["context"] == "onprem-ascend"
    assert provider["inputs"]["enableServerSideApply"] in (True, "true")
    namespaced = [r for r in rendered("onprem-ascend") if r["type"].startswith("kubernetes:")]
    assert namespaced and not of_type(rendered("onprem-ascend"), "aws:eks/cluster:Cluster")


def test_kubeconfig_path_is_passed_as_written():
    assert kubeconfig_input(ExistingCluster("~/.kube/config", None)) == "~/.kube/config"


def test_kubeconfig_from_a_pulumi_secret(stack_values):
    values = stack_values("prod")
    values["llm-fleet:cluster"] = {"existing": {"kubeconfig": {"pulumiSecret": "kubeconfig"}}}
    values.pop("llm-fleet:ci")          # prod's CodeBuild runner lives in a VPC an existing cluster does not have
    values["llm-fleet:kubeconfig"] = "unused"
    cfg = parse_config(values, "x", secret_keys={"llm-fleet:kubeconfig"})
    assert cfg.cluster.existing.kubeconfig.pulumi_key == "kubeconfig"


def test_ascend_stack_plans_glm51_on_its_declared_on_prem_shape():
    cfg = load_stack_file(STACKS / "Pulumi.onprem-ascend.yaml")
    pool = cfg.pool("ascend-a2")
    assert pool.selector == {"accelerator": "huawei-Ascend910"} and pool.instance_type == "atlas-800-a2.8x"
    plan = build_plan(cfg, fetch=lambda *_: pytest.fail("the catalog has GLM-5.1: nothing may be fetched"))
    dep = plan.deployments[0]
    assert dep.engine_image == "quay.io/ascend/vllm-ascend:v0.23.0" and dep.layout.nodes == 1
    assert (dep.precision, dep.source) == ("w4a8", "Eco-Tech/GLM-5.1-w4a8") and dep.layout.tp == 8


def test_ascend_stack_renders_npu_engines_without_aws():
    records = rendered("onprem-ascend")
    assert not [r for r in records if r["type"].startswith("aws:")]
    (engine,) = [r for r in of_type(records, "kubernetes:apps/v1:Deployment") if r["name"] != "serving-gateway"]
    pod = engine["inputs"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "huawei.com/Ascend910" in c["resources"]["limits"]
    assert {e["name"] for e in c["env"]} >= {"ASCEND_RT_VISIBLE_DEVICES", "HCCL_CONNECT_TIMEOUT", "HF_HOME",
                                             "VLLM_USE_MODELSCOPE"}
    assert pod["nodeSelector"] == {"accelerator": "huawei-Ascend910"}
    svc = next(r for r in of_type(records, "kubernetes:core/v1:Service") if r["name"] == "serving-gateway-svc")
    assert svc["inputs"]["spec"]["type"] == "ClusterIP"
    # no master key in the stack: one is generated in the cluster, never written by us
    assert of_type(records, "kubernetes:generators.external-secrets.io/v1alpha1:Password")


def test_existing_nvidia_stack_uses_the_existing_prometheus():
    records = rendered("existing-cluster")
    releases = {r["inputs"]["name"] for r in of_type(records, "kubernetes:helm.sh/v3:Release")}
    assert "kube-prometheus-stack" not in releases and "keda" in releases
    scalers = of_type(records, "kubernetes:keda.sh/v1alpha1:ScaledObject")
    servers = {t["metadata"]["serverAddress"] for s in scalers for t in s["inputs"]["spec"]["triggers"]
               if t["type"] == "prometheus"}
    assert servers == {"http://prometheus-operated.monitoring.svc:9090"}
    assert MASK not in str([r["inputs"] for r in of_type(records, "kubernetes:apps/v1:Deployment")])


@pytest.mark.parametrize("selector, message", [
    ({}, "give at least one label"),
    ({"bad key!": "x"}, "is not a Kubernetes label key"),
    ({"accelerator": "not valid!"}, "not valid"),
])
def test_node_selector_is_validated(stack_values, selector, message):
    values = stack_values("prod")
    values["llm-fleet:pools"][0]["nodeSelector"] = selector
    with pytest.raises(ConfigError, match=message):
        parse_config(values, "prod")
