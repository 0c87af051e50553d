"""Monitoring manifests and the shipped Grafana dashboard."""

from __future__ import annotations

import json

from infra.serving import monitoring


def test_engine_pod_monitor_scrapes_the_api_port_with_model_and_pool_labels():
    pm = monitoring.engine_pod_monitor("llm-fleet")
    assert pm["kind"] == "PodMonitor" and pm["spec"]["selector"] == {"matchLabels": {"llm-fleet/role": "engine"}}
    assert pm["spec"]["podTargetLabels"] == ["llm-fleet/model", "llm-fleet/pool"]
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_gateway_and_dcgm_service_monitors():
    sm = monitoring.gateway_service_monitor("llm-fleet", {"app.kubernetes.io/name": "llm-gateway"})
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    # LiteLLM answers /metrics with a 307 to /metrics/; no key (the gateway config opens it)
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics/" and "authorization" not in sm["spec"]["endpoints"][0]
    dcgm = monitoring.dcgm_service_monitor("llm-fleet", "dcgm-exporter")
    assert dcgm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "dcgm-exporter",
                                                       "app.kubernetes.io/instance": "dcgm-exporter"}
    assert dcgm["spec"]["endpoints"][0]["port"] == "metrics"


def test_alerts_cover_the_required_conditions():
    rule = monitoring.prometheus_rule("llm-fleet", 4.0, {"glm-5-1": 5, "qwen2-5-7b": 8},
                                      {"h200-base": 63.296, "h200-spot": 27.21728}, alerts=True)
    groups = {g["name"]: g["rules"] for g in rule["spec"]["groups"]}
    alerts = {r["alert"]: r for r in groups["llm-fleet-alerts"]}
    assert {"LlmFleetGpuMemoryNearFull", "LlmFleetKvCacheNearFull", "LlmFleetTtftP99OverTarget",
            "LlmFleetGatewayErrorRate", "LlmFleetFallbackInUse", "LlmFleetNodeNotReady",
            "LlmFleetQueueGrowingGlm51", "LlmFleetQueueGrowingQwen257B"} <= set(alerts)
    assert alerts["LlmFleetTtftP99OverTarget"]["expr"].endswith("> 4.0")
    assert "vllm:time_to_first_token_seconds_bucket" in alerts["LlmFleetTtftP99OverTarget"]["expr"]
    queue = alerts["LlmFleetQueueGrowingGlm51"]["expr"]
    assert 'model_name="glm-5-1"' in queue and "> 5 and deriv(" in queue
    assert "litellm_deployment_successful_fallbacks_total" in alerts["LlmFleetFallbackInUse"]["expr"]
    assert "DCGM_FI_DEV_FB_USED" in alerts["LlmFleetGpuMemoryNearFull"]["expr"]
    cost = groups["llm-fleet-cost"]
    hourly = [r for r in cost if r["record"] == "llmfleet:pool_hourly_usd"]
    assert [r["labels"]["pool"] for r in hourly] == ["h200-base", "h200-spot"]
    assert hourly[0]["expr"].endswith("* 63.296") and 'label_llm_fleet_pool="h200-base"' in hourly[0]["expr"]


def test_alerts_can_be_turned_off_but_cost_rules_stay():
    rule = monitoring.prometheus_rule("llm-fleet", 4.0, {"m": 5}, {"p": 1.0}, alerts=False)
    assert [g["name"] for g in rule["spec"]["groups"]] == ["llm-fleet-cost"]


def test_prometheus_values_select_every_monitor_and_expose_pool_labels():
    values = monitoring.prometheus_values(grafana=False, alerts=True)
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False and spec["ruleSelectorNilUsesHelmValues"] is False
    assert values["grafana"] == {"enabled": False}
    assert "llm-fleet/pool" in values["kube-state-metrics"]["metricLabelsAllowlist"][0]


def test_dashboard_is_shipped_and_covers_the_required_panels():
    dash = json.loads(monitoring.dashboard_json())
    assert dash["uid"] == "llm-fleet"
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    titles = {p["title"] for p in dash["panels"]}
    for metric in ("vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
                   "vllm:e2e_request_latency_seconds_bucket", "sglang:time_to_first_token_seconds_bucket",
                   "vllm:generation_tokens_total", "vllm:num_requests_running", "vllm:num_requests_waiting",
                   "sglang:num_queue_reqs", "vllm:kv_cache_usage_perc", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED",
                   "litellm_proxy_failed_requests_metric_total", "litellm_deployment_successful_fallbacks_total",
                   "llmfleet:pool_nodes", "llmfleet:pool_hourly_usd"):
        assert metric in exprs, metric
    for q in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({q}," in exprs
    assert {"Time to first token", "Cost per hour (GPU nodes)", "Nodes per pool", "Fallback rate"} <= titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cm = monitoring.dashboard_config_map("llm-fleet")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"][monitoring.DASHBOARD_FILE]) == dash


def test_dcgm_exporter_is_installed_where_its_service_monitor_looks(rendered):
    """The ServiceMonitor selects the chart's Service in the project namespace: the release must exist there."""
    records = rendered("prod")
    releases = {r["inputs"]["name"]: r["inputs"] for r in records if r["type"] == "kubernetes:helm.sh/v3:Release"}
    dcgm = releases["dcgm-exporter"]
    assert dcgm["namespace"] == "llm-fleet" and dcgm["version"] == "4.8.2"
    assert dcgm["values"]["serviceMonitor"]["enabled"] is False
    monitor = next(r for r in records if r["name"] == "serving-dcgm-monitor")
    assert monitor["inputs"]["spec"]["namespaceSelector"]["matchNames"] == [dcgm["namespace"]]


def test_fallback_ratio_divides_by_every_request_for_the_model():
    """Fallback-served requests are counted by LiteLLM under `<model>-fallback`: the ratio's denominator
    is the gateway's own per-model counter, which counts them under the model's name."""
    dash = json.loads(monitoring.dashboard_json())
    (panel,) = [p for p in dash["panels"] if p.get("title") == "Fallback rate"]
    expr = panel["targets"][0]["expr"]
    numerator, denominator = expr.split(" / ", 1)
    assert "litellm_deployment_successful_fallbacks_total" in numerator
    assert 'llmfleet_gateway_requests_total{model=~"$model"}' in denominator
    assert "litellm_proxy_total_requests_metric_total" not in denominator
