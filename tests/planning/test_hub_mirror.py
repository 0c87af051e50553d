"""storage.hubEndpoint: the planner's config fetch goes to the stack's HF mirror or to ModelScope."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.planning import hub as hubmod
from infra.planning.hub import config_url, fetch_config
from infra.planning.plan import build_plan
from infra.stack.config import parse_config
from tests.conftest import FIXTURES

QWEN = (FIXTURES / "hf" / "Qwen__Qwen3-30B-A3B" / "config.json").read_bytes()


@pytest.fixture
def mirror():
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.path in ("/Qwen/Qwen3-30B-A3B/resolve/main/config.json",
                               "/api/v1/models/Qwen/Qwen3-30B-A3B/repo?Revision=master&FilePath=config.json")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(QWEN) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(QWEN)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_modelscope_uses_its_file_api_and_master_branch():
    base, url = config_url("Eco-Tech/GLM-5.1-w4a8", "main", "modelscope")
    assert base == "https://www.modelscope.cn"
    assert url == "https://www.modelscope.cn/api/v1/models/Eco-Tech/GLM-5.1-w4a8/repo?Revision=master&FilePath=config.json"
    assert config_url("org/m", "v1", "https://hf-mirror.com/")[1] == "https://hf-mirror.com/org/m/resolve/v1/config.json"


def test_a_mirror_endpoint_wins_over_hf_endpoint(mirror, monkeypatch):
    url, seen = mirror                                  # HF_ENDPOINT points at a closed port (conftest)
    assert fetch_config("Qwen/Qwen3-30B-A3B", endpoint=url)["model_type"] == "qwen3_moe"
    assert seen == [("/Qwen/Qwen3-30B-A3B/resolve/main/config.json", None)]


def test_modelscope_never_receives_the_hf_token(mirror, monkeypatch):
    url, seen = mirror
    monkeypatch.setattr(hubmod, "MODELSCOPE_URL", url)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    fetch_config("Qwen/Qwen3-30B-A3B", endpoint="modelscope")
    assert seen == [("/api/v1/models/Qwen/Qwen3-30B-A3B/repo?Revision=master&FilePath=config.json", None)]


def test_the_plan_fetches_from_the_stacks_hub_endpoint(mirror, stack_values):
    url, seen = mirror
    values = stack_values("existing-cluster")
    values["llm-fleet:storage"] = {"hubEndpoint": url}
    values["llm-fleet:models"] = [{"name": "qwen3", "source": "Qwen/Qwen3-30B-A3B", "precision": "bf16",
                                   "pool": "h100", "maxContext": 32768}]
    plan = build_plan(parse_config(values, "x"))
    assert plan.deployments[0].model == "qwen3" and seen[0][0].startswith("/Qwen/Qwen3-30B-A3B/resolve/main/")
