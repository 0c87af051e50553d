"""`shapes:` in the stack file: node shapes the catalog does not have (on-prem HGX or Atlas servers, a
GPU cloud's nodes) with their price, so sizing, cost and break-even treat them like catalog shapes.

    shapes:
      - name: hgx-h100.8x                   # referenced by pools[].instanceTypes
        accelerator: nvidia                 # nvidia | ascend (must match cluster.accelerator)
        device: h100
        count: 8                            # accelerators per node
        deviceMemoryGB: 80
        vcpus: 224                          # optional host figures (requests stay below them)
        memoryGB: 2048
        networkGbps: 3200
        interconnect: infiniband            # infiniband | roce (NVIDIA, with rdmaResource) | hccs-roce (Ascend) | none
        rdmaResource: rdma/hca_shared_devices_a
        provider: onprem                    # onprem, or the GPU cloud's name
        # either a GPU cloud's price ...     hourlyUSD: 23.60
        # ... or an on-prem amortization:
        capexUSD: 260000
        months: 36
        powerKW: 12.5
        usdPerKWh: 0.12
        priceSource: "seed figures: 8x H100 server $200-320k, 10-15 kW"

Called by `config.parse_config` only; pure.
"""

from __future__ import annotations

from infra.stack.reader import ConfigError, Node
from infra.stack.spec import Amortized, ShapeSpec

SHAPE_NAME = r"[a-z0-9][a-z0-9-]*\.[a-z0-9]+"
ACCELERATORS = {"nvidia": ("infiniband", "roce", "none"), "ascend": ("hccs-roce", "none")}
RESOURCE = r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_AMORTIZATION = ("capexUSD", "months", "powerKW", "usdPerKWh")


def parse_shapes(nodes: list[Node]) -> tuple[ShapeSpec, ...]:
    out = [parse_shape(n) for n in nodes]
    seen: set[str] = set()
    for shape, node in zip(out, nodes, strict=True):
        if shape.name in seen:
            raise ConfigError(f"{node.sub('name')}: the shape name {shape.name!r} is used twice")
        seen.add(shape.name)
    return tuple(out)


def parse_shape(node: Node) -> ShapeSpec:
    name = node.str("name", required=True, pattern=SHAPE_NAME,
                    hint="name it like an instance type, with a dot, e.g. hgx-h100.8x")
    accelerator = node.str("accelerator", required=True, choices=tuple(ACCELERATORS))
    interconnect = node.str("interconnect", "none", choices=("efa", "infiniband", "roce", "hccs-roce", "none"))
    if interconnect == "efa":
        raise ConfigError(f"{node.sub('interconnect')}: 'efa' exists only on AWS p-shapes (use the catalog's "
                          "p5/p5en types on EKS); on-prem and GPU-cloud nodes use infiniband or roce with "
                          "rdmaResource (NVIDIA) or hccs-roce (Ascend)")
    if interconnect not in ACCELERATORS[accelerator]:
        raise ConfigError(f"{node.sub('interconnect')}: {interconnect!r} is not an interconnect of {accelerator} "
                          f"nodes; use one of: {', '.join(ACCELERATORS[accelerator])}")
    rdma = node.str("rdmaResource", pattern=RESOURCE,
                    hint="expected the extended resource the RDMA device plugin advertises, e.g. "
                         "rdma/hca_shared_devices_a or nvidia.com/hostdev")
    if rdma is not None and interconnect not in ("infiniband", "roce"):
        raise ConfigError(f"{node.sub('rdmaResource')}: only an infiniband or roce shape requests an RDMA device")
    hourly = node.float("hourlyUSD", None, minimum=0)
    given = [k for k in _AMORTIZATION if node.has(k)]
    amortized = None
    if given:
        if missing := [k for k in _AMORTIZATION if k not in given]:
            raise ConfigError(f"{node.sub(missing[0])}: an on-prem amortization needs all of "
                              f"{', '.join(_AMORTIZATION)} (missing {', '.join(missing)})")
        amortized = Amortized(node.float("capexUSD", required=True, minimum=1),
                              node.int("months", required=True, minimum=1, maximum=120),
                              node.float("powerKW", required=True, minimum=0),
                              node.float("usdPerKWh", required=True, minimum=0, maximum=5))
    if hourly is not None and amortized is not None:
        raise ConfigError(f"{node.sub('hourlyUSD')}: give hourlyUSD (a GPU cloud) or capexUSD/months/powerKW/"
                          "usdPerKWh (on-prem), not both")
    spec = ShapeSpec(
        name=name, accelerator=accelerator,
        device=node.str("device", "ascend-910b" if accelerator == "ascend" else "h100"),
        count=node.int("count", required=True, minimum=1, maximum=16),
        device_memory_gb=node.float("deviceMemoryGB", required=True, minimum=1, maximum=1024),
        vcpus=node.int("vcpus", 96, minimum=1), memory_gb=node.int("memoryGB", 1024, minimum=8),
        network_gbps=node.float("networkGbps", 100, minimum=1),
        interconnect=interconnect, rdma_resource=rdma,
        provider=node.str("provider", "onprem", pattern=r"[a-z][a-z0-9-]*", hint="e.g. onprem, nebius, coreweave"),
        hourly_usd=hourly, amortized=amortized, price_source=node.str("priceSource"))
    node.done()
    if spec.provider == "aws":
        raise ConfigError(f"{node.sub('provider')}: AWS shapes come from the catalog (infra/planning/catalog/"
                          "gpus.yaml); name the provider of this hardware, e.g. onprem")
    return spec
