"""The EKS control plane, its identity plumbing and the small on-demand system node group.

API authentication mode (access entries, no aws-auth ConfigMap), secrets encrypted with a KMS key of
our own, an IAM OIDC provider for IRSA, the core add-ons pinned per Kubernetes minor version, and one
explicit Kubernetes provider built from a kubeconfig that calls `aws eks get-token`.
"""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws.network import Network
from infra.aws.scaling import field, live_scaling, scaling_inputs
from infra.stack import names
from infra.stack.spec import StackConfig

LOG_RETENTION_DAYS = 90


def _version_key(version: str) -> tuple[int, ...]:
    """v1.20.1-eksbuild.3 -> (1, 20, 1, 3): EKS add-on versions compare numerically, build last."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def check_addon_versions(kubernetes_version: str, versions: dict[str, str]) -> None:
    """Each pinned add-on against EKS's own list for the cluster's Kubernetes version, while the program
    is built (so at preview, before anything is created): `aws.eks.get_addon_version(most_recent=True)`
    fails when EKS offers no such add-on for that version and returns the newest version it does; a pin
    newer than that (another minor's kube-proxy, a build that does not exist yet) is refused."""
    for addon, pinned in versions.items():
        # An add-on EKS does not offer for the version fails this invoke itself ("reading EKS Add-On
        # version info (<addon>, <version>): empty result"), which stops the preview.
        newest = aws.eks.get_addon_version(addon_name=addon, kubernetes_version=kubernetes_version,
                                           most_recent=True).version
        if _version_key(pinned) > _version_key(newest):
            raise pulumi.RunError(
                f"cluster.kubernetesVersion: the pinned {addon} {pinned} is not offered for Kubernetes "
                f"{kubernetes_version} (newest EKS offers: {newest}); pin one EKS offers with "
                f"llm-fleet.cluster.addonVersions.{addon} (`aws eks describe-addon-versions --addon-name {addon} "
                f"--kubernetes-version {kubernetes_version}`)")


def assume_role_policy(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": ["sts:AssumeRole", "sts:TagSession"]
         if service == "eks.amazonaws.com" else "sts:AssumeRole"}]})


def irsa_trust_policy(oidc_provider_arn: pulumi.Input[str], oidc_issuer: pulumi.Input[str], namespace: str,
                      service_account: str) -> pulumi.Output[str]:
    """Trust exactly one Kubernetes service account of this cluster (IRSA)."""
    return pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(lambda a: json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": a[0]}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{a[1]}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                           f"{a[1]}:aud": "sts.amazonaws.com"}}}]}))


def iam_name(*parts: str) -> str:
    """IAM role / policy names stop at 64 characters."""
    return "-".join(parts)[:64].rstrip("-")


def kubeconfig_for(name: str, endpoint: str, ca: str, region: str) -> str:
    """A kubeconfig whose credentials come from `aws eks get-token` at each call (nothing stored)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region, "--output", "json"],
            "interactiveMode": "Never"}}}],
    }, indent=2)


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, network: Network, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec, cluster_name = cfg.cluster, names.cluster_name(cfg)
        tags = names.tags(cfg, "cluster")
        versions = dict(spec.addon_versions)  # pinned per version by infra.stack.versions (checked in plan)
        check_addon_versions(spec.kubernetes_version, versions)
        partition = aws.get_partition().partition
        self.partition = partition

        role = aws.iam.Role(f"{name}-role", name=iam_name(cluster_name, "cluster"),
                            assume_role_policy=assume_role_policy("eks.amazonaws.com"), tags=tags, opts=child)
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-role-cluster-policy", role=role.name,
            policy_arn=f"arn:{partition}:iam::aws:policy/AmazonEKSClusterPolicy", opts=child)
        key = aws.kms.Key(f"{name}-secrets-key", description=f"EKS secrets envelope encryption for {cluster_name}",
                          enable_key_rotation=True, deletion_window_in_days=30, tags=tags, opts=child)
        aws.kms.Alias(f"{name}-secrets-key", name=f"alias/{cluster_name}-eks-secrets", target_key_id=key.key_id,
                      opts=child)
        key_policy = aws.iam.RolePolicy(
            f"{name}-role-secrets-key", role=role.name,
            policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                "Resource": key.arn}]}),
            opts=child)
        # Created first so EKS does not make it with retention "never expire".
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/eks/{cluster_name}/cluster",
                                       retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child)

        eks = aws.eks.Cluster(
            f"{name}-eks", name=cluster_name, role_arn=role.arn, version=spec.kubernetes_version,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=network.cluster_subnet_ids, endpoint_private_access=spec.endpoint_private,
                endpoint_public_access=spec.endpoint_public,
                public_access_cidrs=list(spec.public_access_cidrs) if spec.endpoint_public else None),
            access_config=aws.eks.ClusterAccessConfigArgs(authentication_mode="API",
                                                          bootstrap_cluster_creator_admin_permissions=True),
            enabled_cluster_log_types=list(spec.logging),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn), resources=["secrets"]),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_policy, key_policy, logs]))
        self.name = eks.name
        self.arn = eks.arn
        self.version = eks.version
        self.endpoint = eks.endpoint
        self.node_security_group_id = eks.vpc_config.cluster_security_group_id
        if network.runner_security_group_id is not None:
            # the private endpoint's ENIs carry the cluster security group: let the CI runner reach them
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-endpoint-from-runner", security_group_id=self.node_security_group_id, ip_protocol="tcp",
                from_port=443, to_port=443, referenced_security_group_id=network.runner_security_group_id,
                description="Kubernetes API from the CI deploy runner", opts=child)
        issuer = eks.identities.apply(lambda ids: field(field(ids[0], "oidcs")[0], "issuer"))
        self.oidc_issuer = issuer.apply(lambda url: url.removeprefix("https://"))
        oidc = aws.iam.OpenIdConnectProvider(f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"],
                                             tags=tags, opts=child)
        self.oidc_provider_arn = oidc.arn

        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(eks.name, eks.endpoint, eks.certificate_authority)
            .apply(lambda a: kubeconfig_for(a[0], a[1], field(a[2], "data"), cfg.region)))
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, enable_server_side_apply=True,
                                     opts=child)

        for arn in spec.admin_role_arns:
            label = names.dns_label(arn.rsplit("/", 1)[-1])
            entry = aws.eks.AccessEntry(f"{name}-admin-{label}", cluster_name=eks.name, principal_arn=arn,
                                        type="STANDARD", tags=tags, opts=child)
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{label}", cluster_name=eks.name, principal_arn=arn,
                policy_arn=f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]))

        # DaemonSet add-ons first: nodes only turn Ready once the CNI runs on them.
        cni_role = self.irsa_role(f"{name}-vpc-cni-role", iam_name(cluster_name, "vpc-cni"), "kube-system", "aws-node",
                                  [f"arn:{partition}:iam::aws:policy/AmazonEKS_CNI_Policy"], tags)
        before_nodes = [
            # enforce NetworkPolicy (only the gateway and Prometheus reach engines: infra/serving/isolation.py)
            self._addon(name, eks, "vpc-cni", versions, tags, service_account_role_arn=cni_role.arn,
                        configuration_values='{"enableNetworkPolicy": "true"}'),
            self._addon(name, eks, "kube-proxy", versions, tags),
            self._addon(name, eks, "eks-pod-identity-agent", versions, tags),
        ]
        self.node_role, node_policies = self.node_role_for(f"{name}-node", iam_name(cluster_name, "node-system"), tags)
        self.system_nodes = self._system_nodes(name, cfg, network, eks, tags, [*before_nodes, *node_policies])
        ebs_role = self.irsa_role(f"{name}-ebs-csi-role", iam_name(cluster_name, "ebs-csi"), "kube-system",
                                  "ebs-csi-controller-sa",
                                  [f"arn:{partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"], tags)
        # Deployments: they stay DEGRADED (and the create times out) without a node to run on.
        after_nodes = [
            self._addon(name, eks, "coredns", versions, tags, depends=[self.system_nodes]),
            self._addon(name, eks, "aws-ebs-csi-driver", versions, tags, service_account_role_arn=ebs_role.arn,
                        depends=[self.system_nodes]),
        ]
        self.network_ready: list[pulumi.Resource] = before_nodes
        self.ready: list[pulumi.Resource] = [self.system_nodes, *after_nodes]
        self.register_outputs({"name": self.name, "oidc_provider_arn": self.oidc_provider_arn,
                               "oidc_issuer": self.oidc_issuer, "kubeconfig": self.kubeconfig})

    # -- helpers the other components use
    def irsa_role(self, resource_name: str, role_name: str, namespace: str, service_account: str,
                  managed_policy_arns: list[str], tags: dict[str, str],
                  parent: pulumi.Resource | None = None) -> aws.iam.Role:
        """A role only `namespace/service_account` of this cluster can assume, with AWS managed policies."""
        opts = pulumi.ResourceOptions(parent=parent or self)
        role = aws.iam.Role(resource_name, name=role_name,
                            assume_role_policy=irsa_trust_policy(self.oidc_provider_arn, self.oidc_issuer,
                                                                 namespace, service_account),
                            tags=tags, opts=opts)
        for arn in managed_policy_arns:
            aws.iam.RolePolicyAttachment(f"{resource_name}-{arn.rsplit('/', 1)[-1]}", role=role.name, policy_arn=arn,
                                         opts=opts)
        return role

    def node_role_for(self, resource_name: str, role_name: str, tags: dict[str, str],
                      parent: pulumi.Resource | None = None,
                      ) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        """A node role with only what a node needs: join the cluster and pull images (the CNI has its own
        IRSA role), and its policy attachments (node groups wait for them)."""
        opts = pulumi.ResourceOptions(parent=parent or self)
        role = aws.iam.Role(resource_name, name=role_name, assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
                            tags=tags, opts=opts)
        attachments = [aws.iam.RolePolicyAttachment(f"{resource_name}-{policy}", role=role.name,
                                                    policy_arn=f"arn:{self.partition}:iam::aws:policy/{policy}",
                                                    opts=opts)
                       for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")]
        return role, attachments

    def _addon(self, name: str, eks: aws.eks.Cluster, addon: str, versions: dict[str, str], tags: dict[str, str],
               service_account_role_arn: pulumi.Input[str] | None = None,
               depends: list[pulumi.Resource] | None = None, configuration_values: str | None = None) -> aws.eks.Addon:
        return aws.eks.Addon(f"{name}-{addon}", cluster_name=eks.name, addon_name=addon, addon_version=versions[addon],
                             resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                             service_account_role_arn=service_account_role_arn, tags=tags,
                             configuration_values=configuration_values,
                             opts=pulumi.ResourceOptions(parent=self, depends_on=depends or []))

    def _system_nodes(self, name: str, cfg: StackConfig, network: Network, eks: aws.eks.Cluster,
                      tags: dict[str, str], depends: list[pulumi.Resource]) -> aws.eks.NodeGroup:
        spec, child = cfg.cluster, pulumi.ResourceOptions(parent=self)
        node_name = names.nodegroup_name(cfg, names.SYSTEM_POOL)
        lt = aws.ec2.LaunchTemplate(
            f"{name}-system-lt", name=node_name, update_default_version=True,
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda", ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=80, volume_type="gp3", encrypted="true", delete_on_termination="true"))],
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=kind, tags={**tags, "Name": node_name}) for kind in ("instance", "volume")],
            tags=tags, opts=child)
        sizing = scaling_inputs(spec.system_min, spec.system_max, spec.system_min,
                                live_scaling(names.cluster_name(cfg)).get(names.SYSTEM_POOL))
        # A generated name (prefix + unique suffix): a change EKS makes by replacement (instance type,
        # subnets) creates the new group before deleting the old one without a name collision.
        return aws.eks.NodeGroup(
            f"{name}-system", cluster_name=eks.name,
            node_group_name_prefix=names.nodegroup_prefix(cfg, names.SYSTEM_POOL),
            node_role_arn=self.node_role.arn,
            subnet_ids=network.private_subnet_ids, ami_type="AL2023_x86_64_STANDARD", capacity_type="ON_DEMAND",
            instance_types=[spec.system_instance_type],
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=spec.system_min, max_size=spec.system_max,
                                                              desired_size=sizing.desired_size),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            node_repair_config=aws.eks.NodeGroupNodeRepairConfigArgs(enabled=True),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=lt.id, version=lt.latest_version.apply(str)),
            labels={names.LABEL_ROLE: "system"}, tags={**tags, names.TAG_POOL: names.SYSTEM_POOL},
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends, ignore_changes=sizing.ignore_changes))
