"""Monitoring manifests (pure builders): the engine PodMonitor, gateway and DCGM ServiceMonitors, the
PrometheusRule (alerts + per-pool cost recording rules) and the Grafana dashboard ConfigMap.

Metric names: vLLM `vllm:*` (vllm/v1/metrics/loggers.py), SGLang `sglang:*` (srt/metrics/collector.py),
LiteLLM `litellm_*` (litellm/integrations/prometheus.py), DCGM `DCGM_FI_*` (dcgm-exporter default counters),
kube-state-metrics `kube_*`. The engine pods' `llm-fleet/model` and `llm-fleet/pool` labels become the
target labels `llm_fleet_model` / `llm_fleet_pool`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from infra.stack.names import (
    LABEL_MODEL,
    LABEL_POOL,
    LABEL_ROLE,
    PROMETHEUS_RELEASE,
)

MONITORING_API = "monitoring.coreos.com/v1"
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


def gateway_service_monitor(namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": MONITORING_API, "kind": "ServiceMonitor",
            "metadata": {"name": "llm-gateway", "namespace": namespace, "labels": LABELS},
            "spec": {"selector": {"matchLabels": selector}, "namespaceSelector": {"matchNames": [namespace]},
                     "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}}


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


def prometheus_rule(namespace: str, ttft_p99_seconds: float, queue_targets: dict[str, int],
                    pool_prices: dict[str, float], alerts: bool, accelerator: str = "nvidia") -> dict[str, Any]:
    groups = [{"name": "llm-fleet-cost", "interval": "1m", "rules": cost_rules(pool_prices)}] if pool_prices else []
    if alerts:
        rules = alert_rules(ttft_p99_seconds, queue_targets)
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
    release's), expose the pool label of nodes for the cost rules, Grafana on demand."""
    spec = {f"{kind}SelectorNilUsesHelmValues": False
            for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")}
    return {
        "prometheus": {"prometheusSpec": {**spec, "retention": "15d"}},
        "alertmanager": {"enabled": alerts},
        "grafana": {"enabled": grafana},
        "kube-state-metrics": {"metricLabelsAllowlist": [f"nodes=[{LABEL_POOL},node.kubernetes.io/instance-type]"]},
    }
