"""The stack file's sections, key by key: each parser builds one frozen dataclass of infra/stack/spec.py and
refuses what cannot work with the key path, the value and what would (see `reader.ConfigError`).
Called only by `config.parse_config`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from infra.stack.reader import ConfigError, Node
from infra.stack.spec import (
    ClusterSpec,
    EngineImage,
    ExistingCluster,
    FallbackSpec,
    GatewaySpec,
    JobsSpec,
    ModelSpec,
    MonitoringSpec,
    NetworkSpec,
    Placement,
    PoolSpec,
    RedisSpec,
    SecretRef,
    StorageSpec,
    TeamSpec,
    Throughput,
)
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
CRON = r"(\S+\s+){4}\S+"


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
        raise ConfigError(f"{ref.path}.pulumiSecret: {pulumi_key!r} is not a secret in this stack; run "
                          f"`pulumi config set --secret {pulumi_key} <value>`")
    return SecretRef(secrets_manager_arn=arn, pulumi_key=pulumi_key)


def parse_network(node: Node, environment: str) -> NetworkSpec:
    existing = node.str("existingVpcId", pattern=r"vpc-[0-9a-f]{8,17}", hint="expected vpc-<hex>")
    private = node.strs("existingPrivateSubnetIds", pattern=r"subnet-[0-9a-f]{8,17}", hint="expected subnet-<hex>")
    public = node.strs("existingPublicSubnetIds", pattern=r"subnet-[0-9a-f]{8,17}", hint="expected subnet-<hex>")
    spec = NetworkSpec(
        cidr=node.str("cidr", "10.0.0.0/16", pattern=r"\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-4])",
                      hint="expected an IPv4 CIDR between /16 and /24, e.g. 10.0.0.0/16"),
        az_count=node.int("azCount", 3 if environment == "prod" else 2, minimum=2, maximum=6),
        nat=node.str("nat", "per-az" if environment == "prod" else "single", choices=("single", "per-az")),
        interface_endpoints=node.strs("interfaceEndpoints", (), choices=("ecr.api", "ecr.dkr", "sts", "logs")),
        existing_vpc_id=existing, existing_private_subnet_ids=private, existing_public_subnet_ids=public)
    node.done()
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
    spec = ClusterSpec(
        name=node.str("name", f"{PROJECT}-{stack}", pattern=NAME, hint=NAME_HINT),
        kubernetes_version=node.str("kubernetesVersion", "1.33", pattern=r"1\.\d{2}",
                                    hint="expected a minor version such as \"1.33\" (quote it)"),
        endpoint_public=node.bool("endpointPublic", True),
        endpoint_private=node.bool("endpointPrivate", True),
        public_access_cidrs=node.strs("publicAccessCidrs", ("0.0.0.0/0",), pattern=r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}",
                                      hint="expected an IPv4 CIDR"),
        logging=node.strs("logging", ("api", "audit", "authenticator"),
                          choices=("api", "audit", "authenticator", "controllerManager", "scheduler")),
        admin_role_arns=node.strs("adminRoleArns", (), pattern=r"arn:aws[a-z-]*:iam::\d{12}:role/.+",
                                  hint="expected an IAM role ARN"),
        system_instance_type=system.str("instanceType", "m7i.xlarge"),
        system_min=system.int("minSize", 2, minimum=1), system_max=system.int("maxSize", 4, minimum=1),
        accelerator=node.str("accelerator", "nvidia", choices=("nvidia", "ascend")),
        existing=existing)
    system.done()
    node.done()
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
    types = node.strs("instanceTypes", pattern=r"[a-z0-9][a-z0-9-]*\.[a-z0-9]+",
                      hint="expected an EC2 type like p5en.48xlarge (or a catalog shape such as ascend-910b.8x)")
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
        az_ids=node.strs("azIds", (), pattern=r"[a-z]{3,4}\d-az\d", hint="expected an AZ id such as use1-az4"),
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
    return pool


def parse_node_selector(node: Node) -> tuple[tuple[str, str], ...]:
    """`nodeSelector: {label: value}` for an existing cluster's pool (label keys as Kubernetes writes them)."""
    if not node.has("nodeSelector"):
        return ()
    sel = node.node("nodeSelector")
    out = []
    for key in list(sel.data):
        if not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", str(key)):
            raise ConfigError(f"{sel.sub(str(key))}: {key!r} is not a Kubernetes label key")
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
    elif not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise ConfigError(f"{node.sub('source')}: {source!r} is neither a Hugging Face id (org/name) nor a local path")
    placements = _placements(node, pools)
    throughput = None
    if node.has("throughput"):
        tp = node.node("throughput")
        throughput = Throughput(tp.float("outputTokensPerSecond", required=True, minimum=1),
                                tp.float("utilization", 0.5, minimum=0.01, maximum=1.0))
        tp.done()
    spec = ModelSpec(
        name=name, source=source, revision=node.str("revision", "main"),
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
        efa = sub.str("efaImage", DEFAULT_EFA_IMAGES.get((engine, version)),
                      pattern=r"\S+(:[\w.-]+|@sha256:[0-9a-f]{64})", hint="pin the image by tag or digest")
        out[engine] = EngineImage(engine, sub.str("image", image), version, efa)
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
        allowed_cidrs=node.strs("allowedCidrs", ("10.0.0.0/8",), pattern=r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}",
                                hint="expected an IPv4 CIDR"),
        certificate_arn=node.str("certificateArn", pattern=r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+",
                                 hint="expected an ACM certificate ARN"),
        master_key=_secret(node, "masterKey", secret_names),
        teams=tuple(teams), fallbacks=fallbacks,
        request_timeout_seconds=node.int("requestTimeoutSeconds", 600, minimum=10),
        num_retries=node.int("numRetries", 1, minimum=0, maximum=5),
        replicas=node.int("replicas", 2, minimum=1),
        redis=_redis(node, secret_names))
    node.done()
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


def parse_monitoring(node: Node) -> MonitoringSpec:
    spec = MonitoringSpec(
        prometheus=node.str("prometheus", "install", choices=("install", "existing", "off")),
        prometheus_url=node.str("prometheusUrl", pattern=r"https?://\S+", hint="expected an http(s) URL"),
        grafana=node.bool("grafana", True), dcgm_exporter=node.bool("dcgmExporter", True),
        alerts=node.bool("alerts", True),
        ttft_p99_seconds=node.float("ttftP99Seconds", 5.0, minimum=0.1))
    node.done()
    if spec.prometheus == "existing" and spec.prometheus_url is None:
        raise ConfigError(f"{node.sub('prometheusUrl')}: prometheus: existing needs the URL of that Prometheus")
    return spec


def parse_storage(node: Node, secret_names: frozenset[str]) -> StorageSpec:
    spec = StorageSpec(
        bucket_name=node.str("bucketName", pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
                             hint="expected an S3 bucket name (3-63 lowercase letters, digits, dots, dashes)"),
        noncurrent_version_days=node.int("noncurrentVersionDays", 30, minimum=1),
        hf_token=_secret(node, "hfToken", secret_names),
        hub_endpoint=node.str("hubEndpoint", pattern=r"modelscope|https?://[^\s/]+(/\S*)?",
                              hint="give a Hugging Face mirror URL such as https://hf-mirror.com, or modelscope"))
    node.done()
    return spec


def parse_jobs(node: Node) -> JobsSpec:
    spec = JobsSpec(
        github_repo=node.str("githubRepo", pattern=r"[\w.-]+/[\w.-]+", hint="expected owner/name"),
        github_oidc_provider_arn=node.str(
            "githubOidcProviderArn",
            pattern=r"arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com",
            hint="expected arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com"),
        in_cluster=node.bool("inCluster", False),
        image=node.str("image", pattern=r"\S+(:[\w.-]+|@sha256:[0-9a-f]{64})",
                       hint="pin the image by tag or digest, e.g. ghcr.io/acme/llm-fleet-jobs:0.1.0"),
        reconcile_cron=node.str("reconcileCron", "*/5 * * * *", pattern=CRON, hint="expected 5 cron fields"),
        sweep_cron=node.str("sweepCron", "0 * * * *", pattern=CRON, hint="expected 5 cron fields"),
        drain_timeout_seconds=node.int("drainTimeoutSeconds", 900, minimum=0, maximum=7200),
        prometheus_url=node.str("prometheusUrl", pattern=r"https?://\S+", hint="expected an http(s) URL"))
    node.done()
    if spec.in_cluster and spec.image is None:
        raise ConfigError(f"{node.sub('image')}: inCluster jobs need an image with llm-fleet installed "
                          "(build Dockerfile.jobs and push it to your registry), pinned by tag or digest")
    if spec.image is not None and "@" not in spec.image and spec.image.rsplit(":", 1)[-1] == "latest":
        raise ConfigError(f"{node.sub('image')}: {spec.image!r} is not pinned; use a version tag or a digest")
    if spec.github_oidc_provider_arn and not spec.github_repo:
        raise ConfigError(f"{node.sub('githubRepo')}: the GitHub OIDC trust needs the repository (owner/name)")
    return spec
