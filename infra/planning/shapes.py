"""A stack's own shapes (`shapes:`) as catalog shapes: sizing, cost and break-even read them exactly as
they read gpus.yaml. Pure."""

from __future__ import annotations

from types import MappingProxyType

from infra.planning.catalog import Amortization, Catalog, InstanceShape, load_catalog
from infra.stack.spec import ShapeSpec, StackConfig

VENDORS = {"nvidia": "nvidia", "ascend": "huawei"}


def instance_shape(spec: ShapeSpec) -> InstanceShape:
    a = spec.amortized
    return InstanceShape(
        name=spec.name, gpu_model=spec.device, gpu_vendor=VENDORS[spec.accelerator], gpu_count=spec.count,
        # the catalog keeps MiB as EC2 reports it; a stated GB figure converts exactly back by gpu_memory_gb
        gpu_memory_mib=round(spec.device_memory_gb * 1e9 / 2**20), vcpus=spec.vcpus,
        memory_mib=spec.memory_gb * 1024, nvme_gb=0, network_gbps=spec.network_gbps, efa_interfaces=0,
        on_demand_usd=MappingProxyType({}), spot_discount=0.0, sources=("stack",),
        interconnect=spec.interconnect, rdma_resource=spec.rdma_resource, provider=spec.provider,
        flat_hourly_usd=spec.hourly_usd,
        amortization=None if a is None else Amortization(a.capex_usd, a.months, a.power_kw, a.usd_per_kwh))


def catalog_for(cfg: StackConfig, catalog: Catalog | None = None) -> Catalog:
    """The shipped catalog plus the stack's declared shapes."""
    catalog = catalog or load_catalog()
    if not cfg.shapes:
        return catalog
    return catalog.with_shapes({s.name: instance_shape(s) for s in cfg.shapes})
