"""Engine metrics and the gateway's model list, against a small local HTTP server."""

from __future__ import annotations

import json

import pytest

from scripts import metrics
from tests.jobs.conftest import closed_port_url, prometheus_reply

EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen",llm_fleet_pool="burst"} 2.0
vllm:num_requests_running{engine="0",model_name="qwen",llm_fleet_pool="other"} 7.0
vllm:num_requests_waiting{engine="0",model_name="qwen",llm_fleet_pool="burst"} 1.0
vllm:request_success_total{finished_reason="stop",model_name="qwen"} 12.0
sglang:num_running_reqs{model_name="glm, \\"5\\""} 4
vllm:gpu_cache_usage_perc{model_name="qwen"} NaN
"""


def test_parse_exposition_sums_per_metric_and_filters_by_pool():
    values = metrics.parse_exposition(EXPOSITION, "burst")
    assert values["vllm:num_requests_running"] == 2.0          # the other pool's 7 is not counted
    assert values["vllm:num_requests_waiting"] == 1.0
    assert values["sglang:num_running_reqs"] == 4.0            # no pool label: the page is the pool's
    assert "vllm:gpu_cache_usage_perc" not in values           # NaN is dropped
    assert metrics.parse_exposition(EXPOSITION)["vllm:num_requests_running"] == 9.0


def test_prometheus_in_flight_query_and_finished(http_server):
    seen = []

    def query(q):
        seen.append(q["query"])
        return prometheus_reply(3 if "increase" not in q["query"] else 0)

    http_server.routes["/api/v1/query"] = query
    prom = metrics.Prometheus(http_server.url)
    assert prom.in_flight("burst") == 3
    assert prom.finished("burst", 30) == 0
    assert seen[0] == ('sum({__name__=~"vllm:num_requests_running|vllm:num_requests_waiting|'
                       'sglang:num_running_reqs|sglang:num_queue_reqs",llm_fleet_pool="burst"})')
    assert seen[1].startswith("sum(increase({__name__=~\"vllm:request_success_total|sglang:num_requests_total\"")
    assert seen[1].endswith("[30m]))")


def test_prometheus_no_series_and_errors_are_unknown_never_idle(http_server):
    http_server.routes["/api/v1/query"] = lambda q: prometheus_reply(None)
    assert metrics.Prometheus(http_server.url).in_flight("burst") is None     # engines loading: not idle
    assert metrics.Prometheus(http_server.url).finished("burst", 30) is None
    http_server.routes["/api/v1/query"] = lambda q: prometheus_reply(0)
    assert metrics.Prometheus(http_server.url).in_flight("burst") == 0
    http_server.routes["/api/v1/query"] = lambda q: (
        400, "application/json", json.dumps({"status": "error", "errorType": "bad_data", "error": "parse"}))
    assert metrics.Prometheus(http_server.url).in_flight("burst") is None
    assert metrics.Prometheus(closed_port_url(), timeout=1).in_flight("burst") is None


def test_scrape_reads_text_pages_and_first_of_falls_back(http_server):
    http_server.routes["/metrics"] = lambda q: (200, "text/plain; version=0.0.4", EXPOSITION)
    scrape = metrics.Scrape({"burst": [f"{http_server.url}/metrics", f"{http_server.url}/metrics"]})
    assert scrape.in_flight("burst") == 2 * (2 + 1 + 4)
    assert scrape.in_flight("peak") is None and scrape.finished("burst", 30) is None
    http_server.routes["/other"] = lambda q: (200, "text/plain", "process_cpu_seconds_total 3\n")
    assert metrics.Scrape({"burst": [f"{http_server.url}/other"]}).in_flight("burst") is None   # no engine gauges
    both = metrics.FirstOf([metrics.Prometheus(closed_port_url(), timeout=1), scrape])
    assert both.in_flight("burst") == 14


@pytest.mark.parametrize("status, body, expected", [
    (200, {"data": [{"id": "qwen"}, {"id": "glm-5-1"}]}, {"qwen", "glm-5-1"}),
    (401, {"error": "bad key"}, None),
])
def test_gateway_models(http_server, status, body, expected):
    http_server.routes["/v1/models"] = lambda q: (status, "application/json", json.dumps(body))
    assert metrics.gateway_models(http_server.url, "sk-test") == expected
    assert http_server.hits[-1][2]["Authorization"] == "Bearer sk-test"
