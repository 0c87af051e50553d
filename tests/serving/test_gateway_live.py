"""The real LiteLLM proxy (pinned in pyproject) started from the files the program renders for the
shipped prod and staging stacks: the gateway ConfigMap (config.yaml and the two hook modules), the
container's args and its env (plain values as rendered, each Secret-backed variable given a test value).

The only change made to the rendered config is the address of each upstream: every `api_base` (the
models' engine Services, the fallback provider) becomes a fake engine on loopback, and the test checks
that no other target is left. Outbound HTTP(S) goes through HTTP_PROXY / HTTPS_PROXY to a loopback trap
that records and drops every connection: any attempt, or an error answer slower than 2 s, fails.
One proxy per stack for the module (startup dominates: ~6-10 s on 2 cores).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from infra.serving import gateway_k8s
from infra.serving.gateway import DEMAND_METRIC, FALLBACK_SUFFIX
from infra.serving.monitoring import GATEWAY_METRICS_PATH

from .live_gateway import (
    REQUEST_TIMEOUT_SECONDS,
    EgressTrap,
    Gateway,
    auth_headers,
    free_port,
    litellm_cli,
    log_tail,
    point_upstreams_at_loopback,
    proxy_args,
    proxy_env,
    rendered_gateway,
    wait_until_live,
)
from .upstream import GATE_TIMEOUT, REASONING_PARTS, Upstream

if importlib.util.find_spec("litellm") is None:  # checked without importing it into this process
    pytest.skip("litellm[proxy] is a dev dependency", allow_module_level=True)

ERROR_DEADLINE_SECONDS = 2.0       # issue 17: an error answer must not wait on a blocked outbound call
# per stack: (a model with a managed fallback, a model without one); llama-3-1-8b is a name LiteLLM
# picks a Hugging Face tokenizer for, which it used to download on the error path
BIG = {"prod": ("glm-5-1", "qwen2-5-7b"), "staging": ("glm-5-1", "llama-3-1-8b")}


@pytest.fixture(scope="module", params=["prod", "staging"])
def gateway(request, tmp_path_factory) -> Iterator[Gateway]:
    stack = request.param
    workdir = tmp_path_factory.mktemp(f"gateway-{stack}")
    files, container = rendered_gateway(stack)
    config = yaml.safe_load(files["config.yaml"])
    models = [e["model_name"] for e in config["model_list"] if not e["model_name"].endswith(FALLBACK_SUFFIX)]
    engines = {m: Upstream(m, m, chunk_delay_seconds=0.01).start() for m in models}
    provider = Upstream("provider", "zai-org/GLM-5.1", chunk_delay_seconds=0.01).start()
    point_upstreams_at_loopback(config, engines, provider)
    for name, text in files.items():
        (workdir / name).write_text(yaml.safe_dump(config, sort_keys=False) if name == "config.yaml" else text)
    trap = EgressTrap()
    env, keys = proxy_env(container, trap, workdir)
    port = free_port()
    log = workdir / "litellm.log"
    proc = None
    try:
        with log.open("w") as out:
            proc = subprocess.Popen([litellm_cli(), *proxy_args(container, workdir / "config.yaml", port)],
                                    cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        startup = wait_until_live(proc, port, log)
        print(f"\nlitellm proxy ({stack}) live after {startup:.1f} s")
        teams = {k.removeprefix("TEAM_").removesuffix("_API_KEY").lower().replace("_", "-"): v
                 for k, v in keys.items() if k.startswith("TEAM_")}
        gw = Gateway(stack, port, config, keys, engines, provider, trap, startup, log, teams)
        # the first request after start pays LiteLLM's lazy imports (~2 s on 2 busy cores), whatever
        # it is: one per model first, so the 2 s bound below times the error path, not the warm-up
        for model in models:
            assert gw.chat(model, gw.master)[0] == 200, log_tail(log)
        yield gw
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for upstream in (*engines.values(), provider):
            upstream.stop()
        trap.close()


@pytest.fixture
def prod(gateway) -> Gateway:
    if gateway.stack != "prod":
        pytest.skip("the shipped staging stack has no team keys")
    return gateway


@pytest.fixture
def engine_mode(gateway):
    """Set a model engine's behaviour for one test, restored afterwards; "down" closes its port for the
    rest of the module (a Service with no Ready endpoint)."""
    changed: list[Upstream] = []

    def set_mode(model: str, mode: str) -> None:
        changed.append(gateway.engines[model])
        if mode == "down":
            gateway.engines[model].stop()
        else:
            gateway.engines[model].mode = mode
    yield set_mode
    for upstream in changed:
        upstream.mode = "ok"


def _text(payload: dict) -> str:
    return payload["choices"][0]["message"]["content"]


def _served_by(payload: dict) -> str:
    return _text(payload).rsplit(" ", 1)[-1]


# 1. keys


@pytest.mark.parametrize("key", [None, "", "sk-wrong", "test-litellm-master-keyx"])
def test_missing_or_wrong_key_is_401(gateway, key):
    big = BIG[gateway.stack][0]
    before = len(gateway.engines[big].chat_requests())
    status, _, payload = gateway.chat(big, key)
    assert status == 401, payload
    assert len(gateway.engines[big].chat_requests()) == before, "a refused request must not reach the engine"
    assert gateway.call("GET", "/v1/models")[0] == 401


def test_model_not_allowed_is_403(prod):
    big, small = BIG["prod"]
    assert prod.chat(big, prod.teams["research"])[0] == 403          # research: models [qwen2-5-7b]
    assert prod.chat(small, prod.teams["research"])[0] == 200
    # the paid fallback is the router's to call, never a team's, with or without a model list
    for team in ("research", "risk", "legal"):
        status, _, payload = prod.chat(big + FALLBACK_SUFFIX, prod.teams[team])
        assert status == 403, (team, payload)
    assert prod.call("POST", "/key/generate", {"models": []}, prod.teams["risk"])[0] == 403


def test_engines_get_the_engine_key_and_fields_pass_through(gateway):
    big = BIG[gateway.stack][0]
    status, _, payload = gateway.chat(big, gateway.master, chat_template_kwargs={"enable_thinking": False})
    assert status == 200, payload
    assert payload["choices"][0]["message"]["reasoning_content"] == "Thinking about it."
    seen = gateway.engines[big].chat_requests()[-1]
    assert seen.headers["authorization"] == f"Bearer {gateway.keys['LLMFLEET_ENGINE_API_KEY']}"
    assert seen.body["model"] == big and seen.body["chat_template_kwargs"] == {"enable_thinking": False}


# 2. routing: private first, the fallback only when no replica answers


def test_one_private_backend_per_model_and_no_fallback_while_it_is_ready(gateway):
    big = BIG[gateway.stack][0]
    private = [e for e in gateway.config["model_list"] if e["model_name"] == big]
    assert len(private) == 1, "one Service per model: its placements at zero are never picked"
    fb_before = len(gateway.provider.chat_requests())
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: gateway.chat(big, gateway.master), range(12)))
    assert [a[0] for a in answers] == [200] * 12
    assert {_served_by(a[2]) for a in answers} == {big}
    assert {a[1]["x-litellm-attempted-fallbacks"] for a in answers} == {"0"}
    assert len(gateway.provider.chat_requests()) == fb_before


def test_falls_back_when_no_replica_answers_and_counts_demand_under_the_model(gateway, engine_mode):
    big = BIG[gateway.stack][0]
    before = gateway.demand().get(big, 0.0)
    engine_mode(big, "unavailable")            # 503, as while every replica loads
    status, headers, payload = gateway.chat(big, gateway.master)
    assert status == 200, payload
    assert headers["x-litellm-model-group"] == big + FALLBACK_SUFFIX
    assert _served_by(payload) == "provider"
    seen = gateway.provider.chat_requests()[-1]
    assert seen.headers["authorization"] == f"Bearer {gateway.keys[gateway_k8s.env_name('FALLBACK', big)]}"
    after = gateway.demand()
    assert after[big] == before + 1, after
    assert big + FALLBACK_SUFFIX not in after


def test_fallback_never_team_gets_503_not_a_leak(prod, engine_mode):
    big = BIG["prod"][0]
    engine_mode(big, "unavailable")
    fb_before = len(prod.provider.chat_requests())
    start = time.monotonic()
    status, headers, payload = prod.chat(big, prod.teams["legal"])
    assert time.monotonic() - start < ERROR_DEADLINE_SECONDS
    assert status == 503, payload
    assert headers["retry-after"] == "60"
    assert "may not leave the cluster" in payload["error"]["message"]
    assert len(prod.provider.chat_requests()) == fb_before, "a fallback: never team reached the provider"
    # the same moment, a team that may leave is served by the fallback
    assert prod.chat(big, prod.teams["risk"])[0] == 200


def test_model_at_zero_without_fallback_is_503_scaling_up_fast(gateway, engine_mode):
    small = BIG[gateway.stack][1]
    engine_mode(small, "down")                 # connection refused: no Ready endpoint behind the Service
    start = time.monotonic()
    status, headers, payload = gateway.chat(small, gateway.master)
    elapsed = time.monotonic() - start
    assert status == 503, payload
    assert headers["retry-after"] == "60"
    assert f"{small} is scaling up" in payload["error"]["message"]
    assert elapsed < ERROR_DEADLINE_SECONDS, f"the error took {elapsed:.1f} s"


# 3. metrics and demand


def test_metrics_need_no_key_and_show_litellm_series(gateway):
    """What the ServiceMonitor scrapes, without a key (LiteLLM 1.106 asks for one by default: 401)."""
    status, _, text = gateway.call("GET", GATEWAY_METRICS_PATH)
    assert status == 200, text
    assert "litellm_proxy_total_requests_metric_total" in text
    assert DEMAND_METRIC in text


def test_only_authenticated_requests_count_as_demand(gateway):
    big = BIG[gateway.stack][0]
    before = gateway.demand()
    for i in range(50):
        assert gateway.chat(big, None if i % 2 else f"garbage-{i}")[0] == 401
    assert gateway.demand() == before, "keyless requests moved the demand series"
    for _ in range(5):
        assert gateway.chat(big, gateway.master)[0] == 200
    after = gateway.demand()
    assert after[big] == before.get(big, 0.0) + 5


# 4. streaming


def test_stream_arrives_in_chunks_in_order(gateway):
    big = BIG[gateway.stack][0]
    engine = gateway.engines[big]
    engine.gate = threading.Event()
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=REQUEST_TIMEOUT_SECONDS)
    body = {"model": big, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=auth_headers(gateway.master))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
        deltas, done = [], False
        while not done:
            line = resp.readline()
            if not line:
                break
            line = line.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                done = True
                continue
            choices = json.loads(data).get("choices") or [{}]
            delta = choices[0].get("delta") or {}
            for field_name in ("reasoning_content", "content"):
                if delta.get(field_name):
                    deltas.append((field_name, delta[field_name]))
            if len([d for d in deltas if d[0] == "reasoning_content"]) == len(REASONING_PARTS):
                engine.gate.set()    # the engine holds the rest until the client has these chunks
    finally:
        engine.gate = None
        conn.close()
    assert done, "stream ended without [DONE]"
    assert GATE_TIMEOUT not in "".join(t for _, t in deltas), "the proxy buffered the stream"
    assert deltas == [("reasoning_content", p) for p in REASONING_PARTS] + [
        ("content", p) for p in ("Hello", " from", " upstream", f" {big}")]


# 5. nothing left the machine (runs last for each stack)


def test_no_outbound_connection_was_attempted(gateway):
    assert gateway.trap.attempts == [], f"the proxy tried to reach the internet: {gateway.trap.attempts}"
