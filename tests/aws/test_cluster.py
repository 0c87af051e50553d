"""Cluster component: EKS control plane, access entries, encryption, OIDC, add-ons, system nodes, provider."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.aws.cluster import kubeconfig_for
from infra.stack.versions import ADDON_VERSIONS
from scripts.render import render
from tests.aws.test_network import render_error, stack_file
from tests.conftest import named, of_type

CLUSTER = "aws:eks/cluster:Cluster"
ADDON = "aws:eks/addon:Addon"


def eks(records) -> dict:
    (cluster,) = of_type(records, CLUSTER)
    return cluster["inputs"]


def test_prod_cluster_is_private_api_mode_encrypted_and_logged(rendered):
    records = rendered("prod")
    cluster = eks(records)
    assert cluster["name"] == "llm-fleet-prod" and cluster["version"] == "1.33"
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True}
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in cluster["vpcConfig"]
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    (key,) = [k["inputs"] for k in of_type(records, "aws:kms/key:Key") if k["name"] == "cluster-secrets-key"]
    assert key["enableKeyRotation"] is True
    assert cluster["encryptionConfig"]["provider"]["keyArn"].endswith("/cluster-secrets-key-key-id")
    logs = named(records, "cluster-logs")["inputs"]
    assert logs["name"] == "/aws/eks/llm-fleet-prod/cluster" and logs["retentionInDays"] == 90


def test_dev_endpoint_is_public_only_to_its_cidrs(rendered):
    vpc = eks(rendered("dev"))["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True and vpc["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_cluster_role_may_use_the_secrets_key_and_nothing_more(rendered):
    records = rendered("prod")
    policy = json.loads(named(records, "cluster-role-secrets-key")["inputs"]["policy"])
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
    assert statement["Resource"].endswith("/cluster-secrets-key-key-id")


def test_oidc_provider_for_irsa(rendered):
    oidc = named(rendered("prod"), "cluster-oidc")["inputs"]
    assert oidc["url"] == "https://oidc.eks.us-east-1.amazonaws.com/id/MOCKllm-fleet-prod"
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]


def test_core_addons_are_pinned_and_take_over_self_managed_ones(rendered):
    addons = {a["inputs"]["addonName"]: a["inputs"] for a in of_type(rendered("prod"), ADDON)}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    for addon, inputs in addons.items():
        assert inputs["addonVersion"] == ADDON_VERSIONS["1.33"][addon]
        assert inputs["resolveConflictsOnCreate"] == "OVERWRITE"
    assert addons["vpc-cni"]["serviceAccountRoleArn"].endswith("role/llm-fleet-prod-vpc-cni")
    assert addons["aws-ebs-csi-driver"]["serviceAccountRoleArn"].endswith("role/llm-fleet-prod-ebs-csi")


def test_irsa_roles_trust_exactly_their_service_account(rendered):
    records = rendered("prod")
    trust = json.loads(named(records, "cluster-vpc-cni-role")["inputs"]["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert condition == {"oidc.eks.us-east-1.amazonaws.com/id/MOCKllm-fleet-prod:sub":
                         "system:serviceaccount:kube-system:aws-node",
                         "oidc.eks.us-east-1.amazonaws.com/id/MOCKllm-fleet-prod:aud": "sts.amazonaws.com"}


def test_system_node_group_is_small_on_demand_and_labelled(rendered):
    records = rendered("prod")
    system = named(records, "cluster-system")["inputs"]
    assert "nodeGroupName" not in system and system["nodeGroupNamePrefix"] == "llm-fleet-prod-system-"
    assert system["tags"]["llm-fleet/pool"] == "system"
    assert system["nodeRepairConfig"] == {"enabled": True}
    assert system["capacityType"] == "ON_DEMAND" and system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["instanceTypes"] == ["m7i.xlarge"]
    assert system["scalingConfig"] == {"minSize": 2, "maxSize": 4, "desiredSize": 2}
    assert system["labels"] == {"llm-fleet/role": "system"}
    assert "taints" not in system
    lt = named(records, "cluster-system-lt")["inputs"]
    assert lt["metadataOptions"]["httpTokens"] == "required"


def test_node_role_has_only_the_managed_policies_a_node_needs(rendered):
    records = rendered("prod")
    attachments = of_type(records, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    attached = sorted(a["inputs"]["policyArn"] for a in attachments
                      if a["inputs"]["role"] in ("llm-fleet-prod-node-system", "llm-fleet-prod-node-gpu"))
    assert attached == sorted(2 * ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
                                   "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"])


def test_kubeconfig_provider_is_explicit_secret_and_server_side_apply(rendered):
    (provider,) = of_type(rendered("prod"), "pulumi:providers:kubernetes")
    assert provider["name"] == "cluster-k8s"
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    assert provider["inputs"]["enableServerSideApply"] == "true"


def test_kubeconfig_gets_a_token_from_aws_eks_get_token():
    config = json.loads(kubeconfig_for("c", "https://x.eks.amazonaws.com", "Q0E=", "us-east-1"))
    user = config["users"][0]["user"]["exec"]
    assert user["command"] == "aws" and user["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert user["args"] == ["eks", "get-token", "--cluster-name", "c", "--region", "us-east-1", "--output", "json"]
    assert "token" not in json.dumps(config["users"][0]["user"]).replace("get-token", "")


def test_admin_roles_get_access_entries_with_the_cluster_admin_policy(tmp_path):
    arn = "arn:aws:iam::123456789012:role/platform-admins"
    records = render(stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(adminRoleArns=[arn])))
    (entry,) = [r["inputs"] for r in of_type(records, "aws:eks/accessEntry:AccessEntry")]
    assert entry["principalArn"] == arn and entry["type"] == "STANDARD" and entry["clusterName"] == "llm-fleet-t"
    (association,) = [r["inputs"] for r in of_type(records, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")]
    assert association["principalArn"] == arn
    assert association["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert association["accessScope"] == {"type": "cluster"}


def test_unpinned_kubernetes_version_is_refused(tmp_path):
    message = render_error(stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(kubernetesVersion="1.29")))
    assert "cluster.kubernetesVersion: '1.29' has no pinned add-on versions" in message and "1.33" in message


def test_pool_named_system_is_refused(tmp_path):
    def edit(c):
        c["llm-fleet:pools"][3]["name"] = "system"
        c["llm-fleet:models"][1]["pool"] = "system"
    with pytest.raises(pulumi.RunError, match="'system' is taken by the system node group"):
        render(stack_file(tmp_path, edit))
