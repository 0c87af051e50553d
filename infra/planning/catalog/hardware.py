"""What the hardware catalog adds beyond EC2's figures: which precisions an accelerator vendor runs,
how multi-node replicas talk, and what an owned (on-prem) server costs per hour. Pure."""

from __future__ import annotations

from dataclasses import dataclass

# Which precisions an accelerator vendor runs. Ascend 910B has no FP8 unit and runs msModelSlim's
# int8 / int4-weight checkpoints (`--quantization ascend`); the CUDA engines do not load those.
VENDOR_PRECISIONS = {"nvidia": ("bf16", "fp8", "int4"), "huawei": ("bf16", "w8a8", "w4a8")}
# How the nodes of a multi-node replica talk: EFA only exists on AWS p-shapes; on-prem and GPU-cloud
# HGX use InfiniBand or RoCE through an RDMA device plugin; Ascend uses HCCL over the NPUs' own RoCE.
INTERCONNECTS = ("efa", "infiniband", "roce", "hccs-roce", "none")


@dataclass(frozen=True)
class Amortization:
    """An on-prem server's cost per node-hour: purchase spread over its service life, plus power."""
    capex_usd: float
    months: int
    power_kw: float
    usd_per_kwh: float

    @property
    def capex_hourly_usd(self) -> float:
        return self.capex_usd / (self.months * 365 * 24 / 12)

    @property
    def power_hourly_usd(self) -> float:
        return self.power_kw * self.usd_per_kwh

    @property
    def hourly_usd(self) -> float:
        return self.capex_hourly_usd + self.power_hourly_usd
