"""What the jobs read over HTTP: the engines' request metrics (Prometheus HTTP API, or a Prometheus
text page such as an engine's /metrics), the gateway's model list, and the bounded drain wait.

A pool is "in flight" while its engines run or queue requests: vLLM `vllm:num_requests_running` +
`vllm:num_requests_waiting`, SGLang `sglang:num_running_reqs` + `sglang:num_queue_reqs`, summed over
series carrying `llm_fleet_pool="<pool>"` (the engines' PodMonitor turns the pod label
`llm-fleet/pool` into that target label: infra/serving/monitoring.py, `podTargetLabels`). No series
for a pool is "unknown", never idle: engines that are still loading (or not scraped yet) report
nothing, and a pool judged idle from that would be drained under their feet. An unreachable source
is "unknown" too. The jobs never need these numbers to scale down safely (the engines' preStop drains
them); `fleet sweep` uses them to report idle pools.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from typing import Protocol

import requests

from infra.stack import names

POOL_LABEL = "llm_fleet_pool"           # Prometheus target label from the pod label llm-fleet/pool
POOL_NODE_LABEL = names.LABEL_POOL
IN_FLIGHT = ("vllm:num_requests_running", "vllm:num_requests_waiting",
             "sglang:num_running_reqs", "sglang:num_queue_reqs")
FINISHED = ("vllm:request_success_total", "sglang:num_requests_total")
TIMEOUT = 5.0
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class MetricsUnavailable(Exception):
    """The metrics source could not be read."""


class Source(Protocol):
    def in_flight(self, pool: str) -> float | None: ...
    def finished(self, pool: str, minutes: int) -> float | None: ...


def _selector(names: Iterable[str], pool: str) -> str:
    alternatives = "|".join(names)                      # pool names are [a-z0-9-] (config.py)
    return f'{{__name__=~"{alternatives}",{POOL_LABEL}="{pool}"}}'


class Prometheus:
    """The Prometheus HTTP API (`/api/v1/query`, instant queries)."""

    def __init__(self, url: str, http: requests.Session | None = None, timeout: float = TIMEOUT):
        self.url, self.http, self.timeout = url.rstrip("/"), http or requests.Session(), timeout

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        try:
            reply = self.http.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout)
            reply.raise_for_status()
            body = reply.json()
        except (requests.RequestException, ValueError) as err:
            raise MetricsUnavailable(f"{self.url}: {err}") from None
        if body.get("status") != "success":
            raise MetricsUnavailable(f"{self.url}: {body.get('errorType')}: {body.get('error')}")
        data = body.get("data", {})
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r.get("metric", {}), float(r["value"][1])) for r in data.get("result", [])]

    def _sum(self, promql: str) -> float | None:
        try:
            values = [v for _, v in self.query(promql) if not math.isnan(v)]
        except MetricsUnavailable:
            return None
        return sum(values) if values else None          # no series: unknown, not 0

    def in_flight(self, pool: str) -> float | None:
        return self._sum(f"sum({_selector(IN_FLIGHT, pool)})")

    def finished(self, pool: str, minutes: int) -> float | None:
        return self._sum(f"sum(increase({_selector(FINISHED, pool)}[{int(minutes)}m]))")


def parse_exposition(text: str, pool: str | None = None) -> dict[str, float]:
    """Prometheus text format -> value summed per metric name (only series of `pool` if they say)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        if pool is not None and POOL_LABEL in labels and labels[POOL_LABEL] != pool:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if not math.isnan(value):
            out[match.group(1)] = out.get(match.group(1), 0.0) + value
    return out


class Scrape:
    """Prometheus text pages per pool (e.g. each engine's /metrics, or the gateway's): in-flight only,
    since one page has no history to tell how long a pool has been idle."""

    def __init__(self, urls: Mapping[str, list[str]], http: requests.Session | None = None,
                 timeout: float = TIMEOUT):
        self.urls, self.http, self.timeout = urls, http or requests.Session(), timeout

    def in_flight(self, pool: str) -> float | None:
        if pool not in self.urls:
            return None
        total = 0.0
        for url in self.urls[pool]:
            try:
                reply = self.http.get(url, timeout=self.timeout)
                reply.raise_for_status()
            except requests.RequestException:
                return None
            values = parse_exposition(reply.text, pool)
            if not any(name in values for name in IN_FLIGHT):
                return None                             # a page without the engine's gauges: unknown
            total += sum(values.get(name, 0.0) for name in IN_FLIGHT)
        return total

    def finished(self, pool: str, minutes: int) -> float | None:
        return None


class FirstOf:
    """Ask each source in turn; the first that knows answers."""

    def __init__(self, sources: list[Source]):
        self.sources = sources

    def in_flight(self, pool: str) -> float | None:
        return next((v for s in self.sources if (v := s.in_flight(pool)) is not None), None)

    def finished(self, pool: str, minutes: int) -> float | None:
        return next((v for s in self.sources if (v := s.finished(pool, minutes)) is not None), None)


# ---------------------------------------------------------------------------------------------- readiness

def gateway_models(url: str, key: str | None, http: requests.Session | None = None,
                   timeout: float = TIMEOUT) -> set[str] | None:
    """Model ids the gateway's /v1/models lists; None if it cannot be read."""
    http = http or requests.Session()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        reply = http.get(f"{url.rstrip('/')}/v1/models", headers=headers, timeout=timeout)
        reply.raise_for_status()
        return {str(m.get("id")) for m in reply.json().get("data", [])}
    except (requests.RequestException, ValueError, AttributeError):
        return None


def ready_nodes_kubectl(pool: str) -> int | None:
    """Ready nodes labelled with the pool, from the current kubeconfig; None if it cannot check."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    try:
        done = subprocess.run([kubectl, "get", "nodes", "-l", f"{POOL_NODE_LABEL}={pool}", "-o", "json"],
                              capture_output=True, text=True, timeout=30, check=True)
        items = json.loads(done.stdout).get("items", [])
    except (subprocess.SubprocessError, OSError, ValueError):
        return None
    return sum(1 for node in items
               if any(c.get("type") == "Ready" and c.get("status") == "True"
                      for c in node.get("status", {}).get("conditions", [])))
