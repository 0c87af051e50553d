"""The validated shape of a stack: frozen dataclasses built by `config.py`, read by everything else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.stack.windows import Schedule


@dataclass(frozen=True)
class SecretRef:
    """Where a credential lives: an AWS Secrets Manager ARN or a Pulumi secret config key."""
    secrets_manager_arn: str | None = None
    pulumi_key: str | None = None


@dataclass(frozen=True)
class NetworkSpec:
    cidr: str
    az_count: int
    nat: str                                  # "single" | "per-az"
    interface_endpoints: tuple[str, ...]
    existing_vpc_id: str | None
    existing_private_subnet_ids: tuple[str, ...]
    existing_public_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class ExistingCluster:
    kubeconfig: SecretRef | str               # a path, or a secret holding the kubeconfig
    context: str | None


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    kubernetes_version: str
    endpoint_public: bool
    endpoint_private: bool
    public_access_cidrs: tuple[str, ...]
    logging: tuple[str, ...]
    admin_role_arns: tuple[str, ...]
    system_instance_type: str
    system_min: int
    system_max: int
    accelerator: str                          # "nvidia" | "ascend"
    existing: ExistingCluster | None
    # pinned for kubernetes_version (infra.stack.versions, or the stack's own pins); empty on existing clusters
    addon_versions: Mapping[str, str] = field(default_factory=dict)
    autoscaler_image_tag: str | None = None


@dataclass(frozen=True)
class PoolSpec:
    name: str
    instance_types: tuple[str, ...]
    capacity: str
    min_size: int
    max_size: int
    desired_size: int
    schedule: Schedule | None
    az_ids: tuple[str, ...]
    ami_type: str
    capacity_reservation_id: str | None
    disk_gb: int
    idle_minutes: int | None                  # `fleet sweep`: idle this long -> floor
    # cluster.existing pools: the labels that pick this pool's nodes (empty: `llm-fleet/pool: <name>`,
    # the label the EKS node groups carry); instance_types then name a catalog shape, EC2 or on-prem.
    node_selector: tuple[tuple[str, str], ...] = ()

    @property
    def selector(self) -> dict[str, str]:
        """Node labels engine pods of this pool select."""
        return dict(self.node_selector) if self.node_selector else {"llm-fleet/pool": self.name}

    @property
    def instance_type(self) -> str:
        """The shape the planner sizes against: the first (spot lists are diversified alternatives)."""
        return self.instance_types[0]


@dataclass(frozen=True)
class Placement:
    pool: str
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class Throughput:
    output_tokens_per_second: float           # per replica, measured or stated
    utilization: float                        # share of the month at that rate


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str                               # Hugging Face id, or a local directory with config.json
    revision: str
    precision: str
    engine: str
    placements: tuple[Placement, ...]
    max_context: int | None                   # None: the largest that fits, capped at the model's
    gpu_memory_utilization: float
    kv_cache_dtype: str                       # "auto" | "fp8"
    loading: str
    queue_target: int                         # waiting requests per replica before scaling out
    max_nodes_per_replica: int                # > 1 opts in to multi-node replicas (EFA / RDMA / HCCL shapes)
    extra_args: tuple[str, ...]
    throughput: Throughput | None
    fallback: str = "allowed"                 # "never": no request for this model leaves the cluster

    @property
    def is_local(self) -> bool:
        return self.source.startswith(("/", "./", "../", "~"))


@dataclass(frozen=True)
class EngineImage:
    engine: str
    image: str
    version: str
    # multi-node replicas on EKS (EFA): an image with libfabric + aws-ofi-nccl; None: `image` is used
    efa_image: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.version}"


@dataclass(frozen=True)
class FallbackSpec:
    provider: str
    model: str
    api_key: SecretRef
    api_base: str | None


@dataclass(frozen=True)
class TeamSpec:
    name: str
    api_key: SecretRef
    rpm: int | None
    tpm: int | None
    models: tuple[str, ...]
    fallback: str = "allowed"                 # "never": this team's requests never go to a fallback


@dataclass(frozen=True)
class RedisSpec:
    """Shared rate-limit counters for the gateway replicas (optional)."""
    host: str
    port: int
    password: SecretRef | None


@dataclass(frozen=True)
class GatewaySpec:
    exposure: str                             # "internal" | "internet-facing"
    allowed_cidrs: tuple[str, ...]
    certificate_arn: str | None
    master_key: SecretRef | None
    teams: tuple[TeamSpec, ...]
    fallbacks: Mapping[str, FallbackSpec]
    request_timeout_seconds: int
    num_retries: int
    replicas: int
    redis: RedisSpec | None = None


@dataclass(frozen=True)
class MonitoringSpec:
    prometheus: str                           # "install" | "existing" | "off"
    prometheus_url: str | None
    grafana: bool
    dcgm_exporter: bool
    alerts: bool
    ttft_p99_seconds: float


@dataclass(frozen=True)
class StorageSpec:
    bucket_name: str | None
    noncurrent_version_days: int
    hf_token: SecretRef | None
    # where weights and configs come from: None (huggingface.co / HF_ENDPOINT), an HF mirror URL, or
    # "modelscope"; read by the planner's config fetch, the copy job and the engines' download
    hub_endpoint: str | None = None


@dataclass(frozen=True)
class Amortized:
    """An on-prem server: what it cost, over how many months, and the power it draws."""
    capex_usd: float
    months: int
    power_kw: float
    usd_per_kwh: float


@dataclass(frozen=True)
class ShapeSpec:
    """A node shape the stack declares (`shapes:`): on-prem or GPU-cloud hardware not in the catalog."""
    name: str
    accelerator: str                          # "nvidia" | "ascend"
    device: str                               # e.g. h100, ascend-910b
    count: int                                # accelerators per node
    device_memory_gb: float                   # per accelerator, GB (10^9 bytes)
    vcpus: int
    memory_gb: int                            # host memory
    network_gbps: float
    interconnect: str                         # infiniband | roce | hccs-roce | none
    rdma_resource: str | None                 # RDMA device resource the pods request (infiniband / roce)
    provider: str                             # onprem, or the GPU cloud's name
    hourly_usd: float | None                  # a GPU cloud's price per node-hour
    amortized: Amortized | None               # or an on-prem amortization
    price_source: str | None                  # where the price comes from (URL or note)


@dataclass(frozen=True)
class JobsSpec:
    """The scheduled cost jobs (`fleet reconcile`, `fleet sweep`) and where they run."""
    github_repo: str | None                   # owner/name allowed to assume the jobs role via OIDC
    github_oidc_provider_arn: str | None      # the account's GitHub OIDC provider (one per account)
    in_cluster: bool                          # also run them as Kubernetes CronJobs on the system nodes
    image: str | None                         # image with llm-fleet installed (required when in_cluster)
    reconcile_cron: str
    sweep_cron: str
    drain_timeout_seconds: int
    prometheus_url: str | None                # where the jobs read engine metrics


@dataclass(frozen=True)
class CiSpec:
    """Where CI runs `pulumi preview` / `pulumi up` for this stack: somewhere that reaches the API endpoint."""
    runner: str = "github-hosted"             # "github-hosted" | "codebuild" | "self-hosted"
    runs_on: tuple[str, ...] = ("ubuntu-24.04",)   # labels (github-hosted, self-hosted)
    connection_arn: str | None = None         # codebuild: the CodeConnections connection to GitHub
    bootstrap: bool = False                   # this run creates only the VPC and the runner (README)


@dataclass(frozen=True)
class StackConfig:
    stack: str
    environment: str
    region: str
    network: NetworkSpec
    cluster: ClusterSpec
    pools: tuple[PoolSpec, ...]
    models: tuple[ModelSpec, ...]
    engines: Mapping[str, EngineImage]
    gateway: GatewaySpec
    monitoring: MonitoringSpec
    storage: StorageSpec
    jobs: JobsSpec
    secret_keys: frozenset[str] = frozenset()  # config keys that hold Pulumi secrets
    shapes: tuple[ShapeSpec, ...] = ()        # the stack's own node shapes (cluster.existing pools)
    ci: CiSpec = CiSpec()

    def pool(self, name: str) -> PoolSpec:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)
