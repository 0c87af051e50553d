"""llm-fleet guard rails: pure checks over plain dicts, wrapped as pulumi-policy policies.

Every check takes plain Python data (a resource is a dict with ``type``, ``urn``, ``name``,
``props`` and, for stack checks, ``parent``, ``dependencies``, ``property_dependencies`` as URNs)
and returns violation messages, so tests run the rules without the engine. The wrappers at the end
turn the engine's proxied arguments into that shape. A value the engine cannot know yet (preview of
a resource not created) becomes ``UNKNOWN``: checks skip it, because the same policies run again in
``pulumi up`` with the real values; where skipping would hide something (subnets), an advisory
policy says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
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


# ---------------------------------------------------------------- 4. exposed endpoints: TLS and auth


def _tls_and_auth_problems(props: Mapping[str, Any]) -> list[str]:
    annotations = dig(props, "metadata", "annotations")
    labels = dig(props, "metadata", "labels")
    out = []
    if annotations is not UNKNOWN:
        cert = _mapping(annotations).get(ANN_SSL_CERT)
        if cert is not UNKNOWN and not (isinstance(cert, str) and _ACM_ARN.match(cert)):
            out.append(f"annotation {ANN_SSL_CERT} is {cert!r}, not an ACM certificate ARN")
        ports = _mapping(annotations).get(ANN_SSL_PORTS)
        if ports is not UNKNOWN and not (isinstance(ports, str) and ports.strip()):
            out.append(f"annotation {ANN_SSL_PORTS} is missing")
    if labels is not UNKNOWN and _mapping(labels).get(LABEL_AUTH) not in ("api-key", UNKNOWN):
        out.append(f"label {LABEL_AUTH}: api-key is missing (only the key-checking gateway may be exposed)")
    return out


def _is_load_balancer(res: Mapping[str, Any]) -> bool:
    return res.get("type") == SERVICE and dig(res, "props", "spec", "type") == "LoadBalancer"


def _is_internal(res: Mapping[str, Any]) -> bool:
    annotations = _mapping(dig(res, "props", "metadata", "annotations"))
    # the in-tree controller's older spelling still works and means the same
    return annotations.get(ANN_SCHEME) == "internal" or annotations.get(ANN_INTERNAL_LEGACY) == "true"


def check_exposed_endpoint(res: Mapping[str, Any]) -> list[str]:
    """Internet-facing LoadBalancer Services and all Ingresses carry TLS and the gateway's auth label."""
    props = _mapping(res.get("props"))
    if _is_load_balancer(res) and not _is_internal(res):
        problems = _tls_and_auth_problems(props)
        return [
            f"LoadBalancer Service {res.get('name')}: {p}. Fix: expose only the API gateway, with "
            f"{ANN_SSL_CERT}=<ACM ARN>, {ANN_SSL_PORTS}=443 and label {LABEL_AUTH}: api-key; or make it "
            f"internal ({ANN_SCHEME}: internal)."
            for p in problems
        ]
    if res.get("type") == INGRESS:
        out = []
        tls = dig(props, "spec", "tls")
        if tls is not UNKNOWN and not _items(tls):
            out.append(
                f"Ingress {res.get('name')} has no spec.tls. Fix: add spec.tls with the host and its secret."
            )
        labels = dig(props, "metadata", "labels")
        if labels is not UNKNOWN and _mapping(labels).get(LABEL_AUTH) not in ("api-key", UNKNOWN):
            out.append(
                f"Ingress {res.get('name')} lacks label {LABEL_AUTH}: api-key. Fix: route only to the "
                "API gateway, which enforces keys, and label the Ingress accordingly."
            )
        return out
    return []


def check_internal_lb(res: Mapping[str, Any]) -> list[str]:
    """Advisory: an internal load balancer without TLS (or the auth label) is allowed, but noted."""
    if not (_is_load_balancer(res) and _is_internal(res)):
        return []
    return [
        f"Internal LoadBalancer Service {res.get('name')}: {p}. Allowed inside the VPC. Fix: add TLS and "
        "the label anyway if traffic crosses accounts or peered networks."
        for p in _tls_and_auth_problems(_mapping(res.get("props")))
    ]


# ---------------------------------------------------------------- 5. and 6. workloads


def pod_templates(res: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, pod template with metadata/spec) for every pod a workload resource creates."""
    rtype, props = res.get("type"), _mapping(res.get("props"))
    if rtype in TEMPLATED_WORKLOADS:
        found = [("spec.template", dig(props, "spec", "template"))]
    elif rtype == CRONJOB:
        found = [("spec.jobTemplate.spec.template", dig(props, "spec", "jobTemplate", "spec", "template"))]
    elif rtype == LWS:
        lwt = dig(props, "spec", "leaderWorkerTemplate")
        found = [
            ("leaderTemplate", dig(lwt, "leaderTemplate")),
            ("workerTemplate", dig(lwt, "workerTemplate")),
        ]
    elif rtype == POD:
        found = [("pod", props)]
    else:
        return []
    return [(where, t) for where, t in found if isinstance(t, Mapping)]


def image_pin_problem(image: Any) -> str | None:
    """None when the image has a digest or an explicit tag other than latest."""
    if image is UNKNOWN:
        return None
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@" in image:
        return None if _DIGEST.match(image.split("@", 1)[1]) else "has a malformed digest"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag:
        return "has no tag (it would pull :latest)"
    if tag.lower() == "latest":
        return "uses the mutable :latest tag"
    return None


def check_images_pinned(res: Mapping[str, Any]) -> list[str]:
    """Every container and init container image is pinned by tag (not latest) or digest."""
    out = []
    for where, template in pod_templates(res):
        spec = _mapping(template.get("spec"))
        for field in ("initContainers", "containers"):
            for c in _items(spec.get(field)):
                image = dig(c, "image")
                problem = image_pin_problem(image)
                if problem:
                    out.append(
                        f"{res.get('name')} {where} {field[:-1]} {dig(c, 'name')!r}: image {image!r} "
                        f"{problem}. Fix: pin an explicit version tag or an @sha256 digest."
                    )
    return out


def check_helm_chart_pinned(res: Mapping[str, Any]) -> list[str]:
    """A Helm release names an exact chart version."""
    if res.get("type") != HELM_RELEASE:
        return []
    version = dig(res, "props", "version")
    if version is UNKNOWN or (isinstance(version, str) and _PINNED_CHART.match(version.strip())):
        return []
    return [
        f"Helm release {res.get('name')} has chart version {version!r}. Fix: set version to an exact "
        'chart release (e.g. "2.17.0"), not empty, a range or latest.'
    ]


_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _gpu_limit(container: Mapping[str, Any]) -> bool:
    limits = dig(container, "resources", "limits")
    return isinstance(limits, Mapping) and any(
        key in limits and limits[key] not in (0, "0", None) for key in GPU_RESOURCES
    )


def check_engine_pods(res: Mapping[str, Any]) -> list[str]:
    """GPU containers have startup, readiness and liveness probes; engine pods ask for a GPU."""
    out = []
    for where, template in pod_templates(res):
        containers = dig(template, "spec", "containers")
        if containers is UNKNOWN:
            continue
        gpu = [c for c in _items(containers) if isinstance(c, Mapping) and _gpu_limit(c)]
        for c in gpu:
            missing = [p for p in _PROBES if not c.get(p)]
            if missing:
                out.append(
                    f"{res.get('name')} {where} GPU container {c.get('name')!r} has no {', '.join(missing)}. "
                    "Fix: add all three probes; size the startup probe for the weight load time (tens of "
                    "minutes for big models)."
                )
        role = dig(template, "metadata", "labels", LABEL_ROLE)
        if role == "engine" and not gpu:
            out.append(
                f"{res.get('name')} {where} is labelled {LABEL_ROLE}: engine but no container has a "
                f"resources.limits entry for {' or '.join(GPU_RESOURCES)}. Fix: set the GPU limit so the pod "
                "lands on a GPU node and gets its devices."
            )
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
        "metadataOptions={httpTokens: required, httpEndpoint: enabled, httpPutResponseHopLimit: 2} "
        "(pods reach IMDS through one extra hop)."
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


# ---------------------------------------------------------------- policy objects


def resource_from_args(args: ResourceValidationArgs) -> dict[str, Any]:
    """The engine's resource-validation arguments as a plain resource dict."""
    return {"type": args.resource_type, "urn": args.urn, "name": args.name, "props": to_plain(args.props)}


def stack_from_args(args: StackValidationArgs) -> list[dict[str, Any]]:
    """The engine's stack resources as plain dicts, with parent and dependencies as URNs."""
    out = []
    for r in args.resources:
        parent = r.parent.urn if r.parent is not None else getattr(r.opts, "parent", None)
        out.append(
            {
                "type": r.resource_type,
                "urn": r.urn,
                "name": r.name,
                "props": to_plain(r.props),
                "parent": parent,
                "dependencies": [d.urn for d in r.dependencies],
                "property_dependencies": {k: [d.urn for d in v] for k, v in r.property_dependencies.items()},
            }
        )
    return out


def max_total_gpus(config: Mapping[str, Any] | None) -> int:
    value = _as_int(_mapping(config).get("maxTotalGpus"))
    return DEFAULT_MAX_TOTAL_GPUS if value is None else value


def check_gpu_total_from_config(
    resources: list[dict[str, Any]], config: Mapping[str, Any]
) -> list[Violation]:
    """The stack's total max GPUs (sum of maxSize x gpus-per-node) stays within maxTotalGpus."""
    return check_gpu_total(resources, max_total_gpus(config))


def _summary(check: Callable[..., Any]) -> str:
    return (check.__doc__ or check.__name__).strip().splitlines()[0]


def _resource_policy(
    name: str, check, level: EnforcementLevel, severity: Severity
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(resource_from_args(args)):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name, description=_summary(check), validate=validate, enforcement_level=level, severity=severity
    )


def _stack_policy(
    name: str,
    check,
    level: EnforcementLevel,
    severity: Severity,
    config_schema: PolicyConfigSchema | None = None,
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = stack_from_args(args)
        found = check(resources, args.get_config()) if config_schema else check(resources)
        for violation in found:
            report_violation(violation.message, violation.urn)

    return StackValidationPolicy(
        name=name,
        description=_summary(check),
        validate=validate,
        enforcement_level=level,
        severity=severity,
        config_schema=config_schema,
    )


_GPU_CAP_SCHEMA = PolicyConfigSchema(
    properties={
        "maxTotalGpus": {
            "type": "integer",
            "minimum": 1,
            "default": DEFAULT_MAX_TOTAL_GPUS,
            "description": "Upper bound on sum(maxSize x gpus-per-node) over the stack's GPU node groups.",
        }
    }
)
_M, _A, _S = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY, Severity

# One table: the PolicyPack below and `fleet diff`'s offline verdicts (scripts/policy_check.py) both
# read it, so a PR shows the same verdicts the engine will enforce. (id, check, kind, level, severity)
CHECKS = [
    ("llmfleet-gpu-pool-max-size", check_gpu_pool_max_size, "resource", _M, _S.HIGH),
    ("llmfleet-gpu-total-cap", check_gpu_total_from_config, "stack-config", _M, _S.HIGH),
    ("llmfleet-spot-on-demand-fallback", check_spot_fallback, "stack", _M, _S.HIGH),
    ("llmfleet-s3-encrypted-versioned-private", check_buckets, "stack", _M, _S.CRITICAL),
    ("llmfleet-exposed-endpoint-tls-auth", check_exposed_endpoint, "resource", _M, _S.CRITICAL),
    ("llmfleet-internal-lb-tls", check_internal_lb, "resource", _A, _S.LOW),
    ("llmfleet-images-pinned", check_images_pinned, "resource", _M, _S.MEDIUM),
    ("llmfleet-helm-chart-pinned", check_helm_chart_pinned, "resource", _M, _S.MEDIUM),
    ("llmfleet-engine-probes-gpu", check_engine_pods, "resource", _M, _S.HIGH),
    ("llmfleet-imdsv2-required", check_imdsv2, "resource", _M, _S.HIGH),
    ("llmfleet-nodegroup-private-subnets", check_nodegroup_subnets, "stack", _M, _S.HIGH),
    ("llmfleet-nodegroup-subnets-unverified", check_nodegroup_subnets_unverified, "stack", _A, _S.LOW),
]

POLICIES = [
    _resource_policy(pid, check, level, severity) if kind == "resource"
    else _stack_policy(pid, check, level, severity, _GPU_CAP_SCHEMA if kind == "stack-config" else None)
    for pid, check, kind, level, severity in CHECKS
]

POLICY_IDS = [p.name for p in POLICIES]
