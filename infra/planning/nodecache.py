"""Where an engine with `loading: nvme` caches its checkpoint on an EKS GPU node, and whether it fits.
Pure: `build_plan` refuses a pool whose cache would land on a too-small EBS volume (so `fleet plan`
refuses what the program would), and the node pools read the same constants to build the nodes."""

from __future__ import annotations

from collections.abc import Sequence

from infra.planning.catalog import Catalog, load_catalog
from infra.planning.sizing import DeploymentPlan, SizingError
from infra.stack.spec import PoolSpec, StackConfig

# nodeadm mounts the RAID0 at /mnt/k8s-disks/0 and moves /var/lib/kubelet onto it, as Bottlerocket's
# ephemeral-storage bind does: on both AMIs an emptyDir model cache lands on the instance-store NVMe.
NVME_MOUNT = "/mnt/k8s-disks/0"
# One instance-store disk breaks nodeadm's RAID0 on AL2023 >= v20250620 (awslabs/amazon-eks-ami#2386,
# open): RAID only shapes whose instance store is large enough to be several disks.
RAID_MIN_NVME_GB = 1000
# vLLM's image unpacks to 22-28 GB (vllm#27154, PR #22377), plus the OS: room a node's EBS volume keeps.
ENGINE_IMAGE_GB = 40


def _bottlerocket(pool: PoolSpec) -> bool:
    return pool.ami_type.startswith("BOTTLEROCKET")     # as infra.aws.nodes.is_bottlerocket


def raid_nvme(pool: PoolSpec, catalog: Catalog | None = None) -> bool:
    catalog = catalog or load_catalog()
    return all(catalog.instance(t).nvme_gb >= RAID_MIN_NVME_GB for t in pool.instance_types)


def check_weights_cache(cfg: StackConfig, deployments: Sequence[DeploymentPlan],
                        catalog: Catalog | None = None) -> None:
    """Engines with `loading: nvme` cache the checkpoint under NVME_MOUNT, nodeadm's RAID0 of the instance
    store. On Bottlerocket (instance storage at /mnt/.ephemeral) and on shapes whose instance store we do
    not RAID, nothing is mounted there: the cache lands on the pool's EBS volume. Refuse a pool where the
    checkpoint plus the engine image do not fit that volume."""
    catalog = catalog or load_catalog()
    loading = {m.name: m.loading for m in cfg.models}
    for pool in cfg.pools:
        if not _bottlerocket(pool) and raid_nvme(pool, catalog):
            continue
        for dep in (d for d in deployments if d.pool == pool.name):
            need = dep.weights_gb + ENGINE_IMAGE_GB
            if loading.get(dep.model) != "nvme" or need <= pool.disk_gb:
                continue
            why = (f"{pool.ami_type} keeps instance storage at /mnt/.ephemeral" if _bottlerocket(pool) else
                   f"{pool.instance_type} has no instance store we assemble at {NVME_MOUNT}")
            raise SizingError(
                f"pools.{pool.name}: {why}, so `loading: nvme` puts {dep.model}'s {dep.weights_gb:.0f} GB checkpoint "
                f"(plus ~{ENGINE_IMAGE_GB} GB of engine image) on its {pool.disk_gb} GB EBS volume; use amiType "
                f"AL2023_x86_64_NVIDIA on a shape with >= {RAID_MIN_NVME_GB} GB of instance store (e.g. "
                f"p5en.48xlarge), raise pools.{pool.name}.diskGB to {int(need) + 1}, or set "
                f"models.{dep.model}.loading: runai-streamer")
