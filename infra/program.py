"""The Pulumi program: StackConfig -> Plan -> components -> exports.

The stack file is validated and every model sized before the first resource is registered, so a
wrong stack file is refused with nothing made.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.planning.catalog import CatalogError
from infra.planning.hub import HubError
from infra.planning.plan import Plan, build_plan
from infra.planning.sizing import SizingError
from infra.runtime import load_from_pulumi
from infra.stack import names
from infra.stack.reader import ConfigError
from infra.stack.spec import StackConfig
from infra.wiring import KubeTarget, WeightsSource


def load(stack_dir: Path | None = None) -> tuple[StackConfig, Plan]:
    """Config and plan, or a RunError (the engine prints its message without a traceback)."""
    try:
        cfg = load_from_pulumi() if stack_dir is None else load_from_pulumi(stack_dir)
        plan = build_plan(cfg)
        return plan.config, plan            # `prewarmMinutes: auto` resolved from the cold start
    except (ConfigError, SizingError, CatalogError, HubError) as err:
        raise pulumi.RunError(str(err)) from None


def build(stack_dir: Path | None = None) -> None:
    cfg, plan = load(stack_dir)
    weights: WeightsSource | None = None
    if cfg.cluster.existing is None:
        from infra.aws.cluster import Cluster
        from infra.aws.network import Network
        from infra.aws.nodepools import GpuNodePools
        from infra.aws.storage import WeightsStorage

        account_id = aws.get_caller_identity().account_id
        network = Network("network", cfg, plan)
        if cfg.ci.runner == "codebuild":
            from infra.aws.runner import DeployRunner, refuse_bootstrap_of_a_running_stack

            pulumi.export("deployRunner", DeployRunner("ci-runner", cfg, network).project_name)
            if cfg.ci.bootstrap:     # first deploy of a private stack: the VPC and its runner, nothing else
                refuse_bootstrap_of_a_running_stack(cfg)
                return
        cluster = Cluster("cluster", cfg, network)
        kube = _kube_target(cfg, cluster.provider, managed=True, cluster_name=cluster.name)
        pools = GpuNodePools("gpu", cfg, plan, cluster, network, kube)
        storage = WeightsStorage("weights", cfg, plan, cluster, kube, account_id)
        # engines and the gateway come after the controllers they rely on (the LB controller's webhook
        # must see the gateway Service; the device plugins must advertise GPUs), and each engine after
        # its own pools' node groups only: depending on the whole GpuNodePools component would make
        # every Kubernetes object wait on (and Pulumi expand) every pool's children.
        addons = pools.addons
        kube = dataclasses.replace(
            kube, ready=tuple(r for r in (addons.device_plugin, addons.lb_controller, addons.efa_plugin) if r),
            pools={p: (ng,) for p, ng in pools.node_groups.items()})
        weights = storage.source
        from infra.aws.jobs import FleetJobs

        jobs = FleetJobs("jobs", cfg, cluster, kube, storage.bucket_name, storage.key_arn, account_id)
        if jobs.github_role_arn is not None:
            pulumi.export("jobsRoleArn", jobs.github_role_arn)
        pulumi.export("clusterName", cluster.name)
        pulumi.export("kubeconfig", cluster.kubeconfig)
        pulumi.export("nodeGroups", {p: ng.node_group_name for p, ng in pools.node_groups.items()})
        pulumi.export("weightsBucket", storage.bucket_name)
    else:
        from infra.serving.existing import existing_provider

        kube = _kube_target(cfg, existing_provider(cfg), managed=False, cluster_name=None)

    from infra.serving import Serving

    serving = Serving("serving", cfg, plan, kube, weights)
    pulumi.export("gatewayUrl", serving.gateway_url)
    pulumi.export("models", [m.name for m in cfg.models])
    pulumi.export("monthlyUSD", round(plan.monthly_usd, 2))


def _kube_target(cfg: StackConfig, provider: k8s.Provider, managed: bool,
                 cluster_name: pulumi.Output[str] | None) -> KubeTarget:
    ns = k8s.core.v1.Namespace(
        "namespace",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=names.NAMESPACE, labels={"app.kubernetes.io/part-of": "llm-fleet"}),
        opts=pulumi.ResourceOptions(provider=provider))
    return KubeTarget(provider=provider, namespace=ns.metadata.name, namespace_resource=ns, managed=managed,
                      cluster_name=cluster_name)
