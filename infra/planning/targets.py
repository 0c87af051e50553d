"""What a pool's hardware can run: precisions per accelerator vendor and the fabric a multi-node replica
needs where it runs. Pure; sizing raises the refusals these return, each with a way out."""

from __future__ import annotations

from infra.planning.catalog import CatalogModel, InstanceShape
from infra.planning.catalog.hardware import VENDOR_PRECISIONS
from infra.stack.spec import ModelSpec


def accelerator_refusal(spec: ModelSpec, entry: CatalogModel | None, shape: InstanceShape, path: str) -> str | None:
    """FP8 / GPTQ / AWQ on Ascend 910B (no FP8 unit, no such kernels), msModelSlim w8a8 / w4a8 on NVIDIA."""
    runs = VENDOR_PRECISIONS.get(shape.gpu_vendor)
    if runs is None or spec.precision in runs:
        return None
    fits = [c for c in (entry.checkpoints if entry else ()) if c.precision in runs and c.precision != "bf16"]
    way = (f"set precision: {fits[0].precision} with source {fits[0].hf_id}" if fits
           else f"set precision to one of {', '.join(runs)} with a matching checkpoint")
    if shape.gpu_vendor == "huawei":
        why = f"{shape.name} ({shape.gpu_model}: no FP8 or GPTQ/AWQ kernels; Ascend runs bf16 or msModelSlim w8a8/w4a8)"
    else:
        why = f"{shape.name} ({shape.gpu_vendor} {shape.gpu_model}: msModelSlim {spec.precision} is for Ascend NPUs)"
    return f"{path}: {spec.precision} cannot run on {why}; {way}"


def interconnect_refusal(shape: InstanceShape, nodes: int, on_aws: bool, path: str) -> str | None:
    """A multi-node replica needs a fabric its pods can use where they run: EFA only on EKS."""
    if nodes == 1:
        return None
    need = f"needs {nodes} nodes per replica"
    if shape.interconnect == "none":
        return (f"{path}: {need}, and {shape.name} has no multi-node interconnect; use an EFA shape on EKS "
                "(p5, p5e, p5en, p4d, p4de), declare your nodes' InfiniBand/RoCE under shapes:, or a larger GPU shape")
    if shape.interconnect == "efa" and not on_aws:
        return (f"{path}: {need} over EFA, but {shape.name} is an AWS EFA shape and this stack runs on "
                "cluster.existing, where no vpc.amazonaws.com/efa device exists; declare your nodes under shapes: "
                "with interconnect: infiniband or roce and rdmaResource (e.g. rdma/hca_shared_devices_a), and use "
                "that shape in the pool")
    if shape.interconnect in ("infiniband", "roce") and not shape.rdma_resource:
        return (f"{path}: {need} over {shape.interconnect}; shapes.{shape.name}.rdmaResource must name the RDMA "
                "device resource your cluster advertises (e.g. rdma/hca_shared_devices_a from the "
                "k8s-rdma-shared-dev-plugin, or nvidia.com/hostdev)")
    return None
