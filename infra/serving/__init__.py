"""The serving stack on Kubernetes: engines (Deployment or LeaderWorkerSet per model x pool), KEDA
autoscaling, the LiteLLM gateway and monitoring, on the EKS cluster this project makes or on an
existing cluster. The manifests come from the pure builders next to this module; this component only
registers them, each with the explicit provider and after the chart that installs its CRD.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.planning.coldstart import PREPULL_IMAGE
from infra.planning.placement import fallback_pools, queue_owners
from infra.planning.plan import Plan
from infra.planning.shapes import catalog_for
from infra.runtime import secret_output
from infra.serving import autoscaling, controllers, engines, gateway_k8s, isolation, monitoring, warmstart
from infra.stack import names
from infra.stack.spec import ModelSpec, SecretRef, StackConfig
from infra.wiring import KubeTarget, WeightsSource

HF_SECRET = "engine-hf-token"   # weights storage owns "hf-token" on EKS


class Serving(pulumi.ComponentResource):
    """Engines, autoscaling, gateway and monitoring for every model of the stack."""

    gateway_url: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, plan: Plan, kube: KubeTarget, weights: WeightsSource | None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:serving:Serving", name, None, opts)
        self._name, self._cfg, self._kube = name, cfg, kube
        self._ns = names.NAMESPACE
        specs = self._engine_specs(cfg, plan, weights)
        mon = cfg.monitoring
        prom_url = {"install": names.PROMETHEUS_URL, "existing": mon.prometheus_url}.get(mon.prometheus)

        self._lws = (controllers.release(f"{name}-lws", controllers.LWS, controllers.lws_values(), self, kube)
                     if any(s.multi_node for s in specs) else None)
        self._prometheus = (controllers.release(f"{name}-prometheus", controllers.PROMETHEUS,
                                                monitoring.prometheus_values(mon.grafana, mon.alerts), self, kube)
                            if mon.prometheus == "install" else None)

        models = {m.name: m for m in cfg.models}
        queues = queue_owners(cfg, plan.deployments)
        woken: set[str] = set()
        scalers = []
        for spec in specs:
            # a model at zero everywhere wakes its first placement on gateway traffic
            wake = sum(p.min_replicas for p in models[spec.dep.model].placements) == 0 and spec.dep.model not in woken
            woken.add(spec.dep.model)
            scalers.append(autoscaling.scaled_object(
                spec.name, self._ns, spec.dep, kind="LeaderWorkerSet" if spec.multi_node else "Deployment",
                api_version=engines.LWS_API if spec.multi_node else "apps/v1",
                schedule=plan.schedule(spec.dep.pool), prometheus_url=prom_url,
                queue_target=models[spec.dep.model].queue_target, wake_on_demand=wake,
                scales_on_queue=queues.get(spec.dep.model) == spec.dep.pool,
                labels=engines.selector(spec)))
        self._keda = (controllers.release(f"{name}-keda", controllers.KEDA, controllers.keda_values(), self, kube)
                      if any(scalers) else None)
        for spec, scaler in zip(specs, scalers, strict=True):
            self._engine(spec, scaler)
        self._prepull(specs)

        # one Service per model over all its placements: the gateway's only private backend for it
        for model in cfg.models:
            svc = engines.service(model.name, self._ns)
            k8s.core.v1.Service(f"{name}-{svc['metadata']['name']}-svc", metadata=svc["metadata"], spec=svc["spec"],
                                opts=kube.opts(self))
        self._isolation(prom_url)
        backends = {m.name: (engines.backend_url(m.name, self._ns), m.name) for m in cfg.models}
        cold = {}
        for dep in plan.deployments:
            cold[dep.model] = max(cold.get(dep.model, 0), dep.load.seconds)
        self.gateway_url = self._gateway(backends, cold)
        if mon.prometheus != "off":
            self._monitoring(plan)
        self.register_outputs({"gateway_url": self.gateway_url})

    # ------------------------------------------------------------------------------------------ engines

    def _engine_specs(self, cfg: StackConfig, plan: Plan, weights: WeightsSource | None) -> list[engines.EngineSpec]:
        catalog = catalog_for(cfg)
        models = {m.name: m for m in cfg.models}
        hf = None
        if weights is None and cfg.storage.hf_token is not None and any(not m.is_local for m in cfg.models):
            hf = self._plain_secret(HF_SECRET, {"HF_TOKEN": cfg.storage.hf_token})
        out = []
        fallbacks = fallback_pools(cfg, plan.deployments)
        for dep in plan.deployments:
            shape = catalog.instance(dep.instance_type)
            pool = cfg.pool(dep.pool)
            out.append(engines.EngineSpec(
                name=names.deployment_name(dep.model, dep.pool), namespace=self._ns, dep=dep,
                accelerator=cfg.cluster.accelerator, node_selector=pool.selector, vcpus=shape.vcpus,
                memory_mib=shape.memory_mib, gpus_per_node=shape.gpu_count,
                weights=_with_compile_cache(_weights_plan(models[dep.model], weights, cfg.region, hf,
                                                          cfg.storage.hub_endpoint),
                                            models[dep.model], weights, dep.engine_image),
                grace_seconds=cfg.gateway.request_timeout_seconds + 60,
                fallback_pools=fallbacks.get((dep.model, dep.pool), ())))
        return out

    def _engine(self, spec: engines.EngineSpec, scaler: dict[str, Any] | None) -> None:
        name, kube = self._name, self._kube
        manifest = engines.workload(spec)
        # The engine loads for up to the startup budget (tens of minutes): `pulumi up` does not wait for
        # it (readiness and KEDA take over); replicas belong to KEDA after creation.
        manifest["metadata"]["annotations"] = {"pulumi.com/skipAwait": "true"}
        keep = pulumi.ResourceOptions(ignore_changes=["spec.replicas"])
        if spec.multi_node:
            workload = k8s.apiextensions.CustomResource(
                f"{name}-{spec.name}", api_version=manifest["apiVersion"], kind=manifest["kind"],
                metadata=manifest["metadata"], spec=manifest["spec"],
                opts=pulumi.ResourceOptions.merge(kube.pool_opts(self, spec.dep.pool, self._lws), keep))
        else:
            workload = k8s.apps.v1.Deployment(f"{name}-{spec.name}", metadata=manifest["metadata"],
                                              spec=manifest["spec"],
                                              opts=pulumi.ResourceOptions.merge(kube.pool_opts(self, spec.dep.pool),
                                                                                keep))
        pdb = engines.pod_disruption_budget(spec)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-{spec.name}-pdb", metadata=pdb["metadata"], spec=pdb["spec"],
                                          opts=kube.opts(self))
        if scaler is not None:
            self._custom(f"{name}-{spec.name}-scaler", scaler, self._keda, workload)

    def _prepull(self, specs: list[engines.EngineSpec]) -> None:
        """One DaemonSet per pool and engine image that pulls the image as a node joins, while the
        engine pod's init container fetches the weights (coldstart.PREPULL_IMAGE)."""
        if not PREPULL_IMAGE:
            return
        seen: set[tuple[str, str]] = set()
        for spec in specs:
            key = (spec.dep.pool, spec.dep.engine_image)
            if key in seen or spec.weights.method != "nvme":
                continue
            seen.add(key)
            ds_name = names.dns_label(f"prepull-{spec.dep.pool}-{spec.dep.engine}")
            ds = warmstart.prepull_daemonset(ds_name, self._ns, spec.dep.engine_image, spec.dep.pool,
                                             spec.node_selector, engines.ACCELERATORS[spec.accelerator]["taint"])
            # a 12 GB pull onto every node outlasts `pulumi up`: do not wait for the rollout
            ds["metadata"]["annotations"] = {"pulumi.com/skipAwait": "true"}
            k8s.apps.v1.DaemonSet(f"{self._name}-{ds_name}", metadata=ds["metadata"], spec=ds["spec"],
                                  opts=self._kube.pool_opts(self, spec.dep.pool))

    # ------------------------------------------------------------------------------------------ gateway

    def _gateway(self, backends: dict[str, tuple[str, str]], cold_starts: dict[str, int]) -> pulumi.Output[str]:
        name, cfg, kube, ns = self._name, self._cfg, self._kube, self._ns
        spec, refs = gateway_k8s.gateway_spec(cfg, backends, cold_starts)
        sources = gateway_k8s.key_sources(refs, kube.managed)
        waits: list[pulumi.Resource] = []
        plain = {s.env: s.ref for s in sources.values() if s.secret == gateway_k8s.KEYS_SECRET and s.ref}
        if plain:
            waits.append(self._plain_secret_resource(gateway_k8s.KEYS_SECRET, plain))
        aws_items = {s.env: s.ref.secrets_manager_arn for s in sources.values()
                     if s.secret == gateway_k8s.AWS_KEYS_SECRET and s.ref and s.ref.secrets_manager_arn}
        generated = any(s.ref is None and s.secret == gateway_k8s.GENERATED_SECRET for s in sources.values())
        eso_deps: list[pulumi.Resource] = []
        if aws_items:
            eso_deps.append(controllers.eso_pod_identity(
                f"{name}-eso", sorted(set(aws_items.values())), kube.cluster_name, self, names.tags(cfg, "serving")))
        # External Secrets makes the engines' API key (and the master key when the stack gives none)
        eso = controllers.release(f"{name}-eso", controllers.ESO, controllers.eso_values(), self, kube, eso_deps)
        if aws_items:
            store = self._custom(f"{name}-secret-store", gateway_k8s.secret_store(ns, cfg.region), eso)
            waits.append(self._custom(f"{name}-gateway-keys-aws", gateway_k8s.external_secret(
                ns, gateway_k8s.AWS_KEYS_SECRET, gateway_k8s.AWS_KEYS_SECRET, aws_items), eso, store))
        if generated:
            gen = self._custom(f"{name}-gateway-password", gateway_k8s.password_generator(ns), eso)
            waits.append(self._custom(f"{name}-gateway-generated", gateway_k8s.generated_secret(ns), eso, gen))
        key_gen = self._custom(f"{name}-engine-key-password",
                               gateway_k8s.password_generator(ns, engines.ENGINE_KEY_SECRET), eso)
        waits.append(self._custom(f"{name}-engine-key", gateway_k8s.generated_secret(
            ns, engines.ENGINE_KEY_SECRET, engines.ENGINE_KEY_ITEM), eso, key_gen))
        files = gateway_k8s.config_files(spec)
        waits.append(k8s.core.v1.ConfigMap(
            f"{name}-gateway-config",
            metadata={"name": gateway_k8s.NAME, "namespace": ns, "labels": gateway_k8s.LABELS},
            data=files, opts=kube.opts(self)))
        dep = gateway_k8s.deployment(ns, cfg.gateway.replicas, files, sources)
        k8s.apps.v1.Deployment(f"{name}-gateway", metadata=dep["metadata"], spec=dep["spec"],
                               opts=kube.opts(self, *waits))
        if cfg.gateway.replicas > 1:
            pdb = gateway_k8s.pod_disruption_budget(ns, cfg.gateway.replicas)
            k8s.policy.v1.PodDisruptionBudget(f"{name}-gateway-pdb", metadata=pdb["metadata"], spec=pdb["spec"],
                                              opts=kube.opts(self))
        svc_manifest = gateway_k8s.service(ns, cfg, kube.managed)
        svc = k8s.core.v1.Service(f"{name}-gateway-svc", metadata=svc_manifest["metadata"],
                                  spec=svc_manifest["spec"], opts=kube.opts(self))
        if not kube.managed:
            return pulumi.Output.from_input(gateway_k8s.in_cluster_url(ns))
        scheme = "https" if cfg.gateway.certificate_arn else "http"
        return svc.status.apply(lambda status: _lb_url(status, scheme))

    def _isolation(self, prometheus_url: str | None) -> None:
        """Only the gateway (and Prometheus, for /metrics) reaches the engines; engines of a multi-node
        replica reach each other."""
        pol = isolation.engine_network_policy(self._ns, {"app.kubernetes.io/name": gateway_k8s.NAME},
                                              isolation.prometheus_peer(prometheus_url))
        k8s.networking.v1.NetworkPolicy(f"{self._name}-engine-ingress", metadata=pol["metadata"], spec=pol["spec"],
                                        opts=self._kube.opts(self))

    # ------------------------------------------------------------------------------------------ monitoring

    def _monitoring(self, plan: Plan) -> None:
        name, cfg, kube, ns = self._name, self._cfg, self._kube, self._ns
        mon = cfg.monitoring
        crd = self._prometheus
        self._custom(f"{name}-engine-monitor", monitoring.engine_pod_monitor(ns), crd)
        self._custom(f"{name}-gateway-monitor",
                     monitoring.gateway_service_monitor(ns, {"app.kubernetes.io/name": gateway_k8s.NAME}), crd)
        prices = {p.name: plan.pool(p.name).hourly_usd for p in cfg.pools if not p.node_selector}
        startup = {(d.model, d.pool): (d.load.seconds, d.load.probe_seconds) for d in plan.deployments}
        self._custom(f"{name}-rules", monitoring.prometheus_rule(
            ns, mon.ttft_p99_seconds, {m.name: m.queue_target for m in cfg.models}, prices, mon.alerts, startup,
            cfg.cluster.accelerator), crd)
        if cfg.cluster.accelerator == "ascend":
            self._custom(f"{name}-npu-monitor", monitoring.npu_pod_monitor(ns), crd)
        cm = monitoring.dashboard_config_map(ns)
        k8s.core.v1.ConfigMap(f"{name}-dashboard", metadata=cm["metadata"], data=cm["data"], opts=kube.opts(self))
        if kube.managed and cfg.cluster.accelerator == "nvidia" and mon.dcgm_exporter:
            dcgm = controllers.release(f"{name}-dcgm", controllers.DCGM, controllers.dcgm_values(), self, kube)
            self._custom(f"{name}-dcgm-monitor", monitoring.dcgm_service_monitor(ns, "dcgm-exporter"), crd, dcgm)

    # ------------------------------------------------------------------------------------------ helpers

    def _custom(self, logical: str, manifest: dict[str, Any], *after: pulumi.Resource | None
                ) -> k8s.apiextensions.CustomResource:
        """A custom resource in the project namespace, after the Release that installs its CRD."""
        return k8s.apiextensions.CustomResource(
            logical, api_version=manifest["apiVersion"], kind=manifest["kind"], metadata=manifest["metadata"],
            spec=manifest["spec"], opts=self._kube.opts(self, *[a for a in after if a is not None]))

    def _plain_secret_resource(self, secret: str, refs: dict[str, SecretRef]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-{secret}",
            metadata={"name": secret, "namespace": self._ns, "labels": {"app.kubernetes.io/part-of": "llm-fleet"}},
            type="Opaque", string_data={key: secret_output(ref) for key, ref in refs.items()},
            opts=self._kube.opts(self))

    def _plain_secret(self, secret: str, refs: dict[str, SecretRef]) -> tuple[str, str]:
        self._plain_secret_resource(secret, refs)
        return secret, next(iter(refs))


def _weights_plan(model: ModelSpec, weights: WeightsSource | None, region: str,
                  hf_token: tuple[str, str] | None, hub_endpoint: str | None = None) -> engines.WeightsPlan:
    if weights is None:
        if model.is_local:
            return engines.WeightsPlan("local", local_path=model.source)
        # ModelScope's default branch is `master`; `main` is the stack's default revision
        revision = "master" if hub_endpoint == "modelscope" and model.revision == "main" else model.revision
        return engines.WeightsPlan("hub", hf_id=model.source, revision=revision, hf_token=hf_token,
                                   hub_endpoint=hub_endpoint)
    method = model.loading
    if method == "fsx":
        path = f"{engines.WEIGHTS_MOUNT}/{weights.prefix(model.name, model.revision)}"
        return engines.WeightsPlan("fsx", fsx_path=path)
    marker = pulumi.Output.concat("s3://", weights.bucket_name, "/", weights.marker_key(model.name, model.revision))
    return engines.WeightsPlan(
        method, source_uri=weights.uri(model.name, model.revision), marker_uri=marker, region=weights.region,
        service_account=weights.reader_service_account,
        cache_dir=f"{engines.NVME_ROOT}/llm-fleet/{model.name}/{model.revision}")


def _with_compile_cache(plan: engines.WeightsPlan, model: ModelSpec, weights: WeightsSource | None,
                        image: str) -> engines.WeightsPlan:
    """Keep the engine's compile caches per model revision on the node; on the S3 paths also restore
    them from and save them to the bucket (what the cold-start model's warm-up assumes)."""
    cache_dir = warmstart.compile_cache_dir(plan.method, model.name, model.revision, engines.NVME_ROOT)
    uri = (weights.cache_uri(model.name, model.revision, image)
           if weights is not None and warmstart.cache_restored(plan.method) else None)
    return dataclasses.replace(plan, compile_cache_dir=cache_dir, cache_uri=uri)


def _lb_url(status: Any, scheme: str) -> str:
    """The NLB's DNS name once the AWS Load Balancer Controller has made it."""
    ingress = ((status or {}).get("load_balancer") or {}).get("ingress") if isinstance(status, dict) else None
    if ingress is None and status is not None and not isinstance(status, dict):
        lb = getattr(status, "load_balancer", None)
        ingress = getattr(lb, "ingress", None) if lb is not None else None
    first = ingress[0] if ingress else None
    host = (first.get("hostname") or first.get("ip")) if isinstance(first, dict) else (
        getattr(first, "hostname", None) or getattr(first, "ip", None) if first is not None else None)
    return f"{scheme}://{host}" if host else f"{scheme}://pending-load-balancer"


__all__ = ["Serving"]
