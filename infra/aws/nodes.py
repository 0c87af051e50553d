"""What a GPU node carries: its taint, the labels the add-ons select on, the cluster-autoscaler template
keys. Shared by the node pools that set them and the add-ons that select on them, so neither imports
the other.
"""

from __future__ import annotations

from infra.stack.spec import PoolSpec

GPU_TAINT_KEY, GPU_TAINT_VALUE = "nvidia.com/gpu", "true"
CA_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
CA_GPU_LABEL = "k8s.amazonaws.com/accelerator"   # cluster-autoscaler's AWS GPULabel (aws_cloud_provider.go)
DEVICE_PLUGIN_LABEL = "llm-fleet/device-plugin"   # AL2023 nodes run NVIDIA's DaemonSet; Bottlerocket ships one
EFA_LABEL = "vpc.amazonaws.com/efa.present"


def is_bottlerocket(pool: PoolSpec) -> bool:
    return pool.ami_type.startswith("BOTTLEROCKET")
