"""The engine-health and cost recording rules and the engine alerts evaluated by Prometheus's own rule tester
(`promtool test rules`) on kube-state-metrics series we write: load time per model and pool, cost per hour
by pool, and which pod each alert names (stuck loading, down, crash-looping) and which it leaves alone
(drained, serving, not an engine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from infra.serving import monitoring

NS = "llm-fleet"
BUDGETS = {("glm-5-1", "h200"): (1200, 1800), ("qwen", "l4"): (300, 600)}   # (modeled, startup budget) s
# the engine PodMonitor's target: namespace and pod, model and pool as target labels (no uid)
UP = f'up{{{{namespace="{NS}",pod="{{pod}}",llm_fleet_model="glm-5-1",llm_fleet_pool="h200",job="llm-engines"}}}}'


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.skip("promtool not installed (Debian package `prometheus`): the rule semantics are not checked here")
    pytest.skip("promtool not installed: apt-get install prometheus")


def _values(steps: list[tuple[int, float | None]], minutes: int = 60) -> str:
    """Promtool's series notation, one sample a minute: [(from_minute, value or None=absent)]."""
    out = []
    for i, (start, value) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else minutes + 1
        n = end - start
        if n <= 0:
            continue
        token = "_" if value is None else f"{value:g}"
        out.append(token if n == 1 else f"{token}x{n - 1}" if value is not None else " ".join(["_"] * n))
    return " ".join(out)


def _pod(pod: str, model: str, pool: str, *, role: str = "engine", start: int = 0, engine_start: int | None = 60,
         ready: list[tuple[int, float | None]] | None = None, ready_time: list[tuple[int, float | None]] | None = None,
         extra: list[tuple[str, str]] = ()) -> list[dict]:
    """The kube-state-metrics series of one pod (times in seconds, steps in minutes)."""
    ident = f'namespace="{NS}",pod="{pod}",uid="u-{pod}"'
    series = [
        (f'kube_pod_labels{{{ident},label_llm_fleet_role="{role}",label_llm_fleet_model="{model}",'
         f'label_llm_fleet_pool="{pool}"}}', _values([(0, 1)])),
        (f"kube_pod_start_time{{{ident}}}", _values([(0, start)])),
        (f'kube_pod_status_ready{{{ident},condition="true"}}', _values(ready or [(0, 0)])),
    ]
    if engine_start is not None:
        series.append((f'kube_pod_container_state_started{{{ident},container="engine"}}',
                       _values([(0, engine_start)])))
    if ready_time:
        series.append((f"kube_pod_status_ready_time{{{ident}}}", _values(ready_time)))
    series += [(name.format(ident=ident, pod=pod), values) for name, values in extra]
    return [{"series": s, "values": v} for s, v in series]


def _summary(alert: str, labels: dict[str, str]) -> str:
    rules = {r["alert"]: r for r in monitoring.engine_alerts()}
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], rules[alert]["annotations"]["summary"])


def _alert(alert: str, severity: str, pod: str, model: str | None = None, pool: str | None = None, **extra) -> dict:
    labels = {"namespace": NS, "pod": pod, "severity": severity, **extra}
    if model:
        labels |= {"label_llm_fleet_model": model, "label_llm_fleet_pool": pool}
    return {"exp_labels": labels, "exp_annotations": {"summary": _summary(alert, labels)}}


def test_engine_health_rules_under_prometheus(tmp_path):
    promtool = _promtool()
    rule = monitoring.prometheus_rule(NS, 4.0, {}, {"h200": 63.296, "l4": 0.8048}, alerts=True, startup=BUDGETS)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    ready_at_25 = [(0, 0), (25, 1)]
    series = (
        # loads: pod up at 60 s, engine container at 300 s, Ready at 1500 s (minute 25)
        _pod("ok-0", "glm-5-1", "h200", start=60, engine_start=300, ready=ready_at_25,
             ready_time=[(0, None), (25, 1500)],
             extra=[(UP, _values([(0, 0), (25, 1)]))])
        # never Ready: past the qwen/l4 budget (600 s) at minute 10
        + _pod("stuck-0", "qwen", "l4", start=0, engine_start=120)
        # Ready from minute 5 to 20, then not (and not being deleted)
        + _pod("down-0", "qwen", "l4", ready=[(0, 0), (5, 1), (20, 0)], ready_time=[(0, None), (5, 300), (20, None)])
        # the same, but deleted at minute 20 (a drain): no alert
        + _pod("drain-0", "qwen", "l4", ready=[(0, 0), (5, 1), (20, 0)], ready_time=[(0, None), (5, 300), (20, None)],
               extra=[("kube_pod_deletion_timestamp{{{ident}}}", _values([(0, None), (20, 1200)]))])
        # Ready, but its /metrics stops answering at minute 10
        + _pod("mute-0", "glm-5-1", "h200", ready=[(0, 1)], ready_time=[(0, 60)],
               extra=[(UP, _values([(0, 1), (10, 0)]))])
        # CrashLoopBackOff from minute 10
        + _pod("crash-0", "glm-5-1", "h200",
               extra=[('kube_pod_container_status_waiting_reason{{{ident},container="engine",reason="CrashLoopBackOff"}}',
                       _values([(0, 0), (10, 1)]))])
        # not an engine (no model budget, role gateway): never Ready, never alerted on
        + _pod("gw-0", "qwen", "l4", role="gateway", engine_start=None)
        # two h200 nodes from minute 0, a third from minute 30; no l4 node
        + [{"series": f'kube_node_labels{{node="n{i}",label_llm_fleet_pool="h200"}}', "values": _values(steps)}
           for i, steps in enumerate([[(0, 1)], [(0, 1)], [(0, None), (30, 1)]])]
    )
    glm, qwen = ("glm-5-1", "h200"), ("qwen", "l4")
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {"expr": "llmfleet:engine_load_seconds", "eval_time": "40m", "exp_samples": [
                    {"labels": f'llmfleet:engine_load_seconds{{namespace="{NS}",pod="ok-0",'
                               'label_llm_fleet_model="glm-5-1",label_llm_fleet_pool="h200"}', "value": 1200}]},
                {"expr": 'llmfleet:replica_cold_start_seconds{pod="ok-0"}', "eval_time": "40m", "exp_samples": [
                    {"labels": f'llmfleet:replica_cold_start_seconds{{namespace="{NS}",pod="ok-0",'
                               'label_llm_fleet_model="glm-5-1",label_llm_fleet_pool="h200"}', "value": 1440}]},
                {"expr": 'llmfleet:engine_load_seconds{pod="ok-0"}', "eval_time": "20m", "exp_samples": []},
                # cost per hour by pool: node count x the catalog price, 0 for a pool without nodes
                {"expr": "llmfleet:pool_hourly_usd", "eval_time": "20m", "exp_samples": [
                    {"labels": 'llmfleet:pool_hourly_usd{pool="h200"}', "value": 126.592},
                    {"labels": 'llmfleet:pool_hourly_usd{pool="l4"}', "value": 0}]},
                {"expr": 'llmfleet:pool_hourly_usd{pool="h200"}', "eval_time": "40m", "exp_samples": [
                    {"labels": 'llmfleet:pool_hourly_usd{pool="h200"}', "value": 189.888}]},
                {"expr": "llmfleet:engine_startup_budget_seconds", "eval_time": "1m", "exp_samples": [
                    {"labels": 'llmfleet:engine_startup_budget_seconds{label_llm_fleet_model="glm-5-1",'
                               'label_llm_fleet_pool="h200"}', "value": 1800},
                    {"labels": 'llmfleet:engine_startup_budget_seconds{label_llm_fleet_model="qwen",'
                               'label_llm_fleet_pool="l4"}', "value": 600}]},
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "LlmFleetEngineStuckLoading", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "LlmFleetEngineStuckLoading",
                 "exp_alerts": [_alert("LlmFleetEngineStuckLoading", "warning", "stuck-0", *qwen)]},
                # crash-0 and ok-0 (glm, budget 1800 s) are still within theirs at minute 25
                {"eval_time": "25m", "alertname": "LlmFleetEngineStuckLoading",
                 "exp_alerts": [_alert("LlmFleetEngineStuckLoading", "warning", "stuck-0", *qwen)]},
                {"eval_time": "18m", "alertname": "LlmFleetEngineDown",
                 "exp_alerts": [_alert("LlmFleetEngineDown", "critical", "mute-0", *glm)]},
                {"eval_time": "30m", "alertname": "LlmFleetEngineDown",
                 "exp_alerts": [_alert("LlmFleetEngineDown", "critical", "down-0", *qwen),
                                _alert("LlmFleetEngineDown", "critical", "mute-0", *glm)]},
                {"eval_time": "12m", "alertname": "LlmFleetEngineCrashLooping", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "LlmFleetEngineCrashLooping",
                 "exp_alerts": [_alert("LlmFleetEngineCrashLooping", "critical", "crash-0", *glm)]},
            ],
        }],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
