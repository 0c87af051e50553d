"""Monitoring manifests and the shipped Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml

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


def test_alerts_can_be_turned_off_but_cost_and_engine_recording_rules_stay():
    rule = monitoring.prometheus_rule("llm-fleet", 4.0, {"m": 5}, {"p": 1.0}, alerts=False)
    assert [g["name"] for g in rule["spec"]["groups"]] == ["llm-fleet-cost", "llm-fleet-engines"]


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

# ---------------------------------------------------------------------------------------------- metric names

METRICS_FILE = Path(monitoring.__file__).parent / "dashboards" / "metrics.yaml"
RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def exposed_metrics() -> set[str]:
    """Every series name the pinned exporters and engines expose, from dashboards/metrics.yaml."""
    names = set()
    for source in yaml.safe_load(METRICS_FILE.read_text()).values():
        names |= set(source.get("gauges", []))
        names |= {n if n.endswith("_total") else f"{n}_total" for n in source.get("counters", [])}
        names |= {f"{n}{suffix}" for n in source.get("histograms", []) for suffix in ("_bucket", "_sum", "_count")}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, from its syntax tree (promql-parser)."""
    found: set[str] = set()

    def walk(node):
        kind = type(node).__name__
        if kind == "VectorSelector":
            if node.name:
                found.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    found.update(m.value.split("|") if str(m.op) == "MatchOp.Re" else [m.value])
        elif kind == "MatrixSelector":
            walk(node.vector_selector)
        elif kind == "BinaryExpr":
            walk(node.lhs)
            walk(node.rhs)
        elif kind == "Call":
            for arg in node.args:
                walk(arg)
        elif kind == "AggregateExpr":
            walk(node.expr)
            if node.param is not None:
                walk(node.param)
        elif kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            walk(node.expr)
        else:
            assert kind in ("NumberLiteral", "StringLiteral"), kind

    walk(promql_parser.parse(expr))
    return found


def dashboard_queries(dash: dict) -> list[tuple[str, str]]:
    out = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":      # label_values(<selector>, <label>): the selector is PromQL
            out.append((var["name"], re.fullmatch(r"label_values\((.*), *\w+\)", var["query"]["query"]).group(1)))
    return out


def rule_groups(records) -> list[dict]:
    (rule,) = [r for r in records if r["type"] == RULE_TYPE]
    return rule["inputs"]["spec"]["groups"]


def test_metric_names_come_from_the_syntax_tree():
    assert metric_names('sum by (le) (rate(vllm:x_bucket{model_name=~"$model"}[5m])) or vector(0)') == {"vllm:x_bucket"}
    assert metric_names('{__name__=~"a|b",pool="p"} * on (node) group_left (x) -c offset 5m > 1') == {"a", "b", "c"}
    assert metric_names("max_over_time(deriv(d[10m:1m])[1h:]) unless e") == {"d", "e"}
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (le (rate(x[5m]))")


def test_the_metric_list_names_its_source_and_version_for_every_exporter():
    doc = yaml.safe_load(METRICS_FILE.read_text())
    assert set(doc) == {"kube-state-metrics", "node-exporter", "dcgm-exporter", "vllm", "sglang", "litellm",
                        "prometheus", "ascend-npu-exporter", "llm-fleet-gateway"}
    for name, source in doc.items():
        assert source["version"] and source["source"], name
    # the versions are the pins the program deploys
    from infra.serving import controllers, gateway_k8s
    from infra.stack.sections import DEFAULT_ENGINES
    assert doc["dcgm-exporter"]["version"] == controllers.DCGM_IMAGE_TAG.removesuffix("-distroless")
    assert doc["vllm"]["version"] == DEFAULT_ENGINES["vllm"][1]
    assert doc["sglang"]["version"] == DEFAULT_ENGINES["sglang"][1]
    assert gateway_k8s.LITELLM_IMAGE.endswith(":" + doc["litellm"]["version"])
    from infra.serving.gateway import DEMAND_METRIC
    assert doc["llm-fleet-gateway"]["counters"] == [DEMAND_METRIC]      # the one series our gateway hook adds
    assert controllers.PROMETHEUS.version == "88.5.3"      # kube-state-metrics v2.20.0, node-exporter v1.12.1 with it


def test_every_dashboard_and_rule_query_names_a_metric_the_pinned_versions_emit(rendered):
    """Every panel, template variable, recording rule and alert of the rendered prod stack: each metric it
    selects is exposed by a pinned exporter or engine (metrics.yaml) or recorded by our own rules."""
    emitted = exposed_metrics()
    groups = rule_groups(rendered("prod"))
    rules = [r for g in groups for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    queries = dashboard_queries(json.loads(monitoring.dashboard_json()))
    queries += [(r.get("alert") or r["record"], r["expr"]) for r in rules]
    unknown = {(where, name) for where, expr in queries for name in metric_names(expr) - emitted - recorded}
    assert unknown == set()
    used = {name for _, expr in queries for name in metric_names(expr)}
    assert {"node_memory_MemAvailable_bytes", "node_disk_read_bytes_total", "node_disk_io_time_seconds_total",
            "kube_pod_status_ready_time", "kube_pod_container_state_started", "llmfleet:engine_load_seconds",
            "llmfleet:pool_hourly_usd", "DCGM_FI_DEV_GPU_UTIL"} <= used
    # a misspelt metric is caught, not just any string
    assert metric_names("rate(vllm:generation_token_total[5m])") - emitted == {"vllm:generation_token_total"}


def test_kube_state_metrics_labels_the_queries_use_are_allowlisted():
    """label_<key> exists on kube_*_labels only for keys in the chart's metricLabelsAllowlist."""
    allow = monitoring.prometheus_values(grafana=True, alerts=True)["kube-state-metrics"]["metricLabelsAllowlist"]
    allowed = {monitoring.ksm_label(key) for entry in allow for key in entry.split("=[", 1)[1].rstrip("]").split(",")}
    text = monitoring.dashboard_json() + json.dumps(monitoring.prometheus_rule("n", 4.0, {"m": 1}, {"p": 1.0}, True,
                                                                               {("m", "p"): (60, 120)}))
    used = set(re.findall(r"\blabel_[a-z0-9_]+", text)) - {"label_values"}
    assert used and used <= allowed, used - allowed
    relabel = monitoring.prometheus_values(grafana=True, alerts=True)["prometheus-node-exporter"]
    assert relabel["prometheus"]["monitor"]["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}]


# ---------------------------------------------------------------------------------------------- engine health

def test_model_load_time_is_recorded_per_model_and_pool_with_the_planners_budget(rendered):
    from infra.planning.plan import build_plan
    from infra.stack.config import load_stack_file
    from tests.conftest import STACKS

    plan = build_plan(load_stack_file(STACKS / "Pulumi.prod.yaml"))
    (engines_group,) = [g for g in rule_groups(rendered("prod")) if g["name"] == "llm-fleet-engines"]
    by_record: dict[str, list[dict]] = {}
    for r in engines_group["rules"]:
        by_record.setdefault(r["record"], []).append(r)
    (load,) = by_record["llmfleet:engine_load_seconds"]
    assert 'kube_pod_container_state_started{container="engine"}' in load["expr"]
    assert "kube_pod_status_ready_time" in load["expr"] and 'label_llm_fleet_role="engine"' in load["expr"]
    assert "group_left (label_llm_fleet_model, label_llm_fleet_pool)" in load["expr"]
    budgets = {(r["labels"]["label_llm_fleet_model"], r["labels"]["label_llm_fleet_pool"]): r["expr"]
               for r in by_record["llmfleet:engine_startup_budget_seconds"]}
    modeled = {(r["labels"]["label_llm_fleet_model"], r["labels"]["label_llm_fleet_pool"]): r["expr"]
               for r in by_record["llmfleet:engine_modeled_cold_start_seconds"]}
    assert budgets == {(d.model, d.pool): f"vector({d.load.probe_seconds})" for d in plan.deployments}
    assert modeled == {(d.model, d.pool): f"vector({d.load.seconds})" for d in plan.deployments}
    assert len(budgets) >= 3


def test_engine_alerts_cover_down_crash_looping_and_stuck_loading():
    rule = monitoring.prometheus_rule("llm-fleet", 4.0, {}, {}, alerts=True, startup={("m", "p"): (600, 1200)})
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    stuck = alerts["LlmFleetEngineStuckLoading"]["expr"]
    # compared per model and pool with the planner's budget, only for pods never Ready and not being deleted
    assert "> on (label_llm_fleet_model, label_llm_fleet_pool) group_left () llmfleet:engine_startup_budget_seconds" \
        in stuck
    assert "kube_pod_start_time" in stuck and "unless on (namespace, pod) max by (namespace, pod) " \
        "(max_over_time(kube_pod_status_ready_time[1d]))" in stuck
    assert "kube_pod_deletion_timestamp" in stuck
    down = alerts["LlmFleetEngineDown"]["expr"]
    assert 'max by (namespace, pod) (up{llm_fleet_model!=""}) == 0' in down and "kube_pod_deletion_timestamp" in down
    crash = alerts["LlmFleetEngineCrashLooping"]["expr"]
    assert 'reason="CrashLoopBackOff"' in crash and 'kube_pod_container_status_restarts_total{container="engine"}' \
        in crash
    assert {a["labels"]["severity"] for a in (alerts["LlmFleetEngineDown"], alerts["LlmFleetEngineCrashLooping"])} \
        == {"critical"}
    for a in alerts.values():
        promql_parser.parse(a["expr"])
    off = monitoring.prometheus_rule("llm-fleet", 4.0, {}, {}, alerts=False, startup={("m", "p"): (600, 1200)})
    assert [g["name"] for g in off["spec"]["groups"]] == ["llm-fleet-engines"]   # load time is recorded anyway


def test_the_engine_container_name_the_rules_select_is_the_one_the_program_renders(rendered):
    containers = {c["name"] for r in rendered("prod") if r["type"].endswith(("LeaderWorkerSet", "apps/v1:Deployment"))
                  and r["name"].startswith("serving-")
                  for c in _pod_specs(r["inputs"]) for c in c.get("containers", [])}
    assert monitoring.ENGINE_CONTAINER in containers


def _pod_specs(inputs: dict) -> list[dict]:
    spec = inputs.get("spec") or {}
    if "leaderWorkerTemplate" in spec:
        lwt = spec["leaderWorkerTemplate"]
        return [t["spec"] for t in (lwt.get("leaderTemplate"), lwt.get("workerTemplate")) if t]
    return [spec["template"]["spec"]] if "template" in spec else []


# ---------------------------------------------------------------------------------------------- dashboard schema

# keys Grafana reads that the foundation SDK's dashboard schema does not model
SCHEMA_GAPS = {".templating.list[1].definition"}


def _dropped(ours, theirs, path=""):
    if isinstance(ours, dict):
        for key, value in ours.items():
            if key not in theirs:
                yield f"{path}.{key}"
            else:
                yield from _dropped(value, theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(theirs) == len(ours), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from _dropped(a, b, f"{path}[{i}]")
    else:
        assert ours == theirs, path


def test_dashboard_round_trips_through_grafanas_dashboard_schema():
    """Decoded and re-encoded by grafana-foundation-sdk (Grafana's dashboard and panel kinds as Python types):
    every key we ship is one the schema knows (a misspelt key is dropped and fails here), values survive."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    dash = json.loads(monitoring.dashboard_json())
    again = json.loads(JSONEncoder().encode(Dashboard.from_json(dash)))
    assert set(_dropped(dash, again)) == SCHEMA_GAPS
    broken = json.loads(monitoring.dashboard_json())
    broken["panels"][1]["gridpos"] = broken["panels"][1].pop("gridPos")
    assert ".panels[1].gridpos" in set(_dropped(broken, json.loads(JSONEncoder().encode(Dashboard.from_json(broken)))))


def test_dashboard_panels_do_not_overlap():
    cells = {}
    for p in json.loads(monitoring.dashboard_json())["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (p["title"], cells.get((x, y)))
                cells[(x, y)] = p["title"]


def test_the_jobs_drain_and_idle_queries_name_emitted_metrics():
    """`fleet reconcile` / `sweep` read in-flight and finished requests from the engines: same pinned names."""
    from scripts import metrics

    assert set(metrics.IN_FLIGHT) | set(metrics.FINISHED) <= exposed_metrics()
