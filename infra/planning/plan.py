"""StackConfig -> Plan: every deployment sized, every pool costed. Pure; the program, `fleet plan`,
`fleet diff` and the jobs all read the same Plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.planning.catalog import Catalog, CatalogError, CatalogModel, load_catalog, version_key
from infra.planning.cost import ModelCost, PoolCost, model_cost, pool_cost
from infra.planning.hub import fetch_config
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
    # per scheduled pool, the schedule it really follows (pre-warm defaulted, short gaps merged:
    # infra.planning.windows_plan); the KEDA cron triggers, the cost and `fleet simulate` read this
    schedules: Mapping[str, Schedule] = field(default_factory=dict)

    def schedule(self, pool: str) -> Schedule | None:
        return self.schedules.get(pool)

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
            "models": [_model_json(m) for m in self.models],
            "notes": list(self.notes),
            "egress": list(self.egress),
        }


def build_plan(cfg: StackConfig, catalog: Catalog | None = None,
               fetch: Callable[[str, str], dict[str, Any]] = fetch_config,
               month: tuple[int, int] | None = None) -> Plan:
    """Size and cost the whole stack, or raise SizingError naming the model, pool and the way out."""
    catalog = catalog or load_catalog()
    notes: list[str] = []
    for pool in cfg.pools:
        for itype in pool.instance_types:
            try:
                catalog.instance(itype)
            except CatalogError as err:
                raise SizingError(f"pools.{pool.name}.instanceTypes: {err}") from None
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
            dep = plan_deployment(spec, placement, pool, cfg.engines[spec.engine], resolved, catalog)
            dep = _with_efa_image(dep, cfg)
            for other in pool.instance_types[1:]:
                alt = dataclasses.replace(pool, instance_types=(other,))
                plan_deployment(spec, placement, alt, cfg.engines[spec.engine], resolved, catalog)
            _check_pool_holds(dep, pool.min_size, pool.max_size, notes)
            deployments.append(dep)
            per_model.setdefault(spec.name, []).append(dep)
            notes.extend(f"{spec.name} on {pool.name}: {n}" for n in dep.notes)
    pools = []
    schedules: dict[str, Schedule] = {}
    for pool in cfg.pools:
        if not any(d.pool == pool.name for d in deployments):
            notes.append(f"pool {pool.name} serves no model")
        schedule, schedule_notes = effective_schedule(pool, [d for d in deployments if d.pool == pool.name])
        notes.extend(schedule_notes)
        if schedule is not None:
            schedules[pool.name] = schedule
        try:
            pools.append(pool_cost(dataclasses.replace(pool, schedule=schedule), catalog.instance(pool.instance_type),
                                   cfg.region, month))
        except CatalogError as err:
            raise SizingError(f"pools.{pool.name}: {err}; choose a region the catalog prices") from None
    pool_map = {p.pool: p for p in pools}
    models = tuple(
        model_cost(spec, per_model[spec.name], deployments, pool_map,
                   catalog.api_prices_for(resolved_key) if (resolved_key := _catalog_key(spec, catalog)) else ())
        for spec in cfg.models)
    return Plan(stack=cfg.stack, environment=cfg.environment, region=cfg.region, pools=tuple(pools),
                deployments=tuple(deployments), models=models, notes=tuple(notes), egress=egress(cfg),
                schedules=schedules)


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
        "engineArgs": list(d.engine_args),
    }


def _model_json(m: ModelCost) -> dict[str, Any]:
    api = m.cheapest_api
    return {"model": m.model, "monthlyUSD": _r(m.monthly_usd),
            "outputTokensPerMonth": None if m.output_tokens_per_month is None else int(m.output_tokens_per_month),
            "usdPerMillionTokens": _r(m.usd_per_million_tokens, 3),
            "cheapestApi": None if api is None else {"provider": api.provider, "blendedUSDPerM": api.blended_usd_per_m,
                                                      "asOf": api.as_of},
            "breakEvenMillionTokensPerDay": _r(m.break_even_million_tokens_per_day, 1)}
