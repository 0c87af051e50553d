"""Monitoring manifests (pure builders): the engine PodMonitor, gateway and DCGM ServiceMonitors, the
PrometheusRule (alerts + per-pool cost recording rules) and the Grafana dashboard ConfigMap.

Metric names: every one a query here or in the dashboard uses is listed, with where it was read, in
dashboards/metrics.yaml for the exporter and engine versions we pin (vLLM, SGLang, LiteLLM, DCGM exporter,
kube-state-metrics, node-exporter); tests/serving/test_monitoring.py parses each query and checks it.
The engine pods' `llm-fleet/model` and `llm-fleet/pool` labels become the target labels `llm_fleet_model` /
`llm_fleet_pool`; kube-state-metrics exposes them as `label_llm_fleet_model` / `label_llm_fleet_pool`
(allowlisted in prometheus_values), which is how the engine-health rules know a pod's model and pool.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from infra.stack.names import (
    LABEL_MODEL,
    LABEL_POOL,
    LABEL_ROLE,
    PROMETHEUS_RELEASE,
)

MONITORING_API = "monitoring.coreos.com/v1"
ENGINE_CONTAINER = "engine"   # the engine container's name in engines.container()
DASHBOARD_FILE = "llm-fleet.json"
LABELS = {"app.kubernetes.io/part-of": "llm-fleet", "release": PROMETHEUS_RELEASE}


def dashboard_json() -> str:
    return resources.files("infra.serving").joinpath("dashboards", DASHBOARD_FILE).read_text()


def engine_pod_monitor(namespace: str) -> dict[str, Any]:
    """Leaders and single-node engines expose /metrics on the API port `http`; headless workers have
    no port and are not scraped."""
    return {"apiVersion": MONITORING_API, "kind": "PodMonitor",
            "metadata": {"name": "llm-engines", "namespace": namespace, "labels": LABELS},
            "spec": {"selector": {"matchLabels": {LABEL_ROLE: "engine"}},
                     "namespaceSelector": {"matchNames": [namespace]},
                     "podTargetLabels": [LABEL_MODEL, LABEL_POOL],
                     "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}


# LiteLLM mounts its metrics app at /metrics and answers /metrics with a 307 to /metrics/
GATEWAY_METRICS_PATH = "/metrics/"


def gateway_service_monitor(namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    """No key: the gateway config sets `require_auth_for_metrics_endpoint: false` (series only)."""
    return {"apiVersion": MONITORING_API, "kind": "ServiceMonitor",
            "metadata": {"name": "llm-gateway", "namespace": namespace, "labels": LABELS},
            "spec": {"selector": {"matchLabels": selector}, "namespaceSelector": {"matchNames": [namespace]},
                     "endpoints": [{"port": "http", "path": GATEWAY_METRICS_PATH, "interval": "30s"}]}}


def dcgm_service_monitor(namespace: str, release: str) -> dict[str, Any]:
    """Selects the dcgm-exporter chart's Service that infra.addons installs (labels from the chart's
    _helpers.tpl, port `metrics`)."""
    return {"apiVersion": MONITORING_API, "kind": "ServiceMonitor",
            "metadata": {"name": "dcgm-exporter", "namespace": namespace, "labels": LABELS},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "dcgm-exporter",
                                                  "app.kubernetes.io/instance": release}},
                     "namespaceSelector": {"matchNames": [namespace]},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}}


# Ascend NPU exporter (MindCluster npu-exporter DaemonSet: namespace npu-exporter, label app=npu-exporter,
# port 8082): npu_chip_info_utilization (%), npu_chip_info_hbm_used_memory / _hbm_total_memory (MB),
# npu_chip_info_health_status (1 = healthy), each labelled by chip `id`.
NPU_EXPORTER = {"namespace": "npu-exporter", "labels": {"app": "npu-exporter"}, "port": 8082}


def npu_pod_monitor(namespace: str) -> dict[str, Any]:
    """Scrape the Ascend NPU exporter pods where MindCluster installs them (README: Ascend prerequisites)."""
    return {"apiVersion": MONITORING_API, "kind": "PodMonitor",
            "metadata": {"name": "npu-exporter", "namespace": namespace, "labels": LABELS},
            "spec": {"selector": {"matchLabels": dict(NPU_EXPORTER["labels"])},
                     "namespaceSelector": {"matchNames": [NPU_EXPORTER["namespace"]]},
                     "podMetricsEndpoints": [{"portNumber": NPU_EXPORTER["port"], "path": "/metrics",
                                              "interval": "15s"}]}}


def npu_alert_rules() -> list[dict[str, Any]]:
    """The NPU variants of the GPU alerts (an Ascend cluster has no DCGM)."""
    return [
        _alert("LlmFleetNpuMemoryNearFull",
               "max by (instance, id) (npu_chip_info_hbm_used_memory / npu_chip_info_hbm_total_memory) > 0.98",
               10, "warning", "NPU {{ $labels.id }} on {{ $labels.instance }} has under 2% of its HBM free"),
        _alert("LlmFleetNpuUnhealthy", "min by (instance, id) (npu_chip_info_health_status) != 1", 5, "critical",
               "NPU {{ $labels.id }} on {{ $labels.instance }} reports an unhealthy status"),
    ]


def _alert(name: str, expr: str, minutes: int, severity: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": f"{minutes}m", "labels": {"severity": severity},
            "annotations": {"summary": summary}}


def alert_rules(ttft_p99_seconds: float, queue_targets: dict[str, int]) -> list[dict[str, Any]]:
    ttft = ("histogram_quantile(0.99, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket[10m])) "
            "or sum by (le, model_name) (rate(sglang:time_to_first_token_seconds_bucket[10m])))")
    requests = "sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total[10m]))"
    failures = "sum by (requested_model) (rate(litellm_proxy_failed_requests_metric_total[10m]))"
    rules = [
        _alert("LlmFleetGpuMemoryNearFull",
               "max by (Hostname, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)) > 0.98",
               10, "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} has under 2% of its memory free"),
        _alert("LlmFleetKvCacheNearFull",
               "max by (model_name) (vllm:kv_cache_usage_perc or sglang:token_usage) > 0.95",
               10, "warning", "{{ $labels.model_name }}: KV cache over 95% full; requests queue or are preempted"),
        _alert("LlmFleetTtftP99OverTarget", f"{ttft} > {ttft_p99_seconds}", 15, "warning",
               f"{{{{ $labels.model_name }}}}: p99 time to first token over the stack's {ttft_p99_seconds} s target"),
        _alert("LlmFleetGatewayErrorRate", f"{failures} / ({requests} > 0) > 0.05", 10, "critical",
               "{{ $labels.requested_model }}: over 5% of gateway requests fail"),
        _alert("LlmFleetFallbackInUse",
               "sum by (requested_model) (increase(litellm_deployment_successful_fallbacks_total[10m])) > 0",
               5, "info", "{{ $labels.requested_model }} is being served by its managed fallback provider"),
        _alert("LlmFleetNodeNotReady", 'kube_node_status_condition{condition="Ready",status="true"} == 0',
               10, "critical", "Node {{ $labels.node }} is not Ready"),
    ]
    for model, target in sorted(queue_targets.items()):
        waiting = (f'(sum by (model_name) (vllm:num_requests_waiting{{model_name="{model}"}}) '
                   f'or sum by (model_name) (sglang:num_queue_reqs{{model_name="{model}"}}))')
        rules.append(_alert(
            f"LlmFleetQueueGrowing{''.join(p.title() for p in model.replace('.', '-').split('-'))}",
            f"{waiting} > {target} and deriv({waiting}[10m:1m]) > 0", 10, "warning",
            f"{model}: more than {target} requests waiting and the queue is growing; add replicas or nodes"))
    return rules


def cost_rules(pools: dict[str, float]) -> list[dict[str, Any]]:
    """Nodes per pool (kube-state-metrics node labels, allowlisted in the chart values) and USD/h."""
    rules = []
    for pool, hourly in sorted(pools.items()):
        nodes = f'count(kube_node_labels{{label_llm_fleet_pool="{pool}"}}) or vector(0)'
        rules.append({"record": "llmfleet:pool_nodes", "expr": nodes, "labels": {"pool": pool}})
        rules.append({"record": "llmfleet:pool_hourly_usd", "expr": f"({nodes}) * {round(hourly, 4)}",
                      "labels": {"pool": pool}})
    return rules


def ksm_label(key: str) -> str:
    """A Kubernetes label as kube-state-metrics names it on kube_*_labels: `llm-fleet/pool` -> label_llm_fleet_pool."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


MODEL, POOL, ROLE = ksm_label(LABEL_MODEL), ksm_label(LABEL_POOL), ksm_label(LABEL_ROLE)
# one series per engine pod, value 1, carrying its model and pool (kube-state-metrics pod labels)
ENGINE_PODS = f'max by (namespace, pod, {MODEL}, {POOL}) (kube_pod_labels{{{ROLE}="engine"}})'
# `* on (namespace, pod) group_left (...) ENGINE_PODS`: keep engine pods only and give them model and pool
WITH_MODEL = f"* on (namespace, pod) group_left ({MODEL}, {POOL}) {ENGINE_PODS}"
NOT_READY = 'max by (namespace, pod) (kube_pod_status_ready{condition="true"}) == 0'
# the pod passed its readiness probe at some point of the last day (ready_time is exported only while Ready)
WAS_READY = "max by (namespace, pod) (max_over_time(kube_pod_status_ready_time[1d]))"
TERMINATING = "max by (namespace, pod) (kube_pod_deletion_timestamp)"


def engine_health_rules(startup: dict[tuple[str, str], tuple[int, int]]) -> list[dict[str, Any]]:
    """Recording rules: model load time (engine container start to Ready) and replica cold start (pod start
    to Ready) per engine pod with its model and pool, from kube-state-metrics timestamps (neither pinned
    engine exports a load-time metric of its own in both engines); and, per deployment, the planner's
    modeled cold start and startup budget (`dep.load.seconds`, `dep.load.probe_seconds`) to compare with."""
    engine_start = f'max by (namespace, pod) (kube_pod_container_state_started{{container="{ENGINE_CONTAINER}"}})'
    ready_at = "max by (namespace, pod) (kube_pod_status_ready_time)"
    pod_start = "max by (namespace, pod) (kube_pod_start_time)"
    rules = [  # `> 0`: a container restarted after the pod was Ready has no load time until Ready again
        {"record": "llmfleet:engine_load_seconds", "expr": f"(({ready_at} - on (namespace, pod) {engine_start}) > 0) "
                                                          f"{WITH_MODEL}"},
        {"record": "llmfleet:replica_cold_start_seconds",
         "expr": f"(({ready_at} - on (namespace, pod) {pod_start}) > 0) {WITH_MODEL}"},
    ]
    for (model, pool), (modeled, budget) in sorted(startup.items()):
        labels = {MODEL: model, POOL: pool}
        rules.append({"record": "llmfleet:engine_modeled_cold_start_seconds", "expr": f"vector({modeled})",
                      "labels": labels})
        rules.append({"record": "llmfleet:engine_startup_budget_seconds", "expr": f"vector({budget})",
                      "labels": labels})
    return rules


def engine_alerts() -> list[dict[str, Any]]:
    """An engine down (was Ready, is not; or Ready but its metrics endpoint does not answer), crash-looping,
    or still not Ready past its deployment's startup budget. Pods being deleted (a drain) are left out."""
    budget = f"on ({MODEL}, {POOL}) group_left () llmfleet:engine_startup_budget_seconds"
    stuck = (f"((time() - max by (namespace, pod) (kube_pod_start_time)) {WITH_MODEL}) > {budget} "
             f"and on (namespace, pod) ({NOT_READY}) unless on (namespace, pod) {WAS_READY} "
             f"unless on (namespace, pod) {TERMINATING}")
    down = (f"((({NOT_READY}) and on (namespace, pod) {WAS_READY}) "
            f'or (max by (namespace, pod) (up{{llm_fleet_model!=""}}) == 0 and on (namespace, pod) '
            f'(max by (namespace, pod) (kube_pod_status_ready{{condition="true"}}) == 1))) {WITH_MODEL} '
            f"unless on (namespace, pod) {TERMINATING}")
    crash = (f'(max by (namespace, pod) (kube_pod_container_status_waiting_reason{{reason="CrashLoopBackOff"}}) == 1 '
             f'or max by (namespace, pod) (kube_pod_init_container_status_waiting_reason{{reason="CrashLoopBackOff"}})'
             f' == 1 or max by (namespace, pod) (increase(kube_pod_container_status_restarts_total'
             f'{{container="{ENGINE_CONTAINER}"}}[30m])) > 2) {WITH_MODEL}')
    where = f"{{{{ $labels.{MODEL} }}}} on {{{{ $labels.{POOL} }}}}"
    return [
        _alert("LlmFleetEngineStuckLoading", stuck, 1, "warning",
               f"{where}: engine pod {{{{ $labels.pod }}}} is not Ready past its startup budget "
               "(llmfleet:engine_startup_budget_seconds, the planner's dep.load.probe_seconds)"),
        _alert("LlmFleetEngineDown", down, 5, "critical",
               f"{where}: engine pod {{{{ $labels.pod }}}} was serving and is not Ready, or its metrics endpoint "
               "does not answer"),
        _alert("LlmFleetEngineCrashLooping", crash, 5, "critical",
               f"{where}: engine pod {{{{ $labels.pod }}}} is crash-looping (CrashLoopBackOff or over 2 restarts "
               "in 30 min)"),
    ]


def prometheus_rule(namespace: str, ttft_p99_seconds: float, queue_targets: dict[str, int],
                    pool_prices: dict[str, float], alerts: bool,
                    startup: dict[tuple[str, str], tuple[int, int]] | None = None,
                    accelerator: str = "nvidia") -> dict[str, Any]:
    """startup: per (model, pool) the planner's (dep.load.seconds, dep.load.probe_seconds); on an
    Ascend cluster the NPU alerts replace the DCGM one."""
    groups = [{"name": "llm-fleet-cost", "interval": "1m", "rules": cost_rules(pool_prices)}] if pool_prices else []
    groups.append({"name": "llm-fleet-engines", "interval": "1m", "rules": engine_health_rules(startup or {})})
    if alerts:
        rules = alert_rules(ttft_p99_seconds, queue_targets) + engine_alerts()
        if accelerator == "ascend":
            rules = [r for r in rules if "DCGM_" not in r["expr"]] + npu_alert_rules()
        groups.append({"name": "llm-fleet-alerts", "rules": rules})
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": {"name": "llm-fleet", "namespace": namespace, "labels": LABELS},
            "spec": {"groups": groups}}


def dashboard_config_map(namespace: str) -> dict[str, Any]:
    """Picked up by the Grafana sidecar (label grafana_dashboard=1, searchNamespace ALL in the chart)."""
    json.loads(dashboard_json())  # a broken file fails the deploy, not Grafana
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "llm-fleet-dashboard", "namespace": namespace,
                         "labels": {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "llm-fleet"}},
            "data": {DASHBOARD_FILE: dashboard_json()}}


def prometheus_values(grafana: bool, alerts: bool) -> dict[str, Any]:
    """kube-prometheus-stack values: select every ServiceMonitor/PodMonitor/PrometheusRule (not only the
    release's), expose the pool label of nodes (cost rules) and the model/pool/role labels of pods (engine
    health rules), name the node on node-exporter series, Grafana on demand."""
    spec = {f"{kind}SelectorNilUsesHelmValues": False
            for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")}
    return {
        "prometheus": {"prometheusSpec": {**spec, "retention": "15d"}},
        "alertmanager": {"enabled": alerts},
        "grafana": {"enabled": grafana},
        "kube-state-metrics": {"metricLabelsAllowlist": [f"nodes=[{LABEL_POOL},node.kubernetes.io/instance-type]",
                                                         f"pods=[{LABEL_MODEL},{LABEL_POOL},{LABEL_ROLE}]"]},
        # node-exporter series carry the node's name (`node`), so node memory and disk I/O join kube_node_labels
        "prometheus-node-exporter": {"prometheus": {"monitor": {"relabelings": [
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}]}}},
    }
