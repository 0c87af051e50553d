"""AWS-side checks: GPU pool sizes and the stack's GPU cap, on-demand fallback for spot pools serving
large models, buckets encrypted / versioned / private, IMDSv2, node groups in private subnets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plumbing import (
    BUCKET,
    BUCKET_PAB,
    BUCKET_SSE,
    BUCKET_VERSIONING,
    FALLBACK_CAPACITY,
    LABEL_GPU,
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    SUBNET,
    TAG_GPUS_PER_NODE,
    TAG_LARGE_MODELS,
    UNKNOWN,
    Violation,
    _as_int,
    _items,
    _label,
    _mapping,
    dig,
)

# ---------------------------------------------------------------- 1. GPU pools: max size and cap


def is_gpu_node_group(res: Mapping[str, Any]) -> bool:
    labels = dig(res, "props", "labels")
    return res.get("type") == NODE_GROUP and isinstance(labels, Mapping) and LABEL_GPU in labels


def check_gpu_pool_max_size(res: Mapping[str, Any]) -> list[str]:
    """A GPU node group declares a max size >= 1 and how many GPUs each node has."""
    if not is_gpu_node_group(res):
        return []
    out = []
    max_size = dig(res, "props", "scalingConfig", "maxSize")
    if max_size is not UNKNOWN:
        n = _as_int(max_size)
        if n is None or n < 1:
            out.append(
                f"GPU node group {_label(res)} has scalingConfig.maxSize={max_size!r}. Fix: give the pool an "
                "explicit max size >= 1 in its stack file (EKS rejects 0; use min/desired 0 to park it)."
            )
    per_node = dig(res, "props", "tags", TAG_GPUS_PER_NODE)
    if per_node is not UNKNOWN and (_as_int(per_node) or 0) < 1:
        out.append(
            f"GPU node group {_label(res)} has tag {TAG_GPUS_PER_NODE}={per_node!r}. Fix: tag it with the "
            'GPU count of its instance type (e.g. "8" for p5en.48xlarge) so the GPU cap can be counted.'
        )
    return out


def check_gpu_total(resources: Iterable[Mapping[str, Any]], cap: int) -> list[Violation]:
    """Sum over GPU pools of maxSize x gpus-per-node stays within the cap."""
    total, parts, uncounted = 0, [], []
    for res in resources:
        if not is_gpu_node_group(res):
            continue
        size = _as_int(dig(res, "props", "scalingConfig", "maxSize"))
        per_node = _as_int(dig(res, "props", "tags", TAG_GPUS_PER_NODE))
        if size is None or per_node is None:
            uncounted.append(_label(res))
            continue
        total += size * per_node
        parts.append(f"{_label(res)}: {size} x {per_node}")
    if total <= cap:
        return []
    note = f"; not counted (unknown size): {', '.join(uncounted)}" if uncounted else ""
    return [
        Violation(
            f"The stack can scale to {total} GPUs ({'; '.join(parts)}){note}, above the cap of "
            f"{cap}. Fix: lower maxSize on a GPU pool, or, if the budget allows, raise "
            f"maxTotalGpus for llmfleet-gpu-total-cap in the policy pack config."
        )
    ]


# ---------------------------------------------------------------- 2. spot pools need a fallback


def _large_models(res: Mapping[str, Any]) -> list[str] | None:
    raw = dig(res, "props", "tags", TAG_LARGE_MODELS)
    if raw is UNKNOWN:
        return None
    if not isinstance(raw, str):
        return []
    return [m.strip() for m in raw.split(",") if m.strip()]


def _capacity_type(res: Mapping[str, Any]) -> Any:
    cap = dig(res, "props", "capacityType")
    return "ON_DEMAND" if cap is None else cap  # the EKS default


def check_spot_fallback(resources: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """Every large model on a SPOT pool is also served by an ON_DEMAND or CAPACITY_BLOCK pool."""
    groups = [r for r in resources if r.get("type") == NODE_GROUP]
    covered: set[str] = set()
    for res in groups:
        if _capacity_type(res) in FALLBACK_CAPACITY:
            covered.update(_large_models(res) or [])
    out = []
    for res in groups:
        if _capacity_type(res) != "SPOT":
            continue
        for model in _large_models(res) or []:
            if model not in covered:
                out.append(
                    Violation(
                        f"Spot node group {_label(res)} serves large model {model} and no ON_DEMAND or "
                        f"CAPACITY_BLOCK node group lists it in {TAG_LARGE_MODELS}: a 2-minute spot notice "
                        f"cannot cover reloading the weights. Fix: add an on-demand (or capacity-block) base "
                        f"pool serving {model}, or move {model} off spot.",
                        res.get("urn"),
                    )
                )
    return out


# ---------------------------------------------------------------- 3. buckets: KMS, versioned, private


def _companion_of(companion: Mapping[str, Any], bucket: Mapping[str, Any]) -> bool:
    """Match a companion to its bucket: property dependency, parent, or the `bucket` value."""
    urn = bucket.get("urn")
    if urn and urn in _mapping(companion.get("property_dependencies")).get("bucket", []):
        return True
    if urn and companion.get("parent") == urn:
        return True
    value = dig(companion, "props", "bucket")
    if not isinstance(value, str):
        return False
    names = [dig(bucket, "props", key) for key in ("bucket", "id")]
    return value in [n for n in names if isinstance(n, str)]


def _sse_problem(props: Mapping[str, Any]) -> str | None:
    rules = props.get("rules")
    if rules is UNKNOWN:
        return None
    algorithms = [dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in _items(rules)]
    if any(a is UNKNOWN or (isinstance(a, str) and a.startswith("aws:kms")) for a in algorithms):
        return None
    return (
        f"default encryption is {algorithms or 'not set'}. Fix: set "
        "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm to aws:kms (with the fleet's KMS key)"
    )


def _versioning_problem(props: Mapping[str, Any]) -> str | None:
    status = dig(props, "versioningConfiguration", "status")
    if status is UNKNOWN or status == "Enabled":
        return None
    return f"versioning status is {status!r}. Fix: set versioningConfiguration.status to Enabled"


_PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _public_access_problem(props: Mapping[str, Any]) -> str | None:
    off = [f for f in _PAB_FLAGS if props.get(f) is not UNKNOWN and props.get(f) is not True]
    if not off:
        return None
    return f"public access block leaves {', '.join(off)} off. Fix: set all four flags to true"


_BUCKET_COMPANIONS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], str | None]], ...] = (
    (BUCKET_SSE, "BucketServerSideEncryptionConfiguration (aws:kms)", _sse_problem),
    (BUCKET_VERSIONING, "BucketVersioning (Enabled)", _versioning_problem),
    (BUCKET_PAB, "BucketPublicAccessBlock (all four flags true)", _public_access_problem),
)


def check_buckets(resources: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """Every Bucket has an SSE-KMS, a versioning and a public-access-block companion, set right."""
    resources = list(resources)
    out = []
    for bucket in (r for r in resources if r.get("type") == BUCKET):
        name = bucket.get("name") or bucket.get("urn")
        for rtype, wanted, problem_of in _BUCKET_COMPANIONS:
            mine = [r for r in resources if r.get("type") == rtype and _companion_of(r, bucket)]
            if not mine:
                out.append(
                    Violation(
                        f"Bucket {name} has no {wanted}. Fix: create one with bucket=<this bucket>.id.",
                        bucket.get("urn"),
                    )
                )
                continue
            problems = [p for p in (problem_of(_mapping(c.get("props"))) for c in mine) if p]
            if len(problems) == len(mine):
                out.append(Violation(f"Bucket {name}: {problems[0]}.", bucket.get("urn")))
    return out


# ---------------------------------------------------------------- 7. IMDSv2


def check_imdsv2(res: Mapping[str, Any]) -> list[str]:
    """Launch templates require IMDSv2 session tokens."""
    if res.get("type") != LAUNCH_TEMPLATE:
        return []
    tokens = dig(res, "props", "metadataOptions", "httpTokens")
    if tokens is UNKNOWN or tokens == "required":
        return []
    return [
        f"Launch template {res.get('name')} has metadataOptions.httpTokens={tokens!r}. Fix: set "
        "metadataOptions={httpTokens: required, httpEndpoint: enabled, httpPutResponseHopLimit: 1} "
        "(add-ons get AWS credentials from IRSA or Pod Identity, so pods need no IMDS)."
    ]


# ---------------------------------------------------------------- 8. node groups in private subnets


def _is_public_subnet(subnet: Mapping[str, Any]) -> Any:
    """True, False or UNKNOWN."""
    if dig(subnet, "props", "tags", "kubernetes.io/role/elb") == "1":
        return True
    public = dig(subnet, "props", "mapPublicIpOnLaunch")
    return UNKNOWN if public is UNKNOWN else public is True


def _resolve_subnets(
    group: Mapping[str, Any], subnets: list[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """(subnets of this stack the group uses, descriptions of ids that could not be resolved)."""
    dep_urns = set(_mapping(group.get("property_dependencies")).get("subnetIds", []))
    used = [s for s in subnets if s.get("urn") in dep_urns]
    unresolved = []
    ids = dig(group, "props", "subnetIds")
    if ids is UNKNOWN:
        return used, ([] if used else ["subnetIds (unknown during preview)"])
    by_id = {dig(s, "props", "id"): s for s in subnets if isinstance(dig(s, "props", "id"), str)}
    for sid in _items(ids):
        if isinstance(sid, str) and sid in by_id:
            if by_id[sid] not in used:
                used.append(by_id[sid])
        elif sid is UNKNOWN:
            if not used:
                unresolved.append("a subnet id unknown during preview")
        else:
            unresolved.append(f"{sid} (not a subnet of this stack)")
    return used, unresolved


def check_nodegroup_subnets(resources: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """No node group uses a subnet of this stack that is public (public IPs or the ELB role tag)."""
    resources = list(resources)
    subnets = [r for r in resources if r.get("type") == SUBNET]
    out = []
    for group in (r for r in resources if r.get("type") == NODE_GROUP):
        used, _ = _resolve_subnets(group, subnets)
        for subnet in used:
            if _is_public_subnet(subnet) is True:
                out.append(
                    Violation(
                        f"Node group {_label(group)} uses public subnet {subnet.get('name')} "
                        "(mapPublicIpOnLaunch or kubernetes.io/role/elb=1). Fix: pass only the private "
                        "subnets of the network component to node groups.",
                        group.get("urn"),
                    )
                )
    return out


def check_nodegroup_subnets_unverified(resources: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """Advisory: subnets a node group uses that this stack cannot show to be private."""
    resources = list(resources)
    subnets = [r for r in resources if r.get("type") == SUBNET]
    out = []
    for group in (r for r in resources if r.get("type") == NODE_GROUP):
        used, unresolved = _resolve_subnets(group, subnets)
        unresolved += [
            f"{s.get('name')} (mapPublicIpOnLaunch unknown)" for s in used if _is_public_subnet(s) is UNKNOWN
        ]
        if unresolved:
            out.append(
                Violation(
                    f"Node group {_label(group)}: cannot verify these subnets are private: "
                    f"{', '.join(unresolved)}. Fix: for an existing VPC, check in the AWS console that they "
                    "do not map public IPs; this advisory clears once the ids resolve to private subnets.",
                    group.get("urn"),
                )
            )
    return out
