"""How long a replica takes to load its weights, per storage choice, and the startup-probe budget.

Pure. Rates come from `catalog/loading.yaml` with their sources; `fleet plan` prints the basis.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class LoadEstimate:
    method: str
    seconds: int
    probe_seconds: int            # startup-probe budget: estimate x factor + margin
    basis: str


@functools.cache
def rates() -> dict[str, Any]:
    return yaml.safe_load(resources.files("infra.planning.catalog").joinpath("loading.yaml").read_text())


def estimate_load(weights_gb: float, method: str, shape: Any, nodes: int) -> LoadEstimate:
    """Cold start of one replica: fetch (each node fetches the whole checkpoint), load, warm up."""
    r = rates()
    warm = r["warmupSeconds"]["large" if weights_gb >= 200 else "small"]
    if method == "nvme":
        fetch = weights_gb / r["s3DownloadGBps"]["value"] + weights_gb / r["nvmeReadGBps"]["value"]
        basis = (f"S3 -> NVMe at {r['s3DownloadGBps']['value']} GB/s, "
                 f"then NVMe read at {r['nvmeReadGBps']['value']} GB/s")
    elif method == "runai-streamer":
        fetch = weights_gb / r["runaiStreamerGBps"]["value"]
        basis = f"streamed from S3 at {r['runaiStreamerGBps']['value']} GB/s"
    else:
        fetch = weights_gb / r["fsxGBps"]["value"]
        basis = f"FSx for Lustre at {r['fsxGBps']['value']} GB/s"
    seconds = int(math.ceil(fetch + warm))
    p = r["probe"]
    probe = max(p["minimumSeconds"], int(math.ceil((seconds * p["factor"] + p["marginSeconds"]) / 60) * 60))
    return LoadEstimate(method, seconds, probe, f"{basis}, {warm} s warm-up (catalog/loading.yaml)")
