"""What an engine pod needs that depends on where it runs (pure; engines.py calls these):

- the fabric of a multi-node replica, from the pool shape's interconnect:
    efa          AWS p-shapes on EKS: `vpc.amazonaws.com/efa` devices, libfabric's EFA provider for NCCL;
    infiniband / roce  on-prem or GPU-cloud HGX: the RDMA device resource the stack names (e.g.
                 `rdma/hca_shared_devices_a` from the k8s-rdma-shared-dev-plugin, `nvidia.com/hostdev`
                 from the Network Operator's SR-IOV / host-device setup) and NCCL's IB transport;
    hccs-roce    Ascend: HCCL over the NPUs' own RoCE ports (the device plugin hands them out with the
                 NPUs): HCCL / Gloo socket env and vllm-ascend's multi-node (data-parallel) launcher;
  nothing EFA is ever set off AWS;
- the hub the engine downloads from (`storage.hubEndpoint`): an HF mirror (HF_ENDPOINT) or ModelScope.
"""

from __future__ import annotations

from typing import Any

EFA_RESOURCE = "vpc.amazonaws.com/efa"
POD_IFNAME = "eth0"               # the pod network interface: bootstrap / control traffic
NCCL_IB_HCA = "mlx5"              # NCCL prefix match: every ConnectX HCA the RDMA device gives the pod
ROCE_GID_INDEX = "3"              # RoCE v2 over IPv4 on ConnectX (NVIDIA Network Operator / NCCL docs)
ASCEND_DP_RPC_PORT = "13389"      # vllm-ascend GLM-5 A2 two-node example (--data-parallel-rpc-port)
MODELSCOPE = "modelscope"


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def fabric_resources(spec: Any) -> dict[str, str]:
    """Device requests (= limits) a multi-node engine pod adds for its interconnect."""
    dep = spec.dep
    if not spec.multi_node:
        return {}
    if dep.interconnect == "efa" and dep.efa_interfaces:
        return {EFA_RESOURCE: str(dep.efa_interfaces)}
    if dep.interconnect in ("infiniband", "roce") and dep.rdma_resource:
        return {dep.rdma_resource: "1"}
    return {}


def fabric_env(spec: Any) -> list[dict[str, Any]]:
    """Collective-library env for a multi-node replica (none for a single-node one)."""
    if not spec.multi_node:
        return []
    dep = spec.dep
    if spec.accelerator == "ascend":
        return [_field("HCCL_IF_IP", "status.podIP"), {"name": "HCCL_SOCKET_IFNAME", "value": POD_IFNAME},
                {"name": "GLOO_SOCKET_IFNAME", "value": POD_IFNAME}, {"name": "TP_SOCKET_IFNAME", "value": POD_IFNAME}]
    if dep.interconnect == "efa":
        return [{"name": "FI_PROVIDER", "value": "efa"}, {"name": "FI_EFA_USE_DEVICE_RDMA", "value": "1"}]
    if dep.interconnect in ("infiniband", "roce"):
        out = [{"name": "NCCL_IB_DISABLE", "value": "0"}, {"name": "NCCL_IB_HCA", "value": NCCL_IB_HCA},
               {"name": "NCCL_SOCKET_IFNAME", "value": POD_IFNAME}, {"name": "GLOO_SOCKET_IFNAME", "value": POD_IFNAME}]
        if dep.interconnect == "roce":
            out.append({"name": "NCCL_IB_GID_INDEX", "value": ROCE_GID_INDEX})
        return out
    return []


def ascend_launch(spec: Any, role: str) -> list[str] | None:
    """vllm-ascend's multi-node launcher for an expert-parallel model: one data-parallel rank per node
    (TP over the node's NPUs, experts over all of them); the leader serves the API, workers run headless.
    None when the replica is not laid out that way."""
    if spec.accelerator != "ascend" or spec.engine != "vllm" or not spec.multi_node or spec.dep.layout.dp <= 1:
        return None
    args = ["--data-parallel-size-local", "1", "--data-parallel-address", "$(LWS_LEADER_ADDRESS)",
            "--data-parallel-rpc-port", ASCEND_DP_RPC_PORT]
    if role == "worker":
        args += ["--headless", "--data-parallel-start-rank", "$(LWS_WORKER_INDEX)"]
    return args


def hub_env(spec: Any, endpoint: str | None) -> list[dict[str, Any]]:
    """Point the engine's own download at the stack's hub mirror (only when it downloads from a hub)."""
    if endpoint is None:
        return []
    if endpoint == MODELSCOPE:
        flag = "VLLM_USE_MODELSCOPE" if spec.engine == "vllm" else "SGLANG_USE_MODELSCOPE"
        return [{"name": flag, "value": "True"}, {"name": "MODELSCOPE_CACHE", "value": "/hf-cache/modelscope"}]
    return [{"name": "HF_ENDPOINT", "value": endpoint}]
