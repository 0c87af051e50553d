"""The real LiteLLM proxy (pinned in pyproject) run with the config and auth hook we generate,
in front of fake engines on loopback: auth, team limits, fallback, streaming with reasoning.

One proxy for the module (startup dominates: ~8 s on 2 cores). Nothing leaves 127.0.0.1: the
upstreams are local, the cost map is the bundled one, and any other HTTP(S) call is sent to a
closed local port through the proxy env vars, so it fails instead of reaching the internet.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra.serving.gateway import (
    AUTH_HOOK_FILE,
    STATIC_ENV,
    Backend,
    Fallback,
    GatewaySpec,
    Route,
    Team,
    auth_hook_source,
    env_vars,
    litellm_config,
)

from .upstream import Upstream

if importlib.util.find_spec("litellm") is None:  # checked without importing it into this process
    pytest.skip("litellm[proxy] is a dev dependency", allow_module_level=True)

STARTUP_DEADLINE_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 30
KEYS = {
    "LITELLM_MASTER_KEY": "sk-live-test-master",
    "FALLBACK_API_KEY": "fallback-provider-key",
    "TEAM_ALPHA_KEY": "sk-live-test-alpha",
    "TEAM_TIGHT_KEY": "sk-live-test-tight",
}
MASTER, ALPHA, TIGHT = KEYS["LITELLM_MASTER_KEY"], KEYS["TEAM_ALPHA_KEY"], KEYS["TEAM_TIGHT_KEY"]


@dataclass
class Gateway:
    port: int
    private: Upstream  # engine behind "glm-5.1" (mode switched by tests)
    cold: Upstream  # engine behind "glm-5" (stopped by the scale-to-zero test)
    fallback: Upstream  # plays the managed API behind both routes
    startup_seconds: float

    def call(self, method: str, path: str, body: dict | None = None, key: str | None = None):
        """Send one request; returns (status, headers, parsed JSON or text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=_headers(key))
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


def _headers(key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the developer's (no real provider keys, no DATABASE_URL)."""
    closed = f"http://127.0.0.1:{_free_port()}"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **STATIC_ENV,
        "LITELLM_TELEMETRY": "False",  # a no-op in 1.106 (telemetry was removed); kept for older pins
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "ALL_PROXY": closed,
        "NO_PROXY": "127.0.0.1,localhost",
        **KEYS,
    }


def _litellm_cli() -> str:
    cli = Path(sys.executable).with_name("litellm")
    found = str(cli) if cli.exists() else shutil.which("litellm")
    if found is None:
        pytest.fail("the litellm CLI is not installed next to this Python (pip install 'litellm[proxy]')")
    return found


def _log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _wait_until_live(proc: subprocess.Popen, port: int, log: Path) -> float:
    start = time.monotonic()
    deadline = start + STARTUP_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"litellm exited with {proc.returncode} during startup:\n{_log_tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/liveliness")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.25)
    pytest.fail(f"litellm not live after {STARTUP_DEADLINE_SECONDS} s:\n{_log_tail(log)}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    private = Upstream("private", "glm-5.1-fp8", chunk_delay_seconds=0.1).start()
    cold = Upstream("cold", "glm-5-fp8").start()
    fallback = Upstream("fallback", "zai-org/GLM-5.1").start()
    spec = GatewaySpec(
        routes=(
            Route("glm-5.1", (Backend(private.base_url, private.served_model),),
                  Fallback("openai-compatible", fallback.served_model, "FALLBACK_API_KEY", fallback.base_url),
                  timeout_seconds=2, stream_timeout_seconds=2),
            Route("glm-5", (Backend(cold.base_url, cold.served_model),),
                  Fallback("openai-compatible", fallback.served_model, "FALLBACK_API_KEY", fallback.base_url),
                  timeout_seconds=5, stream_timeout_seconds=5),
        ),
        teams=(
            Team("alpha", "TEAM_ALPHA_KEY", rpm=1000, tpm=None, models=("glm-5.1",)),
            Team("tight", "TEAM_TIGHT_KEY", rpm=2, tpm=None, models=()),
        ),
        num_retries=1,
        request_timeout_seconds=30,
    )
    assert set(env_vars(spec)) == set(KEYS), "the test must provide exactly the env the config asks for"
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(litellm_config(spec), sort_keys=False))
    (workdir / AUTH_HOOK_FILE).write_text(auth_hook_source(spec))
    port = _free_port()
    log = workdir / "litellm.log"
    proc = None
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [_litellm_cli(), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                 "--num_workers", "1"],
                cwd=workdir, env=_proxy_env(workdir), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        startup = _wait_until_live(proc, port, log)
        print(f"\nlitellm proxy live after {startup:.1f} s")
        yield Gateway(port, private, cold, fallback, startup)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for upstream in (private, cold, fallback):
            upstream.stop()


@pytest.fixture
def private_mode(gateway):
    """Set the private engine's behaviour for one test, restored afterwards."""
    def set_mode(mode: str) -> None:
        gateway.private.mode = mode
    yield set_mode
    gateway.private.mode = "ok"


def _text(payload: dict) -> str:
    return payload["choices"][0]["message"]["content"]


# 1. keys that may pass reach the private engine


def test_master_key_reaches_private_engine(gateway):
    before = len(gateway.private.chat_requests())
    status, headers, payload = gateway.chat("glm-5.1", MASTER)
    assert status == 200, payload
    assert _text(payload) == "Hello from upstream private"
    assert payload["choices"][0]["message"]["reasoning_content"] == "Thinking about it."
    assert headers["x-litellm-attempted-fallbacks"] == "0"
    seen = gateway.private.chat_requests()[before:]
    assert len(seen) == 1
    assert seen[0].body["model"] == "glm-5.1-fp8", "the engine gets its served model name"
    assert seen[0].headers.get("authorization") == "Bearer none", "no real key goes to the engine"


def test_team_key_reaches_private_engine(gateway):
    before = len(gateway.private.chat_requests())
    status, _, payload = gateway.chat("glm-5.1", ALPHA, chat_template_kwargs={"enable_thinking": False})
    assert status == 200, payload
    assert _text(payload) == "Hello from upstream private"
    (seen,) = gateway.private.chat_requests()[before:]
    # engine-specific fields (GLM's thinking switch) pass through untouched
    assert seen.body["chat_template_kwargs"] == {"enable_thinking": False}


def test_team_key_is_limited_to_its_models(gateway):
    status, _, payload = gateway.chat("glm-5", ALPHA)
    assert status == 403, payload
    status, _, payload = gateway.chat("glm-5.1-fallback", ALPHA)
    assert status == 403, "a restricted team must not call the paid fallback directly"


def test_team_key_rate_limit_is_enforced(gateway):
    statuses = [gateway.chat("glm-5.1", TIGHT)[0] for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_team_key_is_for_inference_only(gateway):
    status, _, payload = gateway.call("GET", "/v1/models", key=ALPHA)
    assert status == 200 and "glm-5.1" in {m["id"] for m in payload["data"]}
    assert gateway.call("POST", "/key/generate", {"models": []}, ALPHA)[0] == 403


# 2. no key, wrong key


@pytest.mark.parametrize("key", [None, "", "sk-wrong", "not-even-sk", MASTER + "x"])
def test_missing_or_wrong_key_is_401(gateway, key):
    before = len(gateway.private.chat_requests())
    status, _, payload = gateway.chat("glm-5.1", key)
    assert status == 401, payload
    assert len(gateway.private.chat_requests()) == before, "a refused request must not reach the engine"


def test_model_list_needs_a_key(gateway):
    assert gateway.call("GET", "/v1/models")[0] == 401
    status, _, payload = gateway.call("GET", "/v1/models", key=MASTER)
    assert status == 200 and {m["id"] for m in payload["data"]} >= {"glm-5.1", "glm-5"}


# 3. private engine unavailable -> managed fallback answers


def _assert_fallback_answered(gateway, headers, payload, fallback_group: str, fb_before: int) -> None:
    assert headers["x-litellm-attempted-fallbacks"] == "1"
    assert headers["x-litellm-model-group"] == fallback_group
    assert _text(payload) == "Hello from upstream fallback"
    seen = gateway.fallback.chat_requests()[fb_before:]
    assert seen, "the fallback upstream saw nothing"
    assert seen[-1].body["model"] == "zai-org/GLM-5.1"
    assert seen[-1].headers.get("authorization") == "Bearer fallback-provider-key"


def test_scaled_to_zero_falls_back(gateway):
    # first the private engine answers, then its port closes (no replicas)
    status, _, payload = gateway.chat("glm-5", MASTER)
    assert status == 200 and _text(payload) == "Hello from upstream cold"
    gateway.cold.stop()
    cold_before, fb_before = len(gateway.cold.chat_requests()), len(gateway.fallback.chat_requests())
    status, headers, payload = gateway.chat("glm-5", MASTER)
    assert status == 200, payload
    _assert_fallback_answered(gateway, headers, payload, "glm-5-fallback", fb_before)
    assert len(gateway.cold.chat_requests()) == cold_before


def test_unavailable_engine_falls_back_for_a_team_key(gateway, private_mode):
    private_mode("unavailable")  # 503, as while the engine loads its weights
    fb_before = len(gateway.fallback.chat_requests())
    status, headers, payload = gateway.chat("glm-5.1", ALPHA)
    assert status == 200, payload
    _assert_fallback_answered(gateway, headers, payload, "glm-5.1-fallback", fb_before)


def test_engine_timeout_falls_back(gateway, private_mode):
    private_mode("hang")  # answers after 5 s; the route's timeout is 2 s
    fb_before = len(gateway.fallback.chat_requests())
    start = time.monotonic()
    status, headers, payload = gateway.chat("glm-5.1", MASTER)
    assert status == 200, payload
    _assert_fallback_answered(gateway, headers, payload, "glm-5.1-fallback", fb_before)
    assert time.monotonic() - start < REQUEST_TIMEOUT_SECONDS


# 4. streaming: several chunks, arriving over time, reasoning_content intact


def _stream(gateway: Gateway, model: str, key: str) -> tuple[int, dict, list[tuple[float, dict]], bool]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=REQUEST_TIMEOUT_SECONDS)
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=_headers(key))
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        events: list[tuple[float, dict]] = []
        done = False
        while not done:
            line = resp.readline()  # read as the proxy sends, not after the end
            if not line:
                break
            line = line.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                done = True
            else:
                events.append((time.monotonic(), json.loads(data)))
        return resp.status, headers, events, done
    finally:
        conn.close()


def _joined(events, field: str) -> str:
    return "".join(e["choices"][0]["delta"].get(field) or "" for _, e in events if e.get("choices"))


def test_stream_arrives_in_chunks_with_reasoning(gateway):
    status, headers, events, done = _stream(gateway, "glm-5.1", MASTER)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert done, "stream ended without [DONE]"
    assert len(events) > 1
    assert _joined(events, "reasoning_content") == "Thinking about it."
    assert _joined(events, "content") == "Hello from upstream private"
    # the engine sends 9 chunks (role, 3 reasoning, 4 content, stop): each is passed on as its own event,
    # in order, not merged into one answer (no wall-clock bound: a loaded machine must not fail it)
    deltas = [e["choices"][0]["delta"] for _, e in events if e.get("choices")]
    reasoning = [d["reasoning_content"] for d in deltas if d.get("reasoning_content")]
    content = [d["content"] for d in deltas if d.get("content")]
    assert reasoning == ["Thinking", " about", " it."]
    assert content == ["Hello", " from", " upstream", " private"]
    texts = [d.get("reasoning_content") or d.get("content") for d in deltas]
    assert [t for t in texts if t] == reasoning + content      # all reasoning first, then the answer


def test_stream_falls_back_when_first_chunk_is_late(gateway, private_mode):
    private_mode("hang")  # nothing within the route's 2 s stream_timeout
    fb_before = len(gateway.fallback.chat_requests())
    status, headers, events, done = _stream(gateway, "glm-5.1", MASTER)
    assert status == 200 and done
    assert headers["x-litellm-model-group"] == "glm-5.1-fallback"
    assert _joined(events, "content") == "Hello from upstream fallback"
    assert _joined(events, "reasoning_content") == "Thinking about it."
    assert len(gateway.fallback.chat_requests()) > fb_before
