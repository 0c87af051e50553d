"""Running the rendered gateway for tests/serving/test_gateway_live.py: the files and container the
program renders for a stack, the upstreams pointed at loopback, a trap for outbound connections, and a
client for the proxy."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.serving import gateway_k8s
from infra.serving.gateway import DEMAND_METRIC, FALLBACK_SUFFIX
from infra.serving.monitoring import GATEWAY_METRICS_PATH
from tests.conftest import STACKS, render_cached

from .upstream import Upstream

STARTUP_DEADLINE_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 30


class EgressTrap:
    """A loopback port standing in for the internet: records the first line of every connection
    (`CONNECT huggingface.co:443 ...`) and closes it, so the client fails at once."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    first = conn.recv(512).split(b"\r\n", 1)[0].decode(errors="replace")
                except OSError:
                    first = "(nothing sent)"
                self.attempts.append(first)

    def close(self) -> None:
        self._sock.close()


@dataclass
class Gateway:
    stack: str
    port: int
    config: dict
    keys: dict[str, str]                  # env var -> test value (the Secret-backed env)
    engines: dict[str, Upstream]          # model -> its Service's stand-in
    provider: Upstream                    # every fallback provider
    trap: EgressTrap
    startup_seconds: float
    log: Path
    teams: dict[str, str] = field(default_factory=dict)   # team -> key

    @property
    def master(self) -> str:
        return self.keys["LITELLM_MASTER_KEY"]

    def call(self, method: str, path: str, body: dict | None = None, key: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=auth_headers(key))
            resp = conn.getresponse()
            raw = resp.read().decode()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
        finally:
            conn.close()

    def chat(self, model: str, key: str | None, **extra):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        return self.call("POST", "/v1/chat/completions", body, key)

    def demand(self) -> dict[str, float]:
        """model -> value of the demand counter, summed over teams, from an unauthenticated scrape."""
        status, _, text = self.call("GET", GATEWAY_METRICS_PATH)
        assert status == 200, text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(DEMAND_METRIC + "{"):
                labels, value = line.rsplit(" ", 1)
                model = labels.split('model="', 1)[1].split('"', 1)[0]
                out[model] = out.get(model, 0.0) + float(value)
        return out


def auth_headers(key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def litellm_cli() -> str:
    cli = Path(sys.executable).with_name("litellm")
    found = str(cli) if cli.exists() else shutil.which("litellm")
    if found is None:
        pytest.fail("the litellm CLI is not installed next to this Python (pip install 'litellm[proxy]')")
    return found


def log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def rendered_gateway(stack: str) -> tuple[dict[str, str], dict]:
    """(files of the gateway ConfigMap, the gateway container) as the program renders them."""
    records = render_cached(str(STACKS / f"Pulumi.{stack}.yaml"))
    (cm,) = [r for r in records if r["type"] == "kubernetes:core/v1:ConfigMap"
             and r["inputs"]["metadata"]["name"] == gateway_k8s.NAME]
    (dep,) = [r for r in records if r["type"] == "kubernetes:apps/v1:Deployment"
              and r["inputs"]["metadata"]["name"] == gateway_k8s.NAME]
    (container,) = dep["inputs"]["spec"]["template"]["spec"]["containers"]
    return dict(cm["inputs"]["data"]), container


def proxy_args(container: dict, config: Path, port: int) -> list[str]:
    """The rendered args with the config path, bind address and port of this machine."""
    args = list(container["args"])
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert set(flags) == {"--config", "--host", "--port"}, args
    assert flags["--config"] == f"{gateway_k8s.CONFIG_DIR}/config.yaml"
    return ["--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def proxy_env(container: dict, trap: EgressTrap, home: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(process env, Secret-backed test values): the rendered env, nothing of the developer's."""
    plain, keys = {}, {}
    for item in container["env"]:
        if "value" in item:
            plain[item["name"]] = item["value"]
        else:
            assert "secretKeyRef" in item["valueFrom"], item
            keys[item["name"]] = f"test-{item['name'].lower().replace('_', '-')}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           **plain, **keys,
           "HTTP_PROXY": trap.url, "HTTPS_PROXY": trap.url, "ALL_PROXY": trap.url,
           "http_proxy": trap.url, "https_proxy": trap.url, "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}
    return env, keys


def point_upstreams_at_loopback(config: dict, engines: dict[str, Upstream], provider: Upstream) -> None:
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        name = entry["model_name"]
        if name.endswith(FALLBACK_SUFFIX):
            assert params["api_base"].startswith("https://"), params
            params["api_base"] = provider.base_url
        else:
            assert params["api_base"] == f"http://{name}-engine.llm-fleet.svc.cluster.local:8000/v1", params
            params["api_base"] = engines[name].base_url
    targets = {e["litellm_params"]["api_base"] for e in config["model_list"]}
    assert all(t.startswith("http://127.0.0.1:") for t in targets), targets


def wait_until_live(proc: subprocess.Popen, port: int, log: Path) -> float:
    start = time.monotonic()
    while time.monotonic() < start + STARTUP_DEADLINE_SECONDS:
        if proc.poll() is not None:
            pytest.fail(f"litellm exited with {proc.returncode} during startup:\n{log_tail(log)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health/liveliness")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.25)
    pytest.fail(f"litellm not live after {STARTUP_DEADLINE_SECONDS} s:\n{log_tail(log)}")
