"""In-cluster add-ons the GPU pools need, as pinned Helm releases through the explicit provider:
cluster-autoscaler (priority expander: spot first, on-demand last), the NVIDIA device plugin, the AWS
Load Balancer Controller (the gateway Service uses its NLB annotations) and, when a pool spans nodes per
replica, the EFA device plugin. The DCGM exporter is installed by the serving side (infra.serving.controllers,
next to its ServiceMonitor): a second exporter per GPU node would fight over DCGM's profiling counters.

Every chart version and image tag below is pinned; the comment next to each names where it was read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from infra.aws.cluster import Cluster, iam_name
from infra.aws.network import Network, multi_node_pools
from infra.aws.nodes import DEVICE_PLUGIN_LABEL, EFA_LABEL, GPU_TAINT_KEY, is_bottlerocket
from infra.planning.plan import Plan
from infra.planning.windows_plan import SCALE_DOWN_UNNEEDED_SECONDS
from infra.stack import names
from infra.stack.spec import StackConfig
from infra.wiring import KubeTarget

# kubernetes/autoscaler: tag cluster-autoscaler-chart-9.59.0 (2026-07-21), charts/cluster-autoscaler/Chart.yaml.
CA_REPO, CA_CHART, CA_VERSION = "https://kubernetes.github.io/autoscaler", "cluster-autoscaler", "9.59.0"
# The autoscaler's image tag per Kubernetes minor: infra.stack.versions.CA_IMAGE_TAGS (checked in plan).
# NVIDIA/k8s-device-plugin: tag v0.20.0 (2026-08-19), deployments/helm/nvidia-device-plugin/Chart.yaml.
DP_REPO, DP_CHART, DP_VERSION, DP_IMAGE_TAG = ("https://nvidia.github.io/k8s-device-plugin", "nvidia-device-plugin",
                                               "0.20.0", "v0.20.0")
# aws/eks-charts: stable/aws-load-balancer-controller/Chart.yaml 3.5.0 (appVersion v3.5.0, 2026-08-03);
# its IAM policy is kubernetes-sigs/aws-load-balancer-controller v3.5.0 docs/install/iam_policy.json.
LBC_REPO, LBC_CHART, LBC_VERSION, LBC_IMAGE_TAG = ("https://aws.github.io/eks-charts", "aws-load-balancer-controller",
                                                   "3.5.0", "v3.5.0")
LBC_POLICY_FILE = "aws-lb-controller-iam-policy.json"
# aws/eks-charts: stable/aws-efa-k8s-device-plugin/Chart.yaml v0.5.30 (appVersion v0.5.20, 2026-07-21).
EFA_REPO, EFA_CHART, EFA_VERSION, EFA_IMAGE_TAG = ("https://aws.github.io/eks-charts", "aws-efa-k8s-device-plugin",
                                                   "v0.5.30", "v0.5.20")

SYSTEM_NAMESPACE = "kube-system"
PRIORITY_CONFIGMAP = "cluster-autoscaler-priority-expander"   # the name cluster-autoscaler watches
# Spot first (cheapest when there), then a Capacity Block (already paid for), on-demand as the fallback.
PRIORITIES = {"spot": 50, "capacity-block": 40, "on-demand": 10}
# p5en: EC2 launch, driver init, RAID0 of 8 NVMe disks and a ~10 GB engine image pull take 10-20 min;
# the 15 min default would give up on nodes that are about to join.
MAX_NODE_PROVISION_TIME = "25m0s"
GPU_TOLERATION = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


def asg_pattern(nodegroup_name: str) -> str:
    """Managed node group ASGs are named eks-<node group name>-<uuid>."""
    return f"^eks-{nodegroup_name.replace('.', '[.]')}-[0-9a-f-]+$"


def priorities(cfg: StackConfig, group_names: Mapping[str, str]) -> str:
    """The priority expander's `priorities` document: higher number wins; a catch-all keeps the system
    node group (and anything added by hand) eligible at the lowest priority. `group_names` maps each
    pool to its node group's (generated) name."""
    table: dict[int, list[str]] = {}
    for pool in cfg.pools:
        table.setdefault(PRIORITIES[pool.capacity], []).append(asg_pattern(group_names[pool.name]))
    table[1] = [".*"]
    return yaml.safe_dump({k: table[k] for k in sorted(table, reverse=True)}, sort_keys=False)


def autoscaler_policy(cluster_name: str) -> dict:
    """kubernetes/autoscaler cloudprovider/aws README "Full Cluster Autoscaler Features Policy", with the
    write actions limited to this cluster's ASGs (EKS tags them k8s.io/cluster-autoscaler/<cluster>=owned)."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
            "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
            "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup"]},
        {"Effect": "Allow", "Resource": "*",
         "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
         "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
    ]}


def lb_controller_policy() -> str:
    return resources.files("infra.aws.data").joinpath(LBC_POLICY_FILE).read_text(encoding="utf-8")


def _node_affinity(key: str, operator: str, values: list[str] | None = None) -> dict:
    expression = {"key": key, "operator": operator, **({"values": values} if values else {})}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expression]}]}}}


class ClusterAddons(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, plan: Plan, cluster: Cluster, network: Network,
                 kube: KubeTarget, node_groups: dict[str, aws.eks.NodeGroup],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:addons:ClusterAddons", name, None, opts)
        self._name, self._kube, self._cluster = name, kube, cluster
        cluster_name = names.cluster_name(cfg)
        tags = names.tags(cfg, "addons")
        ready = [*cluster.ready, *node_groups.values()]

        # -- AWS Load Balancer Controller, first: its webhook intercepts every Service create and refuses
        # them until its own pods are ready, so a chart with a Service (cluster-autoscaler's metrics
        # Service) installed in parallel fails at random on the first `pulumi up`. The Release waits
        # for the controller's pods; the other charts depend on it.
        lbc_policy = aws.iam.Policy(f"{name}-aws-lb-controller-policy",
                                    name=iam_name(cluster_name, "aws-lb-controller"),
                                    description=f"AWS Load Balancer Controller {LBC_IMAGE_TAG} for {cluster_name}",
                                    policy=lb_controller_policy(), tags=tags, opts=pulumi.ResourceOptions(parent=self))
        lbc_role = cluster.irsa_role(f"{name}-aws-lb-controller-role", iam_name(cluster_name, "aws-lb-controller"),
                                     SYSTEM_NAMESPACE, "aws-load-balancer-controller", [], tags, parent=self)
        lbc_attach = aws.iam.RolePolicyAttachment(f"{name}-aws-lb-controller", role=lbc_role.name,
                                                  policy_arn=lbc_policy.arn, opts=pulumi.ResourceOptions(parent=self))
        self.lb_controller = self._release(
            "aws-load-balancer-controller", LBC_REPO, LBC_CHART, LBC_VERSION, SYSTEM_NAMESPACE,
            [*cluster.ready, lbc_attach], {
                "clusterName": cluster_name, "region": cfg.region, "vpcId": network.vpc_id,
                "image": {"tag": LBC_IMAGE_TAG}, "replicaCount": 2,
                "serviceAccount": {"name": "aws-load-balancer-controller",
                                   "annotations": {"eks.amazonaws.com/role-arn": lbc_role.arn}},
                "nodeSelector": {names.LABEL_ROLE: "system"},
            })

        # -- cluster-autoscaler
        ca_role = cluster.irsa_role(f"{name}-cluster-autoscaler-role", iam_name(cluster_name, "cluster-autoscaler"),
                                    SYSTEM_NAMESPACE, "cluster-autoscaler", [], tags, parent=self)
        aws.iam.RolePolicy(f"{name}-cluster-autoscaler-policy", role=ca_role.name,
                           policy=json.dumps(autoscaler_policy(cluster_name)), opts=pulumi.ResourceOptions(parent=self))
        self.priority_config = k8s.core.v1.ConfigMap(
            f"{name}-ca-priorities",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=PRIORITY_CONFIGMAP, namespace=SYSTEM_NAMESPACE),
            data={"priorities": pulumi.Output.all(**{p: ng.node_group_name for p, ng in node_groups.items()})
                  .apply(lambda group_names: priorities(cfg, group_names))},
            opts=kube.opts(self, *cluster.ready))
        self.cluster_autoscaler = self._release(
            "cluster-autoscaler", CA_REPO, CA_CHART, CA_VERSION, SYSTEM_NAMESPACE,
            [*ready, self.priority_config, self.lb_controller], {
                "cloudProvider": "aws", "awsRegion": cfg.region, "fullnameOverride": "cluster-autoscaler",
                "autoDiscovery": {"clusterName": cluster_name},
                "image": {"tag": cfg.cluster.autoscaler_image_tag},
                "rbac": {"serviceAccount": {"name": "cluster-autoscaler",
                                            "annotations": {"eks.amazonaws.com/role-arn": ca_role.arn}}},
                "extraArgs": {
                    "expander": "priority",
                    "max-node-provision-time": MAX_NODE_PROVISION_TIME,
                    # explicit (the default) because the planner's gap merging and `fleet simulate` use it
                    "scale-down-unneeded-time": f"{SCALE_DOWN_UNNEEDED_SECONDS // 60}m0s",
                    # engines keep their model cache in emptyDir: without this no GPU node is ever removed
                    "skip-nodes-with-local-storage": "false",
                },
                "nodeSelector": {names.LABEL_ROLE: "system"},
            })

        # -- NVIDIA device plugin (Bottlerocket's NVIDIA variants run their own)
        self.device_plugin = None
        if any(not is_bottlerocket(p) for p in cfg.pools):
            self.device_plugin = self._release(
                "nvidia-device-plugin", DP_REPO, DP_CHART, DP_VERSION, SYSTEM_NAMESPACE,
                [*cluster.ready, self.lb_controller], {
                    "image": {"tag": DP_IMAGE_TAG},
                    # the chart's default affinity wants node-feature-discovery labels we do not run
                    "affinity": _node_affinity(DEVICE_PLUGIN_LABEL, "In", ["daemonset"]),
                    "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
                })

        # -- EFA device plugin, for pods that ask for vpc.amazonaws.com/efa on multi-node pools
        self.efa_plugin = None
        if multi_node_pools(cfg, plan):
            self.efa_plugin = self._release(
                "aws-efa-k8s-device-plugin", EFA_REPO, EFA_CHART, EFA_VERSION, SYSTEM_NAMESPACE,
                [*cluster.ready, self.lb_controller], {
                    "image": {"tag": EFA_IMAGE_TAG},
                    "nodeSelector": {EFA_LABEL: "true"},
                    "tolerations": [GPU_TOLERATION],
                })
        self.register_outputs({})

    def _release(self, release: str, repo: str, chart: str, version: str, namespace: pulumi.Input[str],
                 depends: list[pulumi.Resource], values: dict) -> k8s.helm.v3.Release:
        return k8s.helm.v3.Release(
            f"{self._name}-{release}", name=release, chart=chart, version=version, namespace=namespace,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repo), values=values,
            opts=self._kube.opts(self, *depends))
