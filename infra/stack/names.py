"""Stable physical names derived from the stack, shared by the program and the jobs, so the jobs find
the cluster, node groups and bucket without reading Pulumi state. Pure.

EKS node groups are the exception: their names are generated (a prefix plus a unique suffix) so that a
change EKS can only make by replacing the group (instance types, capacity type, AMI type, subnets, launch
template id) creates the new group before deleting the old one without a name collision
(pulumi/pulumi-eks#294). Find a pool's node group by the tag `TAG_POOL` in its cluster, never by name."""

from __future__ import annotations

import re

from infra.stack.spec import ModelSpec, PoolSpec, StackConfig

PROJECT = "llm-fleet"
NAMESPACE = "llm-fleet"                 # Kubernetes namespace for engines and gateway
LABEL_POOL = "llm-fleet/pool"
LABEL_GPU = "llm-fleet/gpu"
LABEL_CAPACITY = "llm-fleet/capacity"
LABEL_MODEL = "llm-fleet/model"
LABEL_ROLE = "llm-fleet/role"
# The tag on each EKS node group (and its launch template, instances and volumes) naming its pool: the
# jobs, schedules and `fleet` commands find a pool's node group in its cluster by this tag.
TAG_POOL = LABEL_POOL
# terraform-provider-aws generates `<prefix><26-character unique id>` (id.UniqueIDSuffixLength) and EKS
# caps node group names at 63 characters.
NODEGROUP_PREFIX_MAX = 63 - 26
SYSTEM_POOL = "system"                     # the EKS system node group's pool name; no GPU pool may take it
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_RELEASE = "kube-prometheus-stack"
# Service of the Prometheus the chart makes (kube-prometheus-stack: "<release>-prometheus", port 9090)
PROMETHEUS_URL = f"http://{PROMETHEUS_RELEASE}-prometheus.{MONITORING_NAMESPACE}.svc.cluster.local:9090"


def cluster_name(cfg: StackConfig) -> str:
    return cfg.cluster.name


def nodegroup_name(cfg: StackConfig, pool: PoolSpec | str) -> str:
    """`<cluster>-<pool>`: the name of the pool's launch template and placement group. NOT the EKS node
    group's name (generated, see `nodegroup_prefix`): find the node group by `TAG_POOL`."""
    name = pool if isinstance(pool, str) else pool.name
    return f"{cfg.cluster.name}-{name}"


def nodegroup_prefix(cfg: StackConfig, pool: PoolSpec | str) -> str:
    """The start of the pool's generated node group name: `<cluster>-<pool>-`, cut to fit EKS's 63
    characters with the provider's unique suffix (the tag, not the name, identifies the pool)."""
    return nodegroup_name(cfg, pool)[:NODEGROUP_PREFIX_MAX - 1].rstrip("-") + "-"


def runner_project(cfg: StackConfig) -> str:
    """The CodeBuild project that runs this stack's GitHub Actions jobs inside its VPC (ci.runner: codebuild)."""
    return f"{cfg.cluster.name}-deploy"


def runs_on(cfg: StackConfig, run_id: str, attempt: str) -> list[str]:
    """The `runs-on` labels of the jobs that preview or deploy this stack. A CodeBuild-hosted runner is
    asked for by `codebuild-<project>-<run id>-<run attempt>` (AWS CodeBuild user guide, "Tutorial:
    Configure a CodeBuild-hosted GitHub Actions runner")."""
    if cfg.ci.runner == "codebuild":
        return [f"codebuild-{runner_project(cfg)}-{run_id}-{attempt}"]
    return list(cfg.ci.runs_on)


def bucket_name(cfg: StackConfig, account_id: str) -> str:
    """Globally unique without a random suffix: project, stack, account and region."""
    if cfg.storage.bucket_name:
        return cfg.storage.bucket_name
    return f"{PROJECT}-{cfg.stack}-{account_id}-{cfg.region}"[:63].rstrip("-.")


def lock_key(stack: str) -> str:
    """The S3 object the jobs lock a stack with (the jobs role is allowed exactly this key)."""
    return f"locks/{stack}.json"


def deployed_key(stack: str) -> str:
    """The S3 object where `pulumi up` stores the stack file it deployed (secrets left out): what the
    scheduled jobs act on (`--deployed`), never a file merged later and not yet deployed."""
    return f"deployed/Pulumi.{stack}.yaml"


def deployment_name(model: ModelSpec | str, pool: str) -> str:
    """Kubernetes name of one model's engine on one pool (a Deployment or a LeaderWorkerSet)."""
    name = model if isinstance(model, str) else model.name
    return dns_label(f"{name}-{pool}")


def dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")
    return label[:63].rstrip("-")


def tags(cfg: StackConfig, component: str, **extra: str) -> dict[str, str]:
    """The one tag set every AWS resource carries."""
    return {"project": PROJECT, "stack": cfg.stack, "environment": cfg.environment,
            "component": component, "managed-by": "pulumi", **extra}
