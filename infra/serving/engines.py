"""Engine workloads as plain manifests (pure: no Pulumi import): one Deployment per model x pool when a
replica fits one node, a LeaderWorkerSet when it spans several, plus its Service and PodDisruptionBudget.

Values may be Pulumi Outputs (the bucket URI); the builders only place them, so tests pass strings.

Where the weights come from (`WeightsPlan`):
  nvme            an init container (s5cmd) first checks the copy job's completion marker in S3 (missing:
                  it exits 1 with a log line saying the copy is not complete), then syncs the model prefix
                  to the node's instance-store RAID0 (hostPath under NVME_ROOT); the engine reads it there.
  runai-streamer  the engine streams s3://... itself (`--load-format runai_streamer`); the same marker
                  check runs first.
  fsx             a PersistentVolumeClaim FSX_CLAIM (FSx for Lustre CSI driver, bound to the bucket)
                  mounted read-only; the model is at /weights/<bucket prefix>.
  hub (no bucket, existing clusters) the engine downloads from Hugging Face into a hostPath cache
                  (HF_CACHE_HOST) that survives restarts, HF_TOKEN from a Secret when the stack gives one.
  local path      the same absolute path must exist on every GPU node (an NFS or local mount); mounted
                  read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from infra.planning.sizing import PORT, DeploymentPlan
from infra.serving import targets, warmstart
from infra.serving.engine_probes import (
    _DRAIN,
    _WORKER_WAIT,
    PORT_NAME,
    drain_budget,
    probes,
    worker_probes,
)
from infra.serving.warmstart import S5CMD_IMAGE
from infra.stack.names import LABEL_MODEL, LABEL_POOL, LABEL_ROLE

NVME_ROOT = "/mnt/k8s-disks/0"            # where the node pools mount the instance-store RAID0
HF_CACHE_HOST = "/var/lib/llm-fleet/hf-cache"
FSX_CLAIM = "llm-fleet-weights"
WEIGHTS_MOUNT = "/weights"
LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
ROLE_ENGINE = "engine"
# on pods that serve the OpenAI API (single-node replicas, LWS leaders), not on headless workers: the
# model's one Service selects them over all its placements
LABEL_SERVES = "llm-fleet/serves"
# the engines' API key (gateway_k8s reads the same Secret): only the gateway may call /v1
ENGINE_KEY_SECRET = "llm-engine-key"
ENGINE_KEY_ITEM = "api-key"
ENGINE_KEY_ENV = "LLMFLEET_ENGINE_API_KEY"

ACCELERATORS: dict[str, dict[str, str]] = {
    "nvidia": {"resource": "nvidia.com/gpu", "taint": "nvidia.com/gpu"},
    "ascend": {"resource": "huawei.com/Ascend910", "taint": "huawei.com/Ascend910"},
}
# vllm-ascend's recommended settings (docs/source/tutorials/models/GLM4.x.md and DeepSeek-V3.1.md, v0.23.0)
ASCEND_ENV = {"HCCL_CONNECT_TIMEOUT": "600", "HCCL_EXEC_TIMEOUT": "600", "HCCL_BUFFSIZE": "512",
              "HCCL_OP_EXPANSION_MODE": "AIV", "OMP_PROC_BIND": "false", "OMP_NUM_THREADS": "1",
              "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}

_FETCH = """\
if ! /s5cmd ls "$MARKER" >/dev/null 2>&1; then
  echo "llm-fleet: weights not ready: $MARKER does not exist, so the copy of $SOURCE to S3 is not complete;" \
       "run the weights copy job for this model and revision, then this pod restarts by itself" >&2
  exit 1
fi
"""


@dataclass(frozen=True)
class WeightsPlan:
    """How one deployment's pods get the weights; built by the component from the stack's storage."""
    method: str                               # nvme | runai-streamer | fsx | hub | local
    source_uri: Any = None                    # s3://bucket/models/<m>/<rev>/ (nvme, runai-streamer)
    marker_uri: Any = None                    # s3://bucket/<prefix>.llm-fleet-complete
    region: str | None = None
    service_account: str | None = None        # reads the bucket (IRSA / Pod Identity)
    fsx_path: str | None = None               # /weights/models/<m>/<rev>/
    hf_id: str | None = None
    revision: str | None = None
    local_path: str | None = None
    hf_token: tuple[str, str] | None = None   # (Secret name, key)
    cache_dir: str | None = None              # hostPath for nvme
    hub_endpoint: str | None = None           # hub: an HF mirror URL or "modelscope" (storage.hubEndpoint)
    compile_cache_dir: str | None = None      # hostPath for the engine's compile caches (per model revision)
    cache_uri: Any = None                     # s3://bucket/compile-cache/<m>/<rev>/<image>/ (restored, saved)


@dataclass(frozen=True)
class EngineSpec:
    """Everything a builder needs for one model on one pool."""
    name: str                                 # Kubernetes name (names.deployment_name)
    namespace: str
    dep: DeploymentPlan
    accelerator: str
    node_selector: dict[str, str]
    vcpus: int
    memory_mib: int
    gpus_per_node: int
    weights: WeightsPlan
    grace_seconds: int                        # terminationGracePeriodSeconds: in-flight requests finish
    extra_labels: dict[str, str] = field(default_factory=dict)
    api_key: bool = True                      # the engine asks for ENGINE_KEY_SECRET's key on /v1
    fallback_pools: tuple[str, ...] = ()      # on-demand pools this spot workload may also use (placement.py)

    @property
    def engine(self) -> str:
        return self.dep.engine

    @property
    def multi_node(self) -> bool:
        return self.dep.layout.nodes > 1


def labels(spec: EngineSpec) -> dict[str, str]:
    return {LABEL_ROLE: ROLE_ENGINE, LABEL_MODEL: spec.dep.model, LABEL_POOL: spec.dep.pool,
            "app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": "llm-fleet", **spec.extra_labels}


def selector(spec: EngineSpec) -> dict[str, str]:
    return {LABEL_ROLE: ROLE_ENGINE, LABEL_MODEL: spec.dep.model, LABEL_POOL: spec.dep.pool}


def model_location(spec: EngineSpec) -> tuple[Any, list[str]]:
    """(model argument, extra engine args) for the weights method."""
    w = spec.weights
    if w.method == "nvme":
        return WEIGHTS_MOUNT, []
    if w.method == "runai-streamer":
        return w.source_uri, ["--load-format", "runai_streamer"]
    if w.method == "fsx":
        return w.fsx_path, []
    if w.method == "local":
        return w.local_path, []
    return w.hf_id, ["--revision", w.revision or "main"]


def command(spec: EngineSpec, role: str) -> list[Any]:
    """role: single | leader | worker. LWS injects LWS_* env, expanded by the kubelet in $(...)."""
    model, extra = model_location(spec)
    args = list(spec.dep.engine_args) + extra
    if spec.engine == "vllm":
        cmd: list[Any] = ["vllm", "serve", model, *args]
        if (ascend := targets.ascend_launch(spec, role)) is not None:
            return cmd + ascend
        if role != "single":
            cmd += ["--distributed-executor-backend", "mp", "--nnodes", "$(LWS_GROUP_SIZE)",
                    "--master-addr", "$(LWS_LEADER_ADDRESS)"]
            cmd += ["--node-rank", "0"] if role == "leader" else ["--node-rank", "$(LWS_WORKER_INDEX)", "--headless"]
        return cmd
    cmd = ["python3", "-m", "sglang.launch_server", "--model-path", model, *args]
    if spec.api_key and role != "worker":
        cmd += ["--api-key", f"$({ENGINE_KEY_ENV})"]      # the kubelet expands it from the Secret-backed env
    if role != "single":
        cmd += ["--dist-init-addr", "$(LWS_LEADER_ADDRESS):20000", "--nnodes", "$(LWS_GROUP_SIZE)",
                "--node-rank", "0" if role == "leader" else "$(LWS_WORKER_INDEX)"]
    return cmd


def _share(spec: EngineSpec) -> float:
    return 1.0 if spec.multi_node else 1.0 / spec.dep.replicas_per_node


def gpus_per_pod(spec: EngineSpec) -> int:
    return spec.dep.layout.gpus // spec.dep.layout.nodes


def resources(spec: EngineSpec) -> dict[str, Any]:
    """GPUs per pod. Requests stay modest so a pod fits hosts smaller than the catalog's (on-prem):
    4 CPUs per GPU + 4, memory for the pod's weight shard + 20% (at least 16 Gi), never above 80% of
    the pod's share of the node. The memory limit is that 80% share plus /dev/shm (which counts
    against it): page cache from reading weights must not OOM-kill a replica."""
    gpus = gpus_per_pod(spec)
    share = _share(spec)
    cap_cpu = max(1, int(spec.vcpus * 0.8 * share))
    cap_mem = max(2, int(spec.memory_mib / 1024 * 0.8 * share))
    cpu = min(cap_cpu, 4 * gpus + 4)
    shard_gib = spec.dep.weights_gb * 1e9 / 2**30 / spec.dep.layout.nodes / spec.dep.replicas_per_node
    mem_gib = min(cap_mem, max(16, math.ceil(shard_gib * 1.2)))
    gpu = ACCELERATORS[spec.accelerator]["resource"]
    requests = {"cpu": str(cpu), "memory": f"{mem_gib}Gi", gpu: str(gpus)}
    limits = {"memory": f"{cap_mem + shm_gib(spec)}Gi", gpu: str(gpus)}
    fabric = targets.fabric_resources(spec)
    return {"requests": {**requests, **fabric}, "limits": {**limits, **fabric}}


def shm_gib(spec: EngineSpec) -> int:
    """Shared memory for NCCL / HCCL and engine IPC: 1/8 of the pod's memory share, 1..64 GiB."""
    return max(1, min(64, int(spec.memory_mib / 1024 * _share(spec)) // 8))


def ready_timeout_seconds(spec: EngineSpec) -> int:
    """vLLM's API server waits VLLM_ENGINE_READY_TIMEOUT_S (default 600 s) for the engine core to load,
    then exits; a 756 GB model takes far longer. It gets the planner's whole startup budget, so the
    startup probe, sized from the same figure, is what decides."""
    return max(600, spec.dep.load.probe_seconds)


def env(spec: EngineSpec, role: str = "single") -> list[dict[str, Any]]:
    w = spec.weights
    out: list[dict[str, Any]] = []
    if spec.engine == "vllm":
        out.append({"name": "VLLM_ENGINE_READY_TIMEOUT_S", "value": str(ready_timeout_seconds(spec))})
    args = spec.dep.engine_args
    if spec.engine == "sglang" and "--speculative-algorithm" in args and \
            args[args.index("--speculative-algorithm") + 1] == "EAGLE":
        # the SGLang GLM-5.1 cookbook runs EAGLE with the v2 speculative path (sgl-cookbook-glm51)
        out.append({"name": "SGLANG_ENABLE_SPEC_V2", "value": "1"})
    if spec.api_key and role != "worker":
        ref = {"secretKeyRef": {"name": ENGINE_KEY_SECRET, "key": ENGINE_KEY_ITEM}}
        # vLLM reads VLLM_API_KEY (guards /v1 only: /health and /metrics stay open for probes and Prometheus)
        out.append({"name": "VLLM_API_KEY" if spec.engine == "vllm" else ENGINE_KEY_ENV, "valueFrom": ref})
    if spec.accelerator == "ascend":
        out.append({"name": "ASCEND_RT_VISIBLE_DEVICES",
                    "value": ",".join(str(i) for i in range(gpus_per_pod(spec)))})
        out += [{"name": k, "value": v} for k, v in ASCEND_ENV.items()]
    if spec.multi_node and spec.engine == "vllm":
        out.append({"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    out += targets.fabric_env(spec)
    if w.region and w.method in ("nvme", "runai-streamer"):
        out += [{"name": "AWS_REGION", "value": w.region}, {"name": "AWS_DEFAULT_REGION", "value": w.region}]
    out += warmstart.compile_cache_env(w.compile_cache_dir)
    if w.method == "hub":
        out.append({"name": "HF_HOME", "value": "/hf-cache"})
        out += targets.hub_env(spec, w.hub_endpoint)
        if w.hf_token:
            ref = {"name": w.hf_token[0], "key": w.hf_token[1]}
            out.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return out


def volumes(spec: EngineSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, engine container mounts)."""
    w = spec.weights
    vols: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(spec)}Gi"}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if w.method == "nvme":
        vols.append({"name": "weights", "hostPath": {"path": w.cache_dir, "type": "DirectoryOrCreate"}})
        mounts.append({"name": "weights", "mountPath": WEIGHTS_MOUNT, "readOnly": True})
    elif w.method == "fsx":
        vols.append({"name": "weights", "persistentVolumeClaim": {"claimName": FSX_CLAIM, "readOnly": True}})
        mounts.append({"name": "weights", "mountPath": WEIGHTS_MOUNT, "readOnly": True})
    elif w.method == "local":
        vols.append({"name": "weights", "hostPath": {"path": w.local_path, "type": "Directory"}})
        mounts.append({"name": "weights", "mountPath": w.local_path, "readOnly": True})
    elif w.method == "hub":
        vols.append({"name": "hf-cache", "hostPath": {"path": HF_CACHE_HOST, "type": "DirectoryOrCreate"}})
        mounts.append({"name": "hf-cache", "mountPath": "/hf-cache"})
    if (cache := warmstart.compile_cache_volume(w.compile_cache_dir)) is not None:
        vols.append(cache)
        mounts.append({"name": warmstart.CACHE_VOLUME, "mountPath": warmstart.CACHE_MOUNT})
    return vols, mounts


def init_containers(spec: EngineSpec) -> list[dict[str, Any]]:
    w = spec.weights
    if w.method not in ("nvme", "runai-streamer"):
        return []
    script = (_FETCH + (warmstart.sync_script() if w.method == "nvme" else "")
              + (warmstart.RESTORE_CACHE if w.cache_uri else ""))
    env_vars = [{"name": "SOURCE", "value": w.source_uri}, {"name": "MARKER", "value": w.marker_uri},
                {"name": "TARGET", "value": WEIGHTS_MOUNT}, {"name": "AWS_REGION", "value": w.region}]
    container: dict[str, Any] = {
        "name": "fetch-weights" if w.method == "nvme" else "check-weights", "image": S5CMD_IMAGE,
        "command": ["/bin/sh", "-ec", script], "env": env_vars,
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}}
    mounts = [{"name": "weights", "mountPath": WEIGHTS_MOUNT}] if w.method == "nvme" else []
    if w.cache_uri:
        env_vars.append({"name": "CACHE_URI", "value": w.cache_uri})
        mounts.append({"name": warmstart.CACHE_VOLUME, "mountPath": warmstart.CACHE_MOUNT})
    if mounts:
        container["volumeMounts"] = mounts
    return [container]


def container(spec: EngineSpec, role: str) -> dict[str, Any]:
    _, mounts = volumes(spec)
    c: dict[str, Any] = {"name": "engine", "image": spec.dep.engine_image, "command": command(spec, role),
                         "env": env(spec, role), "resources": resources(spec), "volumeMounts": mounts}
    if role != "worker":
        c["ports"] = [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}]
        c.update(probes(spec))
        drain = _DRAIN.format(budget=drain_budget(spec), port=PORT)
        c["lifecycle"] = {"preStop": {"exec": {"command": ["python3", "-c", drain]}}}
    else:
        c.update(worker_probes(spec))
        wait = _WORKER_WAIT.format(budget=drain_budget(spec), port=PORT)
        c["lifecycle"] = {"preStop": {"exec": {"command": ["python3", "-c", wait]}}}
    if spec.multi_node:
        c["securityContext"] = {"capabilities": {"add": ["IPC_LOCK"]}}
    return c


def pod_spec(spec: EngineSpec, role: str) -> dict[str, Any]:
    vols, _ = volumes(spec)
    taint = ACCELERATORS[spec.accelerator]["taint"]
    w = spec.weights
    saver = warmstart.save_cache_container(w.cache_uri, w.region, PORT) if role != "worker" else None
    pod: dict[str, Any] = {
        "containers": [container(spec, role), *([saver] if saver else [])],
        "volumes": vols,
        "nodeSelector": dict(spec.node_selector),
        "tolerations": [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}] + [
            {"key": LABEL_POOL, "operator": "Equal", "value": p, "effect": "NoSchedule"}
            for p in (spec.dep.pool, *spec.fallback_pools)],
        "terminationGracePeriodSeconds": spec.grace_seconds,
    }
    if spec.fallback_pools:
        # spot first, on-demand fallback: the pool label may be any of these; the autoscaler's priority
        # expander picks the spot group first (infra.planning.placement)
        pod["nodeSelector"].pop(LABEL_POOL, None)
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": LABEL_POOL, "operator": "In",
                                   "values": [spec.dep.pool, *spec.fallback_pools]}]}]}}}
    inits = init_containers(spec)
    if inits:
        pod["initContainers"] = inits
    if spec.weights.service_account and spec.weights.method in ("nvme", "runai-streamer"):
        pod["serviceAccountName"] = spec.weights.service_account
    return pod


def template(spec: EngineSpec, role: str) -> dict[str, Any]:
    # safe-to-evict false: cluster-autoscaler must not move a replica that took half an hour to load;
    # the node scales down when KEDA removes the pod.
    pod_labels = labels(spec) if role == "worker" else {**labels(spec), LABEL_SERVES: "api"}
    return {"metadata": {"labels": pod_labels,
                         "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                                         "kubectl.kubernetes.io/default-container": "engine"}},
            "spec": pod_spec(spec, role)}


def deployment(spec: EngineSpec) -> dict[str, Any]:
    """One node per replica. A replica that fills its node rolls with maxSurge 0 (a surge pod could
    never be placed in a pool sized to its replicas); small ones surge first."""
    whole_node = gpus_per_pod(spec) >= spec.gpus_per_node
    rolling = {"maxSurge": 0, "maxUnavailable": 1} if whole_node else {"maxSurge": 1, "maxUnavailable": 0}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec)},
            "spec": {"replicas": spec.dep.min_replicas, "selector": {"matchLabels": selector(spec)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
                     "template": template(spec, "single")}}


def leader_worker_set(spec: EngineSpec) -> dict[str, Any]:
    """Several nodes per replica (kubernetes-sigs/lws v1): a group restarts as a whole."""
    return {"apiVersion": LWS_API, "kind": "LeaderWorkerSet",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec)},
            "spec": {"replicas": spec.dep.min_replicas, "startupPolicy": "LeaderCreated",
                     "rolloutStrategy": {"type": "RollingUpdate",
                                         "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}},
                     "leaderWorkerTemplate": {"size": spec.dep.layout.nodes,
                                              "restartPolicy": "RecreateGroupOnPodRestart",
                                              "leaderTemplate": template(spec, "leader"),
                                              "workerTemplate": template(spec, "worker")}}}


def workload(spec: EngineSpec) -> dict[str, Any]:
    return leader_worker_set(spec) if spec.multi_node else deployment(spec)


def service_name(model: str) -> str:
    """The one Service of a model (its placements' Deployments / LeaderWorkerSets are `<model>-<pool>`)."""
    return f"{model}-engine"[:63].rstrip("-")


def model_selector(model: str) -> dict[str, str]:
    return {LABEL_ROLE: ROLE_ENGINE, LABEL_MODEL: model, LABEL_SERVES: "api"}


def service(model: str, namespace: str) -> dict[str, Any]:
    """ClusterIP in front of every placement of the model (base, spot, peak): the pods that serve the API
    (single-node replicas, LWS leaders). kube-proxy sends only to Ready endpoints, so a placement at zero
    or still loading is never picked, and the gateway falls back only when no replica is Ready."""
    meta_labels = {LABEL_ROLE: ROLE_ENGINE, LABEL_MODEL: model, "app.kubernetes.io/part-of": "llm-fleet"}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(model), "namespace": namespace, "labels": meta_labels},
            "spec": {"type": "ClusterIP", "selector": model_selector(model),
                     "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]}}


def pod_disruption_budget(spec: EngineSpec) -> dict[str, Any]:
    """Voluntary evictions (node drains, upgrades) take one engine pod at a time."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(spec)}}}


def backend_url(model: str, namespace: str) -> str:
    return f"http://{service_name(model)}.{namespace}.svc.cluster.local:{PORT}/v1"
