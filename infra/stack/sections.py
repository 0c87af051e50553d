"""The stack file's sections, key by key: each parser builds one frozen dataclass of infra/stack/spec.py and
refuses what cannot work with the key path, the value and what would (see `reader.ConfigError`).
Called only by `config.parse_config`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from infra.stack.cidr import parse_cidr, parse_cidrs
from infra.stack.images import pinned_reference_problem, repository_problem
from infra.stack.names import SYSTEM_POOL
from infra.stack.reader import HIDDEN, ConfigError, Node, key_note, looks_like_credential
from infra.stack.s3names import bucket_name_problem
from infra.stack.spec import (
    ClusterSpec,
    EngineImage,
    ExistingCluster,
    FallbackSpec,
    GatewaySpec,
    ModelSpec,
    NetworkSpec,
    Placement,
    PoolSpec,
    RedisSpec,
    SecretRef,
    StorageSpec,
    TeamSpec,
    Throughput,
)
from infra.stack.versions import pinned_addons
from infra.stack.windows import parse_schedule

NAMESPACE = "llm-fleet"
PROJECT = "llm-fleet"
CAPACITIES = ("on-demand", "spot", "capacity-block")
PRECISIONS = ("bf16", "fp8", "int4", "w8a8", "w4a8")
ENGINES = ("vllm", "sglang")
LOADING = ("nvme", "runai-streamer", "fsx")
AMI_TYPES = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
FALLBACK_PROVIDERS = ("deepinfra", "fireworks", "together", "zai", "openai-compatible")
FALLBACK_POLICIES = ("allowed", "never")
NAME = r"[a-z][a-z0-9-]{0,30}[a-z0-9]"
NAME_HINT = "use 2-32 lowercase letters, digits and dashes, starting with a letter"
# Pins for what we deploy by default; a stack may override the engine image and version.
# vLLM v0.28.0: loads GLM-5/5.1 (glm_moe_dsa needs transformers >= 5.4, vLLM >= 0.19.1, vllm#40146) and
# streams GLM tool calls correctly with MTP on (vllm#39253, in 0.20.0; parser rewrite vllm#45915, 0.24.0);
# its images default to CUDA 13.0 (since 0.20.0): GPU nodes need an NVIDIA 580+ driver.
# SGLang v0.5.10: the version the GLM-5.1 cookbook runs (sgl-cookbook data/models/src/v0.5.10/glm51.yaml).
DEFAULT_ENGINES = {
    "vllm": ("vllm/vllm-openai", "v0.28.0"),
    "sglang": ("lmsysorg/sglang", "v0.5.10"),
}
# Multi-node replicas on EKS talk NCCL over EFA, which needs libfabric + aws-ofi-nccl in the image; the
# upstream images lack the plugin (FI_PROVIDER=efa then does nothing and NCCL falls back to TCP). The AWS
# Deep Learning Container republishes the same vLLM release with EFA and aws-ofi-nccl (ECR Public gallery
# deep-learning-containers/vllm). Keyed by the engine version it matches; another version needs efaImage.
DEFAULT_EFA_IMAGES = {
    ("vllm", "v0.28.0"): "public.ecr.aws/deep-learning-containers/vllm:0.28.0-gpu-py312-cu130-ubuntu24.04-ec2",
}
AZ_ID = r"[a-z]{3,4}\d-az[1-8]"           # infra.aws.network carves subnets for AZ slots 1..8
# huggingface_hub.utils.validate_repo_id: org/name of word characters, '-' and '.', 96 at most, no '--' or '..'
HF_REPO_ID = r"[A-Za-z0-9]([\w.-]*[A-Za-z0-9])?/[A-Za-z0-9_]([\w.-]*[A-Za-z0-9_])?"


def unique_names(path: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{NAMESPACE}:{path}: the name {name!r} is used twice; names must be unique")
        seen.add(name)


def _secret(node: Node, key: str, secret_names: frozenset[str], required: bool = False) -> SecretRef | None:
    if not node.has(key):
        if required:
            node.req(key)
        return None
    ref = node.node(key)
    arn = ref.str("secretsManager", pattern=r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+",
                  hint="expected an ARN arn:aws:secretsmanager:<region>:<account>:secret:<name>")
    pulumi_key = ref.str("pulumiSecret")
    ref.done()
    if (arn is None) == (pulumi_key is None):
        raise ConfigError(f"{ref.path}: give exactly one of secretsManager: <ARN> or pulumiSecret: <config key>")
    if pulumi_key is not None and pulumi_key not in secret_names:
        # a config key name is safe to show, unless a credential was pasted in its place
        shown, name = (HIDDEN, "<key>") if looks_like_credential(pulumi_key) else (repr(pulumi_key), pulumi_key)
        raise ConfigError(f"{ref.path}.pulumiSecret: {shown} is not a secret in this stack; run "
                          f"`pulumi config set --secret {name} <value>`")
    return SecretRef(secrets_manager_arn=arn, pulumi_key=pulumi_key)


def parse_network(node: Node, environment: str) -> NetworkSpec:
    existing = node.str("existingVpcId", pattern=r"vpc-[0-9a-f]{8,17}", hint="expected vpc-<hex>")
    private = node.strs("existingPrivateSubnetIds", pattern=r"subnet-[0-9a-f]{8,17}", hint="expected subnet-<hex>",
                        unique=True)
    public = node.strs("existingPublicSubnetIds", pattern=r"subnet-[0-9a-f]{8,17}", hint="expected subnet-<hex>",
                       unique=True)
    # subnets are carved per AZ slot (infra.aws.network.subnet_cidrs): the VPC must be /20 or larger
    cidr = node.str("cidr", "10.0.0.0/16")
    parse_cidr(node.sub("cidr"), cidr, shortest=16, longest=20)
    spec = NetworkSpec(
        cidr=cidr,
        az_count=node.int("azCount", 3 if environment == "prod" else 2, minimum=2, maximum=6),
        nat=node.str("nat", "per-az" if environment == "prod" else "single", choices=("single", "per-az")),
        interface_endpoints=node.strs("interfaceEndpoints", (), choices=("ecr.api", "ecr.dkr", "sts", "logs"),
                                      unique=True),
        existing_vpc_id=existing, existing_private_subnet_ids=private, existing_public_subnet_ids=public)
    node.done()
    for i, sid in enumerate(public):
        if sid in private:
            raise ConfigError(f"{node.sub('existingPublicSubnetIds')}[{i}]: {sid} is also listed as a private subnet; "
                              "a subnet is private or public, not both")
    if existing is not None and node.has("cidr"):
        raise ConfigError(f"{node.sub('cidr')}: with existingVpcId the VPC's own CIDR is used; remove cidr")
    if (private or public) and existing is None:
        raise ConfigError(f"{node.sub('existingVpcId')}: subnet ids are given without the VPC they belong to")
    if existing is not None and len(private) < 2:
        raise ConfigError(f"{node.sub('existingPrivateSubnetIds')}: with existingVpcId, list at least two "
                          "private subnets in different AZs (EKS needs two)")
    return spec


def parse_cluster(node: Node, stack: str, secret_names: frozenset[str]) -> ClusterSpec:
    existing = None
    if node.has("existing"):
        ex = node.node("existing")
        kubeconfig = ex.raw("kubeconfig")
        existing = ExistingCluster(
            kubeconfig=(_secret(ex, "kubeconfig", secret_names, required=True)
                        if isinstance(kubeconfig, Mapping) else ex.str("kubeconfig", required=True)),
            context=ex.str("context"))
        ex.done()
    system = node.node("systemNodes")
    version = node.str("kubernetesVersion", "1.33", pattern=r"1\.\d{2}",
                       hint="expected a minor version such as \"1.33\" (quote it)")
    addons, autoscaler = pinned_addons(node, version) if existing is None else ({}, None)
    spec = ClusterSpec(
        name=node.str("name", f"{PROJECT}-{stack}", pattern=NAME, hint=NAME_HINT),
        kubernetes_version=version,
        endpoint_public=node.bool("endpointPublic", True),
        endpoint_private=node.bool("endpointPrivate", True),
        public_access_cidrs=node.strs("publicAccessCidrs", ("0.0.0.0/0",), unique=True),
        logging=node.strs("logging", ("api", "audit", "authenticator"),
                          choices=("api", "audit", "authenticator", "controllerManager", "scheduler"), unique=True),
        admin_role_arns=node.strs("adminRoleArns", (), pattern=r"arn:aws[a-z-]*:iam::\d{12}:role/.+",
                                  hint="expected an IAM role ARN", unique=True),
        system_instance_type=system.str("instanceType", "m7i.xlarge", pattern=r"[a-z][a-z0-9-]*\.[a-z0-9]+",
                                        hint="expected an EC2 type like m7i.xlarge"),
        system_min=system.int("minSize", 2, minimum=1), system_max=system.int("maxSize", 4, minimum=1),
        accelerator=node.str("accelerator", "nvidia", choices=("nvidia", "ascend")),
        existing=existing, addon_versions=addons, autoscaler_image_tag=autoscaler)
    system.done()
    node.done()
    parse_cidrs(node.sub("publicAccessCidrs"), spec.public_access_cidrs, example="203.0.113.0/24")
    if node.has("publicAccessCidrs") and not spec.endpoint_public:
        raise ConfigError(f"{node.sub('publicAccessCidrs')}: given while endpointPublic is false, so nothing would "
                          "use it; set endpointPublic: true or remove publicAccessCidrs")
    if not spec.endpoint_public and not spec.endpoint_private:
        raise ConfigError(f"{node.sub('endpointPrivate')}: the API endpoint needs public or private access")
    if spec.system_max < spec.system_min:
        raise ConfigError(f"{system.sub('maxSize')}: {spec.system_max} is below minSize {spec.system_min}")
    if spec.accelerator == "ascend" and existing is None:
        raise ConfigError(f"{node.sub('accelerator')}: 'ascend' runs only on an existing cluster "
                          "(cluster.existing.kubeconfig); AWS has no Ascend instances")
    return spec


def parse_pool(node: Node) -> PoolSpec:
    name = node.str("name", required=True, pattern=NAME, hint=NAME_HINT)
    capacity = node.str("capacity", "on-demand", choices=CAPACITIES)
    if name == SYSTEM_POOL:
        raise ConfigError(f"{node.sub('name')}: {name!r} is taken by the system node group; rename the pool")
    types = node.strs("instanceTypes", pattern=r"[a-z0-9][a-z0-9-]*\.[a-z0-9]+",
                      hint="expected an EC2 type like p5en.48xlarge (or a catalog shape such as ascend-910b.8x)",
                      unique=True)
    if not types:
        raise ConfigError(f"{node.sub('instanceTypes')}: list at least one instance type, e.g. [p5en.48xlarge]")
    min_size = node.int("minSize", 0, minimum=0)
    max_size = node.int("maxSize", required=True, minimum=1)
    desired = node.int("desiredSize", min_size, minimum=0)
    reservation = node.str("capacityReservationId", pattern=r"cr-[0-9a-f]{17}", hint="expected cr-<17 hex digits>")
    schedule = parse_schedule(node.node("schedule"), max_size) if node.has("schedule") else None
    pool = PoolSpec(
        name=name, instance_types=types, capacity=capacity, min_size=min_size, max_size=max_size,
        desired_size=desired, schedule=schedule,
        az_ids=node.strs("azIds", (), pattern=AZ_ID, hint="expected an AZ id such as use1-az4 (az1 to az8)",
                         unique=True),
        ami_type=node.str("amiType", "AL2023_x86_64_NVIDIA", choices=AMI_TYPES),
        capacity_reservation_id=reservation,
        disk_gb=node.int("diskGB", 200, minimum=50, maximum=16000),
        idle_minutes=node.int("idleMinutes", None, minimum=5),
        node_selector=parse_node_selector(node))
    node.done()
    if min_size > max_size:
        raise ConfigError(f"{node.sub('minSize')}: {min_size} is above maxSize {max_size}")
    if not min_size <= desired <= max_size:
        raise ConfigError(f"{node.sub('desiredSize')}: {desired} is outside minSize..maxSize ({min_size}..{max_size})")
    if capacity == "capacity-block" and reservation is None:
        raise ConfigError(f"{node.sub('capacityReservationId')}: a capacity-block pool needs the reservation id "
                          "of its Capacity Block (cr-...); find offerings with `fleet capacity`")
    if capacity != "capacity-block" and reservation is not None:
        raise ConfigError(f"{node.sub('capacityReservationId')}: only a capacity-block pool takes a reservation id")
    if capacity == "capacity-block" and len(types) != 1:
        raise ConfigError(f"{node.sub('instanceTypes')}: a capacity-block pool has exactly the reserved type")
    if capacity == "capacity-block" and len(pool.az_ids) != 1:
        raise ConfigError(f"{node.sub('azIds')}: a Capacity Block lives in one AZ; pin exactly the AZ id of the "
                          "reservation (see `aws ec2 describe-capacity-reservations`)")
    return pool


def parse_node_selector(node: Node) -> tuple[tuple[str, str], ...]:
    """`nodeSelector: {label: value}` for an existing cluster's pool (label keys as Kubernetes writes them)."""
    if not node.has("nodeSelector"):
        return ()
    sel = node.node("nodeSelector")
    out = []
    for key in list(sel.data):
        if not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", str(key)):
            raise ConfigError(f"{sel.sub(str(key))}: {key!r}{key_note(key)} is not a Kubernetes label key")
        out.append((str(key), sel.str(str(key), required=True, pattern=r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?",
                                      hint="expected a Kubernetes label value")))
    if not out:
        raise ConfigError(f"{sel.path}: give at least one label, e.g. {{accelerator: huawei-Ascend910}}")
    return tuple(sorted(out))


def parse_model(node: Node, pools: Mapping[str, PoolSpec], base_dir: Path) -> ModelSpec:
    name = node.str("name", required=True, pattern=NAME, hint=NAME_HINT)
    source = node.str("source", required=True)
    if source.startswith(("/", "./", "../", "~")):
        local = (base_dir / source).expanduser() if not source.startswith(("/", "~")) else Path(source).expanduser()
        if not (local / "config.json").is_file():
            raise ConfigError(f"{node.sub('source')}: {source!r} is a local path without a config.json "
                              f"(looked in {local}); give a Hugging Face id such as zai-org/GLM-5.1-FP8 or a "
                              "directory that holds config.json")
        source = str(local.resolve())
    elif len(source) > 96 or ".." in source or "--" in source or not re.fullmatch(HF_REPO_ID, source):
        raise ConfigError(f"{node.sub('source')}: {source!r} is neither a Hugging Face id (org/name) nor a local path")
    placements = _placements(node, pools)
    throughput = None
    if node.has("throughput"):
        tp = node.node("throughput")
        throughput = Throughput(tp.float("outputTokensPerSecond", required=True, minimum=1, maximum=1e6),
                                tp.float("utilization", 0.5, minimum=0.01, maximum=1.0))
        tp.done()
    spec = ModelSpec(
        name=name, source=source,
        revision=node.str("revision", "main", pattern=r"(?!.*\.\.)[A-Za-z0-9][\w.\-/]{0,99}",
                          hint="give a branch, tag or commit of the model repository, e.g. main or a 40-hex sha"),
        precision=node.str("precision", required=True, choices=PRECISIONS),
        engine=node.str("engine", "vllm", choices=ENGINES), placements=placements,
        max_context=node.int("maxContext", None, minimum=512),
        gpu_memory_utilization=node.float("gpuMemoryUtilization", 0.90, minimum=0.5, maximum=0.98),
        kv_cache_dtype=node.str("kvCacheDtype", "auto", choices=("auto", "fp8")),
        loading=node.str("loading", "nvme", choices=LOADING),
        queue_target=node.int("queueTarget", 5, minimum=1),
        max_nodes_per_replica=node.int("maxNodesPerReplica", 1, minimum=1, maximum=4),
        extra_args=node.strs("extraArgs"), throughput=throughput,
        fallback=node.str("fallback", "allowed", choices=FALLBACK_POLICIES))
    node.done()
    return spec


def _placements(node: Node, pools: Mapping[str, PoolSpec]) -> tuple[Placement, ...]:
    """`pool:` + `replicas:` for one pool, or `placements:` (one per pool) for a model spread over pools."""
    if node.has("placements") and (node.has("pool") or node.has("replicas")):
        raise ConfigError(f"{node.sub('placements')}: give either pool/replicas or placements, not both")
    items = node.items("placements") if node.has("placements") else [node]
    out = []
    for item in items:
        pool = item.str("pool", required=True)
        if pool not in pools:
            raise ConfigError(f"{item.sub('pool')}: no pool named {pool!r}; pools in this stack: "
                              f"{', '.join(pools) or '(none)'}")
        replicas = item.node("replicas")
        lo, hi = replicas.int("min", 1, minimum=0), replicas.int("max", 1, minimum=1)
        replicas.done()
        if lo > hi:
            raise ConfigError(f"{replicas.sub('min')}: {lo} is above max {hi}")
        out.append(Placement(pool, lo, hi))
        if item is not node:
            item.done()
    unique_names(f"{node.path}.placements", [p.pool for p in out])
    if not out:
        raise ConfigError(f"{node.sub('placements')}: list at least one placement")
    return tuple(out)


def parse_engines(node: Node) -> Mapping[str, EngineImage]:
    out = {}
    for engine, (image, version) in DEFAULT_ENGINES.items():
        sub = node.node(engine)
        version = sub.str("version", version, pattern=r"v?\d+\.\d+(\.\d+)?([.-]?(post|rc)\d+)?",
                          hint="pin a release such as v0.28.0 (never latest)")
        image = sub.str("image", image)
        problem = repository_problem(image)
        if problem:
            raise ConfigError(f"{sub.sub('image')}: {image!r} {problem} (version: {version})")
        efa = sub.str("efaImage", DEFAULT_EFA_IMAGES.get((engine, version)))
        problem = efa is not None and pinned_reference_problem(efa)
        if problem:
            raise ConfigError(f"{sub.sub('efaImage')}: {efa!r} {problem}")
        out[engine] = EngineImage(engine, image, version, efa)
        sub.done()
    node.done()
    return out


def parse_gateway(node: Node, models: set[str], secret_names: frozenset[str]) -> GatewaySpec:
    fallbacks = {}
    fb_node = node.node("fallbacks")
    for model in list(fb_node.data):
        if model not in models:
            raise ConfigError(f"{fb_node.sub(str(model))}: no model named {model!r} in this stack; "
                              f"models: {', '.join(sorted(models))}")
        fb = fb_node.node(str(model))
        provider = fb.str("provider", required=True, choices=FALLBACK_PROVIDERS)
        fallbacks[str(model)] = FallbackSpec(provider, fb.str("model", required=True),
                                             _secret(fb, "apiKey", secret_names, required=True),
                                             fb.str("apiBase", pattern=r"https://\S+", hint="expected an https URL"))
        fb.done()
        if provider in ("openai-compatible", "zai") and fallbacks[str(model)].api_base is None:
            raise ConfigError(f"{fb.sub('apiBase')}: a {provider} fallback needs apiBase (the provider's "
                              "OpenAI-compatible base URL, e.g. https://api.z.ai/api/paas/v4)")
    fb_node.done()
    teams = []
    for item in node.items("teams"):
        team = TeamSpec(item.str("name", required=True, pattern=NAME, hint=NAME_HINT),
                        _secret(item, "apiKey", secret_names, required=True),
                        item.int("rpm", None, minimum=1), item.int("tpm", None, minimum=1),
                        item.strs("models", (), choices=sorted(models)),
                        item.str("fallback", "allowed", choices=FALLBACK_POLICIES))
        item.done()
        teams.append(team)
    unique_names("gateway.teams", [t.name for t in teams])
    spec = GatewaySpec(
        exposure=node.str("exposure", "internal", choices=("internal", "internet-facing")),
        allowed_cidrs=node.strs("allowedCidrs", ("10.0.0.0/8",), unique=True),
        certificate_arn=node.str("certificateArn", pattern=r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+",
                                 hint="expected an ACM certificate ARN"),
        master_key=_secret(node, "masterKey", secret_names),
        teams=tuple(teams), fallbacks=fallbacks,
        request_timeout_seconds=node.int("requestTimeoutSeconds", 600, minimum=10),
        num_retries=node.int("numRetries", 1, minimum=0, maximum=5),
        replicas=node.int("replicas", 2, minimum=1, maximum=100),
        redis=_redis(node, secret_names))
    node.done()
    parse_cidrs(node.sub("allowedCidrs"), spec.allowed_cidrs, example="10.0.0.0/8")
    if spec.exposure == "internet-facing" and spec.certificate_arn is None:
        raise ConfigError(f"{node.sub('certificateArn')}: an internet-facing gateway needs TLS; give the ACM "
                          "certificate ARN, or use exposure: internal")
    if spec.exposure == "internet-facing" and "0.0.0.0/0" in spec.allowed_cidrs:
        raise ConfigError(f"{node.sub('allowedCidrs')}: an internet-facing gateway open to 0.0.0.0/0 is refused; "
                          "list the client CIDRs")
    return spec


def _redis(node: Node, secret_names: frozenset[str]) -> RedisSpec | None:
    """gateway.redis: shared rate-limit counters across gateway replicas; absent = per replica."""
    if not node.has("redis"):
        return None
    sub = node.node("redis")
    spec = RedisSpec(sub.str("host", required=True, pattern=r"[A-Za-z0-9.-]+", hint="expected a host name"),
                     sub.int("port", 6379, minimum=1, maximum=65535), _secret(sub, "password", secret_names))
    sub.done()
    return spec


def parse_storage(node: Node, secret_names: frozenset[str]) -> StorageSpec:
    spec = StorageSpec(
        bucket_name=node.str("bucketName"),
        noncurrent_version_days=node.int("noncurrentVersionDays", 30, minimum=1),
        hf_token=_secret(node, "hfToken", secret_names),
        hub_endpoint=node.str("hubEndpoint", pattern=r"modelscope|https?://[^\s/]+(/\S*)?",
                              hint="give a Hugging Face mirror URL such as https://hf-mirror.com, or modelscope"))
    node.done()
    problem = spec.bucket_name and bucket_name_problem(spec.bucket_name)
    if problem:
        raise ConfigError(f"{node.sub('bucketName')}: {spec.bucket_name!r} {problem}")
    return spec
