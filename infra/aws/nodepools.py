"""GPU node pools: one EKS managed node group per pool, its launch template, scale-from-zero tags on the
node group and its ASG, and the cluster add-ons that make GPU nodes usable and scalable (infra.addons).

Desired size belongs to cluster-autoscaler alone (nodes follow pods; docs/capacity.md), so Pulumi ignores
it after creation (`ignore_changes`; what Pulumi still sends for it is decided in infra.aws.scaling); min and
max are bounds: the stack file's, or an operator's override that `fleet scale` / `fleet reconcile` write. A
pool's schedule is not a node-group action: it is the KEDA cron triggers of the pool's engines (pods), and
the nodes follow them. No EventBridge schedule writes a node group's size, so nothing undoes the
autoscaler or cuts an override.

Node groups get generated names (`<cluster>-<pool>-<unique suffix>`) and carry their pool in the tag
`names.TAG_POOL`: a change EKS can only make by replacing the group (instance types, capacity, AMI type,
subnets, launch template id) creates the new group first without a name collision (pulumi/pulumi-eks#294).
"""

from __future__ import annotations

import base64

import pulumi
import pulumi_aws as aws

from infra.aws.cluster import Cluster, iam_name
from infra.aws.network import Network
from infra.aws.nodes import (
    CA_GPU_LABEL,
    CA_TEMPLATE,
    DEVICE_PLUGIN_LABEL,
    EFA_LABEL,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    is_bottlerocket,
)
from infra.aws.scaling import field, live_scaling, scaling_inputs
from infra.planning.catalog import InstanceShape, load_catalog
from infra.planning.nodecache import raid_nvme  # checked in build_plan
from infra.planning.plan import Plan
from infra.stack import names
from infra.stack.spec import PoolSpec, StackConfig
from infra.wiring import KubeTarget

CAPACITY_TYPES = {"on-demand": "ON_DEMAND", "spot": "SPOT", "capacity-block": "CAPACITY_BLOCK"}
# GPU pools update with MINIMAL: the DEFAULT strategy launches up to 2x the AZ count of new nodes at once
# (EKS user guide, managed-node-update-behavior), i.e. up to six extra p5en, and fails where capacity is
# short; MINIMAL brings up no more than maxUnavailable-sized batches.
GPU_UPDATE_STRATEGY = "MINIMAL"
# Every add-on on a GPU node has its own identity (IRSA / Pod Identity): containers need no instance role,
# so IMDSv2 answers only the host (hop limit 1), not a pod behind the bridge.
GPU_IMDS_HOP_LIMIT = 1


# ---------------------------------------------------------------------------------------------- pure



def large_models(plan: Plan, pool: str) -> str:
    """Models placed on the pool with >= 8 GPUs per replica, comma-separated (the policy pack's tag)."""
    return ",".join(sorted({d.model for d in plan.deployments_on(pool) if d.layout.gpus >= 8}))


def node_labels(pool: PoolSpec, shape: InstanceShape, multi_node: bool) -> dict[str, str]:
    labels = {names.LABEL_POOL: pool.name, names.LABEL_GPU: shape.gpu_model, names.LABEL_CAPACITY: pool.capacity,
              CA_GPU_LABEL: f"{shape.gpu_vendor}-{shape.gpu_model}"}
    if not is_bottlerocket(pool):
        labels[DEVICE_PLUGIN_LABEL] = "daemonset"
    if multi_node:
        labels[EFA_LABEL] = "true"
    return labels


def node_template_tags(pool: PoolSpec, shape: InstanceShape, labels: dict[str, str], multi_node: bool,
                       raid: bool) -> dict[str, str]:
    """What cluster-autoscaler needs to scale a pool up from zero nodes (kubernetes/autoscaler
    cloudprovider/aws README, "node-template" tags)."""
    tags = {f"{CA_TEMPLATE}/label/{k}": v for k, v in labels.items()}
    tags[f"{CA_TEMPLATE}/taint/{GPU_TAINT_KEY}"] = f"{GPU_TAINT_VALUE}:NoSchedule"
    tags[f"{CA_TEMPLATE}/resources/nvidia.com/gpu"] = str(shape.gpu_count)
    if multi_node:
        tags[f"{CA_TEMPLATE}/resources/vpc.amazonaws.com/efa"] = str(shape.efa_interfaces)
    if raid:
        tags[f"{CA_TEMPLATE}/resources/ephemeral-storage"] = f"{shape.nvme_gb}G"
    return tags


def user_data(pool: PoolSpec, raid: bool) -> str | None:
    """Base64 user data that assembles the instance-store NVMe as RAID0. AL2023: a nodeadm NodeConfig in
    a MIME part (EKS merges its own cluster part in); Bottlerocket: TOML bootstrap commands."""
    if not raid:
        return None
    if is_bottlerocket(pool):
        text = ('[settings.bootstrap-commands.llm-fleet-ephemeral-storage]\n'
                'commands = [["apiclient", "ephemeral-storage", "init"], ["apiclient", "ephemeral-storage", "bind", '
                '"--dirs", "/var/lib/containerd", "/var/lib/kubelet", "/var/log/pods"]]\n'
                'essential = true\nmode = "always"\n')
    else:
        text = ('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="//"\n\n'
                '--//\nContent-Type: application/node.eks.aws\n\n'
                '---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n'
                '  instance:\n    localStorage:\n      strategy: RAID0\n\n--//--\n')
    return base64.b64encode(text.encode()).decode()


def efa_interfaces(count: int, security_groups: list) -> list[aws.ec2.LaunchTemplateNetworkInterfaceArgs]:
    """One interface per network card: card 0 is EFA (with IP), the others EFA-only (no IP used)."""
    return [aws.ec2.LaunchTemplateNetworkInterfaceArgs(
        device_index=0 if i == 0 else 1, network_card_index=i, interface_type="efa" if i == 0 else "efa-only",
        associate_public_ip_address="false", delete_on_termination="true", security_groups=security_groups,
        description=f"EFA card {i}") for i in range(count)]


# ---------------------------------------------------------------------------------------------- component

class GpuNodePools(pulumi.ComponentResource):
    node_groups: dict[str, aws.eks.NodeGroup]

    def __init__(self, name: str, cfg: StackConfig, plan: Plan, cluster: Cluster, network: Network,
                 kube: KubeTarget, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:nodepools:GpuNodePools", name, None, opts)
        from infra.aws.addons import ClusterAddons
        from infra.aws.network import multi_node_pools

        self._cfg, self._name = cfg, name
        catalog = load_catalog()
        cluster_name = names.cluster_name(cfg)
        tags = names.tags(cfg, "nodepools")
        multi = set(multi_node_pools(cfg, plan))
        role, policies = cluster.node_role_for(f"{name}-node", iam_name(cluster_name, "node-gpu"), tags, parent=self)
        live = live_scaling(cluster_name)
        self.node_groups = {}
        self.launch_templates: dict[str, aws.ec2.LaunchTemplate] = {}
        for pool in cfg.pools:
            shape = catalog.instance(pool.instance_type)
            labels = node_labels(pool, shape, pool.name in multi)
            raid = raid_nvme(pool, catalog)
            template_tags = node_template_tags(pool, shape, labels, pool.name in multi, raid)
            lt = self._launch_template(pool, shape, cluster, network, pool.name in multi, raid, tags)
            group_tags = {**tags, **template_tags, names.TAG_POOL: pool.name,
                          "llm-fleet/gpus-per-node": str(shape.gpu_count),
                          "llm-fleet/large-models": large_models(plan, pool.name)}
            sizing = scaling_inputs(pool.min_size, pool.max_size, pool.desired_size, live.get(pool.name))
            ng = aws.eks.NodeGroup(
                f"{name}-{pool.name}", cluster_name=cluster.name,
                node_group_name_prefix=names.nodegroup_prefix(cfg, pool),
                node_role_arn=role.arn, subnet_ids=network.subnet_ids_for(pool), ami_type=pool.ami_type,
                capacity_type=CAPACITY_TYPES[pool.capacity], instance_types=list(pool.instance_types),
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=pool.min_size, max_size=pool.max_size,
                                                                  desired_size=sizing.desired_size),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1,
                                                                update_strategy=GPU_UPDATE_STRATEGY),
                # EKS replaces nodes whose GPUs, kubelet or network report unhealthy (node monitoring agent)
                node_repair_config=aws.eks.NodeGroupNodeRepairConfigArgs(enabled=True),
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=lt.id, version=lt.latest_version.apply(str)),
                labels=labels,
                taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE")],
                tags=group_tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*policies, *cluster.network_ready],
                                            ignore_changes=sizing.ignore_changes))
            # Managed node groups do not copy their tags to the ASG, where cluster-autoscaler reads them.
            asg = ng.resources.apply(
                lambda r: field(field(r[0], "autoscaling_groups", "autoscalingGroups")[0], "name"))
            for key, value in template_tags.items():
                aws.autoscaling.Tag(f"{name}-{pool.name}-asg-{names.dns_label(key.removeprefix(CA_TEMPLATE))}",
                                    autoscaling_group_name=asg,
                                    tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                                    opts=pulumi.ResourceOptions(parent=self))
            self.node_groups[pool.name] = ng
            self.launch_templates[pool.name] = lt
        self.addons = ClusterAddons(f"{name}-addons", cfg, plan, cluster, network, kube, self.node_groups,
                                    opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"node_groups": {p: ng.node_group_name for p, ng in self.node_groups.items()}})

    def _launch_template(self, pool: PoolSpec, shape: InstanceShape, cluster: Cluster, network: Network,
                         multi_node: bool, raid: bool, tags: dict[str, str]) -> aws.ec2.LaunchTemplate:
        node_name = names.nodegroup_name(self._cfg, pool)
        # Bottlerocket keeps the OS on xvda and images / pods on the data volume xvdb.
        disk = "/dev/xvdb" if is_bottlerocket(pool) else "/dev/xvda"
        extra: dict = {}
        if multi_node:
            extra["network_interfaces"] = efa_interfaces(
                shape.efa_interfaces, [cluster.node_security_group_id, network.efa_security_group_id])
            extra["placement"] = aws.ec2.LaunchTemplatePlacementArgs(group_name=network.placement_group(pool.name))
        if pool.capacity == "capacity-block":
            extra["instance_market_options"] = aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(
                market_type="capacity-block")
            extra["capacity_reservation_specification"] = aws.ec2.LaunchTemplateCapacityReservationSpecificationArgs(
                capacity_reservation_target=aws.ec2.LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
                    capacity_reservation_id=pool.capacity_reservation_id))
        return aws.ec2.LaunchTemplate(
            f"{self._name}-{pool.name}-lt", name=node_name, update_default_version=True,
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=GPU_IMDS_HOP_LIMIT),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=disk, ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=pool.disk_gb, volume_type="gp3", iops=6000, throughput=500, encrypted="true",
                    delete_on_termination="true"))],
            user_data=user_data(pool, raid),
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=kind, tags={**tags, "Name": node_name, names.LABEL_POOL: pool.name})
                for kind in ("instance", "volume")],
            tags={**tags, names.LABEL_POOL: pool.name},
            opts=pulumi.ResourceOptions(parent=self), **extra)
