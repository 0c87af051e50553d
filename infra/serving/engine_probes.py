"""Engine probes and shutdown hooks (pure): the startup budget from the planner's cold start, readiness,
the leader's drain and the workers' wait for it. Used by infra/serving/engines.py (`spec` is its EngineSpec)."""

from __future__ import annotations

import math
from typing import Any

from infra.planning.sizing import PORT

STARTUP_PERIOD = 10
PORT_NAME = "http"

# preStop: wait (bounded by the grace period) until the engine has no running or waiting request.
_DRAIN = """\
import re, time, urllib.request
time.sleep(5)
deadline = time.time() + {budget}
pattern = re.compile(r"^(vllm:num_requests_(running|waiting)|sglang:num_(running|queue)_reqs)(\\{{.*\\}})? (\\S+)$")
while time.time() < deadline:
    try:
        text = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except Exception:
        break
    if sum(float(m.group(5)) for m in map(pattern.match, text.splitlines()) if m) == 0:
        break
    time.sleep(2)
"""


def probe_thresholds(probe_seconds: int, period: int = STARTUP_PERIOD) -> int:
    """failureThreshold so that threshold x period >= the planner's startup budget."""
    return max(1, math.ceil(probe_seconds / period))


def probes(spec: Any) -> dict[str, Any]:
    """Startup on /health with the planner's load budget; readiness /health (vLLM: open while /v1 asks for
    the API key; SGLang: /health_generate, which runs a one-token generation); liveness /health."""
    def get(path: str) -> dict[str, Any]:
        return {"path": path, "port": PORT_NAME}
    ready = "/health_generate" if spec.engine == "sglang" else "/health"
    return {
        "startupProbe": {"httpGet": get("/health"), "periodSeconds": STARTUP_PERIOD, "timeoutSeconds": 5,
                         "failureThreshold": probe_thresholds(spec.dep.load.probe_seconds)},
        "readinessProbe": {"httpGet": get(ready), "periodSeconds": 15, "failureThreshold": 3,
                           "timeoutSeconds": 30 if spec.engine == "sglang" else 5},
        "livenessProbe": {"httpGet": get("/health"), "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 6},
    }


_LEADER_HEALTH = ("import os, urllib.request; urllib.request.urlopen("
                  "'http://%s:{port}/health' % os.environ['LWS_LEADER_ADDRESS'], timeout=10)")


def worker_probes(spec: Any) -> dict[str, Any]:
    """A headless worker serves no HTTP: its probes ask the leader's /health (the group is healthy
    or not as a whole; LWS recreates the group when a pod restarts)."""
    def probe(period: int, failures: int) -> dict[str, Any]:
        cmd = ["python3", "-c", _LEADER_HEALTH.format(port=PORT)]
        return {"exec": {"command": cmd}, "periodSeconds": period, "timeoutSeconds": 15, "failureThreshold": failures}
    return {"startupProbe": probe(STARTUP_PERIOD, probe_thresholds(spec.dep.load.probe_seconds)),
            "readinessProbe": probe(15, 3), "livenessProbe": probe(20, 6)}


# A worker's preStop: stay up while the leader still answers /health (it is draining its requests, which
# need every worker's GPUs), bounded by the same budget as the leader's drain.
_WORKER_WAIT = """\
import os, time, urllib.request
deadline = time.time() + {budget}
url = 'http://%s:{port}/health' % os.environ['LWS_LEADER_ADDRESS']
while time.time() < deadline:
    try:
        urllib.request.urlopen(url, timeout=5)
    except Exception:
        break
    time.sleep(2)
"""


def drain_budget(spec: Any) -> int:
    return max(10, spec.grace_seconds - 20)
