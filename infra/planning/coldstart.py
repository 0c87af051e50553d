"""Every second of a replica's cold start, term by term, against the physical limit of its shape.

Pure. A cold start is a new node: it launches and joins (node), pulls the engine image (image), gets
the weights (weights), reads them into accelerator memory (load) and warms the engine up (warmup:
compile, autotune, CUDA graphs). Which terms run at the same time depends on what the rendered system
does, so the flags below are read by the serving stack too:

- nvme: the fetch init container runs while the pre-pull DaemonSet pulls the engine image, so the
  image overlaps the weights (PREPULL_IMAGE); every other path fetches inside the engine container,
  after the image.
- the engine's compile caches are restored from the bucket per model revision and uploaded after
  the first ready start (S3 paths: CACHE_PATHS), so only the first start of a revision pays the cold
  warm-up; elsewhere they live on the node (a restart on the same node is warm).

The limit is the same sum for the same shape and checkpoint with nothing but physics left: the node,
the weights at the shape's line rate to S3, and the part of warm-up no cache removes.
Rates and sources: catalog/loading.yaml.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from infra.planning.catalog import read_yaml

PATHS = ("nvme", "runai-streamer", "fsx", "hub", "local")
S3_PATHS = ("nvme", "runai-streamer")       # read from the stack's bucket
PREPULL_IMAGE = True                         # the serving stack renders a pre-pull DaemonSet per pool
CACHE_PATHS = S3_PATHS                       # compile caches restored from / saved to the bucket


@dataclass(frozen=True)
class ColdStart:
    path: str                   # nvme | runai-streamer | fsx | hub | local
    node_seconds: int           # launch + join + GPUs advertised (0: a cluster whose nodes we do not make)
    image_seconds: int          # engine image pull
    weights_seconds: int        # bytes to the node (S3 -> NVMe, stream, FSx, hub download)
    load_seconds: int           # local disk -> accelerator memory (0 where the fetch streams into it)
    warmup_seconds: int         # compile, autotune, CUDA graphs (cached where the caches are restored)
    total_seconds: int          # end to end, overlaps applied
    limit_seconds: int          # node + weights at the shape's line rate + the warm-up no cache removes
    restart_seconds: int        # same node again (restart, scale-from-zero where the node stayed)
    first_start_seconds: int    # the first start of a revision, before any compile cache exists
    overlapped: tuple[str, ...]
    basis: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.total_seconds / self.limit_seconds if self.limit_seconds else 0.0


@functools.cache
def rates() -> dict[str, Any]:
    return read_yaml(resources.files("infra.planning.catalog").joinpath("loading.yaml").read_text(encoding="utf-8"))


def weights_path(loading: str, is_local: bool, existing_cluster: bool) -> str:
    """How the pods of a model get their weights: a local directory as is; on a cluster this project
    did not make (no bucket) from the Hugging Face hub; otherwise the model's `loading`."""
    if is_local:
        return "local"
    return "hub" if existing_cluster else loading


def s3_gbps(shape: Any) -> float:
    """The line rate a tuned fetch reaches from S3 into one node of this shape (Gbps)."""
    s3 = rates()["s3"]
    return min(float(shape.network_gbps), float(s3["maxMeasuredGbps"]))


def fetch_gbps(shape: Any, connections: int | None = None) -> float:
    """What the deployed s5cmd flags reach: connections x per-connection rate, capped by the line rate."""
    r = rates()
    if connections is None:
        connections = r["s5cmd"]["numworkers"] * r["s5cmd"]["concurrency"]
    return min(connections * float(r["s3"]["perConnectionGbps"]), s3_gbps(shape))


def _warmup(weights_gb: float) -> dict[str, int]:
    w = rates()["warmup"]
    return w["large"] if weights_gb >= w["largeFromGB"] else w["small"]


def _weights(path: str, weights_gb: float, shape: Any) -> tuple[float, float, str]:
    """(weights seconds, load seconds, basis) for one node fetching the whole checkpoint."""
    r = rates()
    p, local = r["paths"], float(r["load"]["localGBps"])
    load = weights_gb / local
    if path == "nvme":
        gbps = fetch_gbps(shape)
        return (weights_gb * 8 / gbps, load,
                f"S3 -> NVMe at {gbps:g} Gbps (s5cmd {r['s5cmd']['numworkers']}x{r['s5cmd']['concurrency']} "
                f"connections, {shape.name} {shape.network_gbps:g} Gbps), read at {local:g} GB/s")
    if path == "runai-streamer":
        return weights_gb / p["runaiStreamerGBps"], 0.0, f"streamed S3 -> GPU at {p['runaiStreamerGBps']:g} GB/s"
    if path == "fsx":
        return weights_gb / p["fsxGBps"], 0.0, f"read from FSx for Lustre at {p['fsxGBps']:g} GB/s"
    if path == "hub":
        gbps = min(p["hubDownloadGBps"], shape.network_gbps / 8)
        return (weights_gb / gbps, load,
                f"downloaded from the Hugging Face hub at {gbps:g} GB/s into the node cache, read at {local:g} GB/s")
    return 0.0, load, f"a directory on the node, read at {local:g} GB/s"


def cold_start(weights_gb: float, path: str, engine: str, shape: Any, launches_nodes: bool = True) -> ColdStart:
    """The cold start of one replica on a new node of `shape` (every node of a multi-node replica does
    the same in parallel, so one node's figure is the replica's)."""
    if path not in PATHS:
        raise ValueError(f"loading path {path!r} is not one of {list(PATHS)}")
    r = rates()
    node = float(r["node"]["readySeconds"]) if launches_nodes else 0.0
    image = r["image"]["compressedGB"][engine] / r["image"]["pullGBps"]
    weights, load, weights_basis = _weights(path, weights_gb, shape)
    warm = _warmup(weights_gb)
    cached = path in CACHE_PATHS
    warmup = warm["cachedSeconds"] if cached else warm["coldSeconds"]
    overlap = path == "nvme" and PREPULL_IMAGE
    fetch = max(image, weights) if overlap else image + weights
    total = node + fetch + load + warmup
    limit = node + weights_gb * 8 / s3_gbps(shape) + warm["cachedSeconds"]
    restart = load + warm["cachedSeconds"] + (weights if path == "fsx" or path == "runai-streamer" else 0.0)
    first = total - warmup + warm["coldSeconds"]
    basis = (
        f"node: {node:.0f} s launch + join + GPUs advertised" if launches_nodes else "node: yours, already there",
        f"image: {r['image']['compressedGB'][engine]:g} GB at {r['image']['pullGBps']:g} GB/s"
        + (" (pre-pulled by a DaemonSet while the weights are fetched)" if overlap else ""),
        f"weights: {weights_basis}",
        f"warm-up: {warmup} s ({'compile caches restored from the bucket' if cached else 'no shared compile cache'}"
        f"; {warm['coldSeconds']} s cold)",
        f"limit: node + {weights_gb:,.0f} GB at {s3_gbps(shape):g} Gbps + {warm['cachedSeconds']} s warm-up",
    )
    return ColdStart(path=path, node_seconds=_up(node), image_seconds=_up(image), weights_seconds=_up(weights),
                     load_seconds=_up(load), warmup_seconds=int(warmup), total_seconds=_up(total),
                     limit_seconds=_up(limit), restart_seconds=_up(restart), first_start_seconds=_up(first),
                     overlapped=("image", "weights") if overlap else (), basis=basis)


def probe_seconds(total_seconds: int) -> int:
    """Startup-probe budget: the modeled total x factor + margin, whole minutes, at least the minimum."""
    p = rates()["probe"]
    return max(p["minimumSeconds"], int(math.ceil((total_seconds * p["factor"] + p["marginSeconds"]) / 60) * 60))


def prewarm_minutes(total_seconds: int) -> int:
    """The lead a scheduled pool needs before its window so replicas are ready when it opens."""
    return int(math.ceil(total_seconds / 60))


def _up(seconds: float) -> int:
    return int(math.ceil(seconds - 1e-9))


def cited_sources() -> set[str]:
    """The sources.yaml keys loading.yaml cites (test_catalog checks they exist and that none is unused)."""
    return {key for section in rates().values() if isinstance(section, dict) for key in section.get("sources", ())}
