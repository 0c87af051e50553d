"""Stable physical names derived from the stack, shared by the program and the jobs, so the jobs find
the cluster, node groups and bucket without reading Pulumi state. Pure."""

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
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_RELEASE = "kube-prometheus-stack"
# Service of the Prometheus the chart makes (kube-prometheus-stack: "<release>-prometheus", port 9090)
PROMETHEUS_URL = f"http://{PROMETHEUS_RELEASE}-prometheus.{MONITORING_NAMESPACE}.svc.cluster.local:9090"


def cluster_name(cfg: StackConfig) -> str:
    return cfg.cluster.name


def nodegroup_name(cfg: StackConfig, pool: PoolSpec | str) -> str:
    name = pool if isinstance(pool, str) else pool.name
    return f"{cfg.cluster.name}-{name}"


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
