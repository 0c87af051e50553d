"""Does a model fit its pool's GPU shape, with which parallel layout, how much KV cache is left, and
which exact engine arguments follow. Pure: reused by `fleet plan`, the Pulumi program and the jobs.

Units: GB = 10^9 bytes. The per-GPU memory model is
    gpu memory x gpuMemoryUtilization = weights share + engine overhead + KV cache,
where the engine overhead (activations, CUDA graphs, NCCL buffers) is an estimate the engines
refine when they profile at start-up; the planner errs on the side of refusing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.planning.catalog import Catalog, CatalogModel, InstanceShape
from infra.planning.catalog.hardware import VENDOR_PRECISIONS
from infra.planning.coldstart import ColdStart, weights_path
from infra.planning.hub import HubError, fetch_config, read_local
from infra.planning.loading import LoadEstimate, estimate_load
from infra.planning.modelarch import ArchError, ModelArch, arch_from_config
from infra.planning.targets import accelerator_refusal, interconnect_refusal
from infra.stack.spec import EngineImage, ModelSpec, Placement, PoolSpec

GB = 1e9
MIN_CONTEXT = 4096            # below this a chat model is of little use; the planner will not go lower
PORT = 8000
SGLANG_STATIC_CAP = 0.85      # the GLM-5.1 SGLang cookbook's --mem-fraction-static with EAGLE


class SizingError(ValueError):
    """A model that does not fit its pool: the message gives the numbers and the ways out."""


@dataclass(frozen=True)
class ResolvedModel:
    arch: ModelArch
    entry: CatalogModel | None        # None: not in the catalog, sized from its config.json
    display: str


@dataclass(frozen=True)
class Layout:
    nodes: int
    tp: int
    pp: int
    ep: bool
    dp: int = 1          # vllm-ascend's multi-node launcher: one TP group per node, experts over all of them

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


@dataclass(frozen=True)
class Memory:
    weights_per_gpu_gb: float
    overhead_per_gpu_gb: float
    kv_per_gpu_gb: float
    kv_bytes_per_token_per_gpu: int
    max_tokens: int


@dataclass(frozen=True)
class DeploymentPlan:
    model: str
    source: str
    revision: str
    pool: str
    instance_type: str
    precision: str
    engine: str
    engine_image: str
    weights_gb: float
    layout: Layout
    replicas_per_node: int
    gpu_memory_gb: float
    memory: Memory
    kv_cache_gb: float                # per replica, all GPUs
    kv_bytes_per_token: int           # model-level, all layers
    max_context: int
    min_replicas: int
    max_replicas: int
    engine_args: tuple[str, ...]
    load: LoadEstimate
    multi_node: bool
    efa_interfaces: int
    is_moe: bool
    active_params_b: float
    notes: tuple[str, ...]
    cold_start: ColdStart | None = None      # load.seconds == cold_start.total_seconds (coldstart.py)
    interconnect: str = "none"        # the shape's: efa | infiniband | roce | hccs-roce | none
    rdma_resource: str | None = None  # infiniband / roce: the device resource each pod requests

    @property
    def max_tokens_in_flight(self) -> int:
        return self.memory.max_tokens

    @property
    def max_concurrent_sequences(self) -> int:
        return self.memory.max_tokens // self.max_context


def resolve_model(spec: ModelSpec, catalog: Catalog,
                  fetch: Callable[[str, str], dict[str, Any]] = fetch_config) -> ResolvedModel:
    """Catalog entry by Hugging Face id; otherwise the model's own config.json (local or hub)."""
    found = None if spec.is_local else catalog.find_checkpoint(spec.source)
    try:
        if found is not None:
            entry, _ = found
            return ResolvedModel(arch_from_config(_checkpoint_config(entry, spec.source), spec.source),
                                 entry, entry.display_name)
        cfg = read_local(spec.source) if spec.is_local else fetch(spec.source, spec.revision)
        return ResolvedModel(arch_from_config(cfg, spec.source), None, spec.source)
    except (HubError, ArchError) as err:
        raise SizingError(f"models.{spec.name}.source: {err}") from None


def _checkpoint_config(entry: CatalogModel, hf_id: str) -> dict[str, Any]:
    """The catalog keeps one config per model; the checkpoint's own quantization decides precision."""
    cfg = dict(entry.hf_config)
    ckpt = next(c for c in entry.checkpoints if c.hf_id.lower() == hf_id.lower())
    if ckpt.quantization_config:
        cfg["quantization_config"] = dict(ckpt.quantization_config)
    elif ckpt.quantization:
        cfg["quantization_config"] = {"quant_method": ckpt.quantization, "bits": 8 if ckpt.precision == "fp8" else 4}
    else:
        cfg.pop("quantization_config", None)          # a BF16 checkpoint
    return cfg


def overhead_gb(gpu_memory_gb: float, is_moe: bool) -> float:
    """Activations, CUDA graphs and communication buffers per GPU (estimate; MoE adds all-to-all buffers)."""
    return 1.5 + 0.04 * gpu_memory_gb + (1.5 if is_moe else 0.0)


def candidate_layouts(arch: ModelArch, shape: InstanceShape, engine: str, max_nodes: int) -> list[Layout]:
    """Smallest first: 1, 2, 4, 8 GPUs on one node, then whole nodes (TP per node, PP or TP across)."""
    g = shape.gpu_count
    out = []
    sizes = [n for n in (1, 2, 4, 8, 16) if n <= g and g % n == 0]
    for n in sizes:
        out.append(Layout(1, n, 1, arch.is_moe and n > 1))
    for nodes in range(2, max_nodes + 1):
        if engine == "vllm" and shape.gpu_vendor == "huawei" and arch.is_moe:
            out.append(Layout(nodes, g, 1, True, dp=nodes))   # vllm-ascend GLM-5 multi-node: DP per node + EP
        elif engine == "vllm":
            out.append(Layout(nodes, g, nodes, arch.is_moe))
        else:
            out.append(Layout(nodes, g * nodes, 1, arch.is_moe))
    return [lay for lay in out if _tp_ok(arch, lay.tp)]


def _tp_ok(arch: ModelArch, tp: int) -> bool:
    if arch.heads % tp:
        return False
    if arch.attention == "gqa" and arch.kv_heads % tp and tp % arch.kv_heads:
        return False
    return True


def memory_for(arch: ModelArch, weights_bytes: float, shape: InstanceShape, layout: Layout,
               utilization: float, kv_dtype_bytes: int, routed_bytes: float = 0.0) -> Memory:
    """`routed_bytes` (the routed experts' share of the weights) matters only with dp > 1: the experts
    spread over every device, the rest is replicated per TP group."""
    if layout.dp > 1:
        per_gpu_weights = (routed_bytes / layout.gpus + (weights_bytes - routed_bytes) / (layout.tp * layout.pp)) / GB
    else:
        per_gpu_weights = weights_bytes / layout.gpus / GB
    overhead = overhead_gb(shape.gpu_memory_gb, arch.is_moe)
    kv = shape.gpu_memory_gb * utilization - per_gpu_weights - overhead
    per_token = arch.kv_bytes_per_token_per_gpu(kv_dtype_bytes, layout.tp, layout.pp)
    tokens = max(0, int(kv * GB // per_token)) if kv > 0 else 0
    return Memory(per_gpu_weights, overhead, kv, per_token, tokens)


def check_precision(spec: ModelSpec, resolved: ResolvedModel, shape: InstanceShape | None = None) -> tuple[str, ...]:
    """Engine flags the precision needs; refuse combinations no engine can serve, or the pool's
    accelerator cannot run (FP8 on Ascend 910B, msModelSlim w8a8/w4a8 on NVIDIA)."""
    have = resolved.arch.checkpoint_precision
    want = spec.precision
    path = f"models.{spec.name}.precision"
    if shape is not None and (refusal := accelerator_refusal(spec, resolved.entry, shape, path)):
        raise SizingError(refusal)
    if want == have:
        return ("--quantization", "ascend") if want in ("w8a8", "w4a8") else ()
    if want == "fp8" and have == "bf16":
        return ("--quantization", "fp8")          # online FP8: both engines quantize a BF16 checkpoint at load
    if want in ("w8a8", "w4a8"):
        alternatives = [c.hf_id for c in (resolved.entry.checkpoints if resolved.entry else ()) if c.precision == want]
        hint = (f"use source {alternatives[0]}" if alternatives else
                "quantize it with msModelSlim and point source at the result (it carries quant_model_description.json)")
        raise SizingError(f"{path}: {want} needs an msModelSlim {want.upper()} checkpoint, but {spec.source} is "
                          f"{have}; {hint}")
    alternatives = [c.hf_id for c in (resolved.entry.checkpoints if resolved.entry else ()) if c.precision == want]
    if want == "int4":
        hint = (f"use source {alternatives[0]}" if alternatives else
                "point source at an AWQ or GPTQ 4-bit checkpoint of this model")
        raise SizingError(f"{path}: int4 needs a 4-bit AWQ/GPTQ checkpoint, but {spec.source} is {have}; {hint}")
    hint = f"use source {alternatives[0]} or " if alternatives else ""
    raise SizingError(f"{path}: {spec.source} is a {have} checkpoint and cannot be served as {want}; "
                      f"{hint}set precision: {have}")


def plan_deployment(spec: ModelSpec, placement: Placement, pool: PoolSpec, engine: EngineImage,
                    resolved: ResolvedModel, catalog: Catalog, existing_cluster: bool = False) -> DeploymentPlan:
    """Choose the smallest layout that holds the weights and at least one sequence at the context.
    `existing_cluster`: the nodes are not ours to launch (no EFA there) and the weights come from the hub."""
    arch = resolved.arch
    path = f"models.{spec.name} on pool {pool.name}"
    try:
        shape = catalog.instance(pool.instance_type)
    except ValueError as err:
        raise SizingError(f"pools.{pool.name}.instanceTypes: {err}") from None
    precision_args = check_precision(spec, resolved, shape)
    weights = arch.weight_bytes(spec.precision)
    routed = _routed_bytes(arch, spec.precision)
    kv_bytes = 1 if spec.kv_cache_dtype == "fp8" else 2
    model_max = min(arch.max_context, resolved.entry.max_context) if resolved.entry else arch.max_context
    if spec.max_context is not None and spec.max_context > model_max:
        raise SizingError(f"models.{spec.name}.maxContext: {spec.max_context} is above the model's "
                          f"{model_max}; set maxContext <= {model_max}")
    need = spec.max_context or MIN_CONTEXT
    chosen = None
    for layout in candidate_layouts(arch, shape, spec.engine, spec.max_nodes_per_replica):
        mem = memory_for(arch, weights, shape, layout, spec.gpu_memory_utilization, kv_bytes, routed)
        if mem.max_tokens >= need:
            chosen = (layout, mem)
            break
    if chosen is None:
        raise SizingError(_misfit(spec, pool, shape, arch, weights, catalog, kv_bytes, resolved))
    layout, mem = chosen
    if refusal := interconnect_refusal(shape, layout.nodes, not existing_cluster, path):
        raise SizingError(refusal)
    max_context = spec.max_context or min(model_max, (mem.max_tokens // 1024) * 1024)
    notes = []
    if spec.max_context is None:
        notes.append(f"maxContext not set: using {max_context}, the most that fits (model max {model_max})")
    flags = catalog.engine_flags(resolved.entry.key, spec.engine, engine.version) if resolved.entry else None
    if resolved.entry and flags is None:
        notes.append(f"no catalog flags for {spec.engine} {engine.version}; parsers/speculative decoding not set")
    args = engine_args(spec, layout, max_context, precision_args, flags.args if flags else ())
    wpath = weights_path(spec.loading, spec.is_local, existing_cluster)
    load, cold = estimate_load(weights / GB, wpath, shape, spec.engine, launches_nodes=not existing_cluster)
    return DeploymentPlan(
        model=spec.name, source=spec.source, revision=spec.revision, pool=pool.name,
        instance_type=shape.name, precision=spec.precision, engine=spec.engine, engine_image=engine.ref,
        weights_gb=weights / GB, layout=layout,
        replicas_per_node=max(1, shape.gpu_count // layout.gpus) if layout.nodes == 1 else 1,
        gpu_memory_gb=shape.gpu_memory_gb, memory=mem,
        kv_cache_gb=max(0.0, mem.kv_per_gpu_gb) * layout.gpus,
        kv_bytes_per_token=arch.kv_bytes_per_token(kv_bytes), max_context=max_context,
        min_replicas=placement.min_replicas, max_replicas=placement.max_replicas, engine_args=args, load=load,
        multi_node=layout.nodes > 1, efa_interfaces=shape.efa_interfaces, is_moe=arch.is_moe,
        active_params_b=arch.active_params() / 1e9, notes=tuple(notes), cold_start=cold,
        interconnect=shape.interconnect, rdma_resource=shape.rdma_resource)


_BYTES_PER_ROUTED = {"bf16": 2.0, "fp8": 1.0, "int4": 0.5, "w8a8": 1.0, "w4a8": 0.5}


def _routed_bytes(arch: ModelArch, precision: str) -> float:
    """The routed experts' bytes at `precision` (what expert parallelism spreads over every device)."""
    return arch.routed_expert_params() * _BYTES_PER_ROUTED[precision]


def engine_args(spec: ModelSpec, layout: Layout, max_context: int, precision_args: tuple[str, ...],
                catalog_args: tuple[str, ...]) -> tuple[str, ...]:
    """Arguments after the model location (`vllm serve <model>` / `sglang ... --model-path <model>`).
    Multi-node rank and leader address are added by the serving component from LeaderWorkerSet env."""
    util = f"{spec.gpu_memory_utilization:.2f}"
    if spec.engine == "vllm":
        args = ["--served-model-name", spec.name, "--host", "0.0.0.0", "--port", str(PORT),
                "--tensor-parallel-size", str(layout.tp)]
        if layout.pp > 1:
            args += ["--pipeline-parallel-size", str(layout.pp)]
        if layout.dp > 1:
            args += ["--data-parallel-size", str(layout.dp)]
        if layout.ep:
            args += ["--enable-expert-parallel"]
        args += ["--max-model-len", str(max_context), "--gpu-memory-utilization", util,
                 "--enable-prefix-caching", "--enable-chunked-prefill"]
        if spec.kv_cache_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8"]
    else:
        args = ["--served-model-name", spec.name, "--host", "0.0.0.0", "--port", str(PORT),
                "--tp-size", str(layout.tp)]
        if layout.ep:
            args += ["--ep-size", str(layout.tp)]
        # SGLang's static fraction (weights + KV pool) leaves activations and CUDA graphs outside it, so it
        # sits below vLLM's whole-GPU share: the catalog's cookbook value, else at most SGLANG_STATIC_CAP
        if "--mem-fraction-static" not in catalog_args:
            args += ["--mem-fraction-static", f"{min(spec.gpu_memory_utilization, SGLANG_STATIC_CAP):.2f}"]
        args += ["--context-length", str(max_context), "--enable-metrics"]
        if spec.kv_cache_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8_e4m3"]
    return tuple(args) + precision_args + tuple(catalog_args) + spec.extra_args


def _misfit(spec: ModelSpec, pool: PoolSpec, shape: InstanceShape, arch: ModelArch, weights: float,
            catalog: Catalog, kv_bytes: int, resolved: ResolvedModel) -> str:
    util = spec.gpu_memory_utilization
    usable = shape.gpu_memory_gb * util * shape.gpu_count
    head = (f"models.{spec.name}: {resolved.display} {spec.precision} needs ~{weights / GB:,.0f} GB of weights")
    if spec.max_context:
        head += f" plus KV cache for maxContext {spec.max_context}"
    head += (f"; pool {pool.name} ({shape.name}) has {shape.gpu_count}x{shape.gpu_memory_gb:.1f} GB = "
             f"{shape.gpu_count * shape.gpu_memory_gb:,.0f} GB ({usable:,.0f} GB at gpuMemoryUtilization {util:.2f})")
    ways = []
    need = spec.max_context or MIN_CONTEXT
    fitting = []
    for other in catalog.instances.values():
        if other.name == shape.name or other.gpu_vendor != shape.gpu_vendor:
            continue
        for layout in candidate_layouts(arch, other, spec.engine, 1):
            if memory_for(arch, weights, other, layout, util, kv_bytes).max_tokens >= need:
                price = min(other.on_demand_usd.values()) if other.on_demand_usd else math.inf
                fitting.append((price, other))
                break
    if fitting:
        fitting.sort(key=lambda item: item[0])
        ways.append("use " + " or ".join(f"{o.name} ({o.gpu_count}x{o.gpu_memory_gb:.0f} GB)" for _, o in fitting[:2]))
    runs = VENDOR_PRECISIONS.get(shape.gpu_vendor, ("bf16", "fp8", "int4"))
    for lower in runs[1:]:
        if spec.precision in runs and runs.index(lower) > runs.index(spec.precision):
            lw = arch.weight_bytes(lower)
            if any(memory_for(arch, lw, shape, lay, util, kv_bytes, _routed_bytes(arch, lower)).max_tokens >= need
                   for lay in candidate_layouts(arch, shape, spec.engine, spec.max_nodes_per_replica)):
                way = _precision_way(lower, resolved, lw)
                if way:
                    ways.append(way)
                    break
    if shape.interconnect != "none" and spec.max_nodes_per_replica < 4:
        routed = _routed_bytes(arch, spec.precision)
        for nodes in range(spec.max_nodes_per_replica + 1, 5):
            lays = candidate_layouts(arch, shape, spec.engine, nodes)
            if any(lay.nodes == nodes and memory_for(arch, weights, shape, lay, util, kv_bytes, routed).max_tokens
                   >= need for lay in lays):
                ways.append(f"maxNodesPerReplica: {nodes} ({nodes}x {shape.name} per replica over "
                            f"{shape.interconnect.upper()})")
                break
    if spec.max_context:
        routed = _routed_bytes(arch, spec.precision)
        best = max((memory_for(arch, weights, shape, lay, util, kv_bytes, routed).max_tokens
                    for lay in candidate_layouts(arch, shape, spec.engine, spec.max_nodes_per_replica)), default=0)
        if best >= MIN_CONTEXT:
            ways.append(f"maxContext <= {best // 1024 * 1024}")
    return head + ("; " + ", or ".join(ways) if ways else "; no catalog shape holds it on one node")


def _precision_way(precision: str, resolved: ResolvedModel, weights: float) -> str | None:
    """A lower precision is a way out only with a checkpoint to serve (FP8 also works online from BF16)."""
    if resolved.entry is None:
        kind = {"int4": ", with an AWQ/GPTQ 4-bit checkpoint", "w8a8": ", with an msModelSlim checkpoint",
                "w4a8": ", with an msModelSlim checkpoint"}.get(precision, "")
        return f"precision {precision} (~{weights / GB:,.0f} GB{kind})"
    known = [c.hf_id for c in resolved.entry.checkpoints if c.precision == precision]
    if known:
        return f"precision {precision} with source {known[0]} (~{weights / GB:,.0f} GB)"
    if precision == "fp8":
        return f"precision fp8 (online quantization, ~{weights / GB:,.0f} GB)"
    return None
