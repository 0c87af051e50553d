"""Shared by the checks: resource-type tokens, labels and annotations the program writes, the UNKNOWN
marker for values the engine does not know yet in preview, and helpers over plain dicts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "llm-fleet"

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
POD = "kubernetes:core/v1:Pod"
TEMPLATED_WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
}
CRONJOB = "kubernetes:batch/v1:CronJob"

LABEL_POOL = "llm-fleet/pool"
LABEL_GPU = "llm-fleet/gpu"
LABEL_AUTH = "llm-fleet/auth"
LABEL_ROLE = "llm-fleet/role"
TAG_GPUS_PER_NODE = "llm-fleet/gpus-per-node"
TAG_LARGE_MODELS = "llm-fleet/large-models"
GPU_RESOURCES = ("nvidia.com/gpu", "huawei.com/Ascend910")
ANN_SSL_CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
ANN_SSL_PORTS = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
ANN_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
ANN_INTERNAL_LEGACY = "service.beta.kubernetes.io/aws-load-balancer-internal"
DEFAULT_MAX_TOTAL_GPUS = 64
FALLBACK_CAPACITY = ("ON_DEMAND", "CAPACITY_BLOCK")

_ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_PINNED_CHART = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")


class _Unknown:
    """A value the engine cannot know during preview."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


class Violation(NamedTuple):
    message: str
    urn: str | None = None


# ---------------------------------------------------------------- plumbing shared by the checks


def to_plain(value: Any) -> Any:
    """Copy engine props (proxies that raise on unknowns) into dicts/lists with UNKNOWN markers."""
    if isinstance(value, Mapping):
        out = {}
        for key in value:
            try:
                out[key] = to_plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = []
        for i in range(len(value)):
            try:
                items.append(to_plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def dig(obj: Any, *path: str | int) -> Any:
    """obj[p0][p1]...; None where a step is missing, UNKNOWN where a step is unknown."""
    for step in path:
        if obj is UNKNOWN:
            return UNKNOWN
        if isinstance(obj, Mapping):
            obj = obj.get(step)
        elif isinstance(obj, list) and isinstance(step, int) and -len(obj) <= step < len(obj):
            obj = obj[step]
        else:
            return None
    return obj


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _label(res: Mapping[str, Any]) -> str:
    pool = dig(res, "props", "labels", LABEL_POOL)
    name = res.get("name") or res.get("urn") or "?"
    return f"{name} (pool {pool})" if isinstance(pool, str) else str(name)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
