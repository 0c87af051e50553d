"""StackConfig -> Plan: every deployment sized, every pool costed. Pure; the program, `fleet plan`,
`fleet diff` and the jobs all read the same Plan.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.planning.catalog import Catalog, CatalogError, CatalogModel, version_key
from infra.planning.coldstart import ColdStart, prewarm_minutes, rates
from infra.planning.cost import ModelCost, PoolCost, model_cost, pool_cost
from infra.planning.economics import (
    INPUT_PER_OUTPUT,
    PlatformCost,
    TokenEconomics,
    idle_node_hours,
    node_starts_per_month,
    platform_costs,
    token_economics,
)
from infra.planning.hub import fetch_config
from infra.planning.nodecache import check_weights_cache
from infra.planning.shapes import catalog_for
from infra.planning.sizing import DeploymentPlan, SizingError, plan_deployment, resolve_model
from infra.planning.windows_plan import effective_schedule
from infra.stack.spec import EngineImage, ModelSpec, StackConfig
from infra.stack.windows import Schedule


@dataclass(frozen=True)
class Plan:
    stack: str
    environment: str
    region: str
    pools: tuple[PoolCost, ...]
    deployments: tuple[DeploymentPlan, ...]
    models: tuple[ModelCost, ...]
    notes: tuple[str, ...]
    egress: tuple[str, ...] = ()      # per key: which models' requests may leave the cluster, to whom
    platform: tuple[PlatformCost, ...] = ()               # non-GPU monthly costs, apart from the pools
    config: StackConfig | None = None                     # the stack with `prewarmMinutes: auto` resolved
    economics: Mapping[str, TokenEconomics] = field(default_factory=dict)   # per model, like for like
    # per scheduled pool, the schedule it really follows (pre-warm resolved, short gaps merged:
    # infra.planning.windows_plan); the KEDA cron triggers, the cost and `fleet simulate` read this
    schedules: Mapping[str, Schedule] = field(default_factory=dict)

    def schedule(self, pool: str) -> Schedule | None:
        return self.schedules.get(pool)

    @property
    def platform_monthly_usd(self) -> float:
        return sum(c.monthly_usd for c in self.platform)

    @property
    def monthly_usd(self) -> float:
        return sum(p.monthly_usd for p in self.pools)

    @property
    def max_monthly_usd(self) -> float:
        return sum(p.max_monthly_usd for p in self.pools)

    def pool(self, name: str) -> PoolCost:
        return next(p for p in self.pools if p.pool == name)

    def deployments_on(self, pool: str) -> tuple[DeploymentPlan, ...]:
        return tuple(d for d in self.deployments if d.pool == pool)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "environment": self.environment, "region": self.region,
            "monthlyUSD": round(self.monthly_usd, 2), "maxMonthlyUSD": round(self.max_monthly_usd, 2),
            "pools": [_pool_json(p) for p in self.pools],
            "deployments": [_deployment_json(d) for d in self.deployments],
            "models": [_model_json(m, self.economics.get(m.model)) for m in self.models],
            "gpuMonthlyUSD": round(self.monthly_usd, 2),
            "platformMonthlyUSD": round(self.platform_monthly_usd, 2),
            "platform": [{"item": c.item, "monthlyUSD": round(c.monthly_usd, 2), "basis": c.basis}
                         for c in self.platform],
            "notes": list(self.notes),
            "egress": list(self.egress),
        }


def build_plan(cfg: StackConfig, catalog: Catalog | None = None,
               fetch: Callable[[str, str], dict[str, Any]] = fetch_config,
               month: tuple[int, int] | None = None) -> Plan:
    """Size and cost the whole stack, or raise SizingError naming the model, pool and the way out."""
    try:
        catalog = catalog_for(cfg, catalog)
    except CatalogError as err:
        raise SizingError(f"shapes: {err}") from None
    if fetch is fetch_config and cfg.storage.hub_endpoint:
        fetch = functools.partial(fetch_config, endpoint=cfg.storage.hub_endpoint)
    notes: list[str] = []
    pools = []
    for pool in cfg.pools:
        for itype in pool.instance_types:
            try:
                catalog.instance(itype)
            except CatalogError as err:
                raise SizingError(f"pools.{pool.name}.instanceTypes: {err}") from None
        shape = catalog.instance(pool.instance_type)
        try:
            pools.append(pool_cost(pool, shape, cfg.region, month))
        except CatalogError as err:
            raise SizingError(f"pools.{pool.name}: {err}; choose a region the catalog prices") from None
    deployments: list[DeploymentPlan] = []
    per_model: dict[str, list[DeploymentPlan]] = {}
    for spec in cfg.models:
        resolved = resolve_model(spec, catalog, fetch)
        _check_engine_version(spec, cfg.engines[spec.engine], resolved.entry)
        if cfg.cluster.existing is not None and not spec.is_local:
            # no bucket on an existing cluster: each replica downloads from the hub (engines.WeightsPlan "hub")
            spec = dataclasses.replace(spec, loading="hub")
        for placement in spec.placements:
            pool = cfg.pool(placement.pool)
            dep = plan_deployment(spec, placement, pool, cfg.engines[spec.engine], resolved, catalog,
                                  existing_cluster=cfg.cluster.existing is not None)
            dep = _with_efa_image(dep, cfg)
            for other in pool.instance_types[1:]:
                alt = dataclasses.replace(pool, instance_types=(other,))
                plan_deployment(spec, placement, alt, cfg.engines[spec.engine], resolved, catalog,
                                existing_cluster=cfg.cluster.existing is not None)
            _check_pool_holds(dep, pool.min_size, pool.max_size, notes)
            deployments.append(dep)
            per_model.setdefault(spec.name, []).append(dep)
            notes.extend(f"{spec.name} on {pool.name}: {n}" for n in dep.notes)
    for pool in cfg.pools:
        if not any(d.pool == pool.name for d in deployments):
            notes.append(f"pool {pool.name} serves no model")
    cfg, schedules = resolve_schedules(cfg, deployments, notes)
    for i, pool in enumerate(cfg.pools):
        if pool.schedule is not None:                                      # costed again as it will run
            pools[i] = pool_cost(pool, catalog.instance(pool.instance_type), cfg.region, month)
    pool_map = {p.pool: p for p in pools}
    models = tuple(
        model_cost(spec, per_model[spec.name], deployments, pool_map,
                   catalog.api_prices_for(resolved_key) if (resolved_key := _catalog_key(spec, catalog)) else ())
        for spec in cfg.models)
    if cfg.cluster.existing is None:
        check_weights_cache(cfg, deployments, catalog)
    return Plan(stack=cfg.stack, environment=cfg.environment, region=cfg.region, pools=tuple(pools),
                deployments=tuple(deployments), models=models, notes=tuple(notes),
                platform=_platform(cfg, deployments), economics=_economics(cfg, models, per_model), config=cfg,
                egress=egress(cfg), schedules=schedules)


def resolve_schedules(cfg: StackConfig, deployments: list[DeploymentPlan],
                      notes: list[str]) -> tuple[StackConfig, dict[str, Schedule]]:
    """The stack with every pool's schedule as it will run (infra.planning.windows_plan): `prewarmMinutes:
    auto` (or left out) set from the modeled cold start and the replicas' ramp, gaps too short to be worth a
    scale-down merged; KEDA, the jobs, the cost and `fleet simulate` all use the same windows."""
    pools, schedules = [], {}
    for pool in cfg.pools:
        schedule, found = effective_schedule(pool, [d for d in deployments if d.pool == pool.name])
        notes.extend(found)
        if schedule is not None:
            schedules[pool.name] = schedule
            pool = dataclasses.replace(pool, schedule=schedule)
        pools.append(pool)
    return dataclasses.replace(cfg, pools=tuple(pools)), schedules


def with_prewarm(cfg: StackConfig) -> StackConfig:
    """`cfg` as the program runs it: unchanged unless a pool has a schedule, whose pre-warm (`auto`) and
    merged gaps need the plan (resolve_schedules)."""
    if not any(p.schedule is not None for p in cfg.pools):
        return cfg
    return build_plan(cfg).config


def _platform(cfg: StackConfig, deployments: list[DeploymentPlan]) -> tuple[PlatformCost, ...]:
    starts = sum(node_starts_per_month(cfg).values())
    image_gb = max((rates()["image"]["compressedGB"][d.engine] for d in deployments), default=0.0)
    weights_gb = sum({d.model: d.weights_gb for d in deployments}.values())
    return platform_costs(cfg, starts, image_gb, weights_gb)


def _economics(cfg: StackConfig, models: tuple[ModelCost, ...],
               per_model: dict[str, list[DeploymentPlan]]) -> dict[str, TokenEconomics]:
    """Per model: tokens on the stated mix, less what pre-warm and cold-start hours cannot serve."""
    out = {}
    for m in models:
        spec = next(s for s in cfg.models if s.name == m.model)
        idle = sum(idle_node_hours(cfg, d.pool, d.load.seconds) * d.replicas_per_node / d.layout.nodes
                   for d in per_model.get(m.model, []))
        tokens = m.output_tokens_per_month
        if tokens is not None and spec.throughput is not None:
            rate = spec.throughput.output_tokens_per_second * spec.throughput.utilization
            tokens = max(0.0, tokens - idle * 3600 * rate)
        out[m.model] = token_economics(m.monthly_usd, tokens, m.cheapest_api, idle)
    return out


def egress(cfg: StackConfig) -> tuple[str, ...]:
    """One line per key (teams, then the master key): the models whose requests may go to a managed
    fallback provider when no private replica answers. `fallback: never` on a team or a model wins."""
    leaving = {m.name: cfg.gateway.fallbacks[m.name] for m in cfg.models
               if m.name in cfg.gateway.fallbacks and m.fallback != "never"}
    every = tuple(m.name for m in cfg.models)

    def line(who: str, models: tuple[str, ...], never: bool) -> str:
        out = [] if never else [f"{m} -> {leaving[m].provider} ({leaving[m].model})" for m in models if m in leaving]
        why = " (fallback: never)" if never else ""
        return f"{who}: " + (", ".join(out) if out else f"nothing leaves the cluster{why}")
    lines = [line(f"team {t.name}", t.models or every, t.fallback == "never") for t in cfg.gateway.teams]
    return tuple(lines + [line("master key", every, False)])


def _check_engine_version(spec: ModelSpec, engine: EngineImage, entry: CatalogModel | None) -> None:
    """Refuse an engine pin older than the first release the catalog knows runs this model."""
    known = [f.min_version for f in (entry.engine_flags if entry else ()) if f.engine == spec.engine]
    if not known:
        return
    lowest = min(known, key=version_key)
    if version_key(engine.version) < version_key(lowest):
        raise SizingError(f"engines.{spec.engine}.version: {engine.version} cannot run {spec.source} (models."
                          f"{spec.name}); {entry.display_name} needs {spec.engine} >= {lowest}: pin v{lowest} or "
                          "later, or drop the key to use the default pin")


def _with_efa_image(dep: DeploymentPlan, cfg: StackConfig) -> DeploymentPlan:
    """A replica spanning EKS nodes runs NCCL over EFA: the engine image must carry aws-ofi-nccl."""
    if not (dep.multi_node and dep.efa_interfaces and cfg.cluster.existing is None):
        return dep
    engine = cfg.engines[dep.engine]
    if engine.efa_image is None:
        raise SizingError(f"engines.{dep.engine}.efaImage: models.{dep.model} spans {dep.layout.nodes} nodes of "
                          f"{dep.instance_type} over EFA, and {engine.ref} has no aws-ofi-nccl (NCCL would fall back "
                          f"to TCP); set efaImage to an EFA-ready {dep.engine} {engine.version} image (AWS Deep "
                          "Learning Containers), or maxNodesPerReplica: 1")
    return dataclasses.replace(dep, engine_image=engine.efa_image)


def _catalog_key(spec, catalog: Catalog) -> str | None:
    found = None if spec.is_local else catalog.find_checkpoint(spec.source)
    return found[0].key if found else None


def nodes_for(dep: DeploymentPlan, replicas: int) -> int:
    """Nodes that `replicas` replicas occupy (several small replicas share a node)."""
    if replicas <= 0:
        return 0
    return dep.layout.nodes * math.ceil(replicas / dep.replicas_per_node)


def _check_pool_holds(dep: DeploymentPlan, min_size: int, max_size: int, notes: list[str]) -> None:
    need_min = nodes_for(dep, dep.min_replicas)
    if need_min > max_size:
        raise SizingError(f"models.{dep.model}: {dep.min_replicas} replica(s) on pool {dep.pool} need {need_min} "
                          f"node(s) ({dep.layout.nodes} per replica); the pool's maxSize is {max_size}; raise "
                          f"pools.{dep.pool}.maxSize to {need_min} or lower replicas.min")
    need_max = nodes_for(dep, dep.max_replicas)
    if need_max > max_size:
        notes.append(f"{dep.model} on {dep.pool}: replicas.max {dep.max_replicas} needs {need_max} nodes; "
                     f"the pool stops at {max_size}")


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _pool_json(p: PoolCost) -> dict[str, Any]:
    return {"name": p.pool, "capacity": p.capacity, "instanceType": p.instance_type, "gpusPerNode": p.gpus_per_node,
            "onDemandHourlyUSD": _r(p.on_demand_hourly_usd, 3), "hourlyUSD": _r(p.hourly_usd, 3),
            "monthlyNodeHours": _r(p.monthly_node_hours, 1), "monthlyUSD": _r(p.monthly_usd),
            "maxMonthlyUSD": _r(p.max_monthly_usd), "basis": p.basis}


def _deployment_json(d: DeploymentPlan) -> dict[str, Any]:
    return {
        "model": d.model, "source": d.source, "revision": d.revision, "pool": d.pool,
        "instanceType": d.instance_type, "precision": d.precision, "engine": d.engine,
        "engineImage": d.engine_image, "fits": True, "weightsGB": _r(d.weights_gb, 1),
        "weightsPerGpuGB": _r(d.memory.weights_per_gpu_gb, 1), "gpuMemoryGB": _r(d.gpu_memory_gb, 1),
        "overheadPerGpuGB": _r(d.memory.overhead_per_gpu_gb, 1),
        "gpusPerReplica": d.layout.gpus, "nodesPerReplica": d.layout.nodes, "replicasPerNode": d.replicas_per_node,
        "tensorParallel": d.layout.tp, "pipelineParallel": d.layout.pp, "expertParallel": d.layout.ep,
        "kvCacheGB": _r(d.kv_cache_gb, 1), "kvBytesPerToken": d.kv_bytes_per_token,
        "maxTokensInFlight": d.max_tokens_in_flight, "maxContext": d.max_context,
        "maxConcurrentSequences": d.max_concurrent_sequences,
        "replicas": {"min": d.min_replicas, "max": d.max_replicas},
        "load": {"method": d.load.method, "estimateSeconds": d.load.seconds,
                 "startupProbeSeconds": d.load.probe_seconds, "basis": d.load.basis},
        "coldStart": None if d.cold_start is None else cold_start_json(d.cold_start),
        "engineArgs": list(d.engine_args),
    }


def economics_json(e: TokenEconomics | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"inputPerOutputTokens": e.mix, "usdPerMillionTokens": _r(e.usd_per_million_tokens, 3),
            "apiUSDPerMillionTokens": _r(e.api_usd_per_million_tokens, 3),
            "capacityMillionTokensPerDay": _r(e.capacity_million_tokens_per_day, 1),
            "breakEvenMillionTokensPerDay": _r(e.break_even_million_tokens_per_day, 1),
            "breakEvenReachable": e.reachable, "idleNodeHoursPerMonth": _r(e.idle_node_hours, 1),
            "basis": f"both sides on {INPUT_PER_OUTPUT:g} input tokens per output token; tokens at the stated "
                     "throughput less pre-warm and cold-start hours"}


def cold_start_json(c: ColdStart) -> dict[str, Any]:
    return {"path": c.path, "nodeSeconds": c.node_seconds, "imageSeconds": c.image_seconds,
            "weightsSeconds": c.weights_seconds, "loadSeconds": c.load_seconds, "warmupSeconds": c.warmup_seconds,
            "totalSeconds": c.total_seconds, "limitSeconds": c.limit_seconds, "ratio": round(c.ratio, 2),
            "restartSeconds": c.restart_seconds, "firstStartSeconds": c.first_start_seconds,
            "prewarmMinutes": prewarm_minutes(c.total_seconds), "overlapped": list(c.overlapped),
            "basis": list(c.basis)}


def _model_json(m: ModelCost, e: TokenEconomics | None) -> dict[str, Any]:
    """`usdPerMillionTokens` and `breakEvenMillionTokensPerDay` are like for like (input + output tokens
    on the stated mix, both sides: `economics`); the output-only figure keeps its own name."""
    api = m.cheapest_api
    return {"model": m.model, "monthlyUSD": _r(m.monthly_usd),
            "outputTokensPerMonth": None if m.output_tokens_per_month is None else int(m.output_tokens_per_month),
            "usdPerMillionOutputTokens": _r(m.usd_per_million_tokens, 3),
            "usdPerMillionTokens": None if e is None else _r(e.usd_per_million_tokens, 3),
            "cheapestApi": None if api is None else {
                "provider": api.provider, "blendedUSDPerM": api.blended_usd_per_m, "asOf": api.as_of,
                "usdPerMillionTokensOnMix": None if e is None else _r(e.api_usd_per_million_tokens, 3)},
            "breakEvenMillionTokensPerDay": None if e is None else _r(e.break_even_million_tokens_per_day, 1),
            "economics": economics_json(e)}
