"""The hub reader against a real HTTP server on loopback (HF_ENDPOINT), with its cache and its errors."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.planning.hub import HubError, fetch_config, read_local


@pytest.fixture
def hub(monkeypatch):
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path == "/org/model/resolve/main/config.json":
                body = json.dumps({"hidden_size": 64}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path.startswith("/gated/"):
                self.send_response(401)
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield seen
    server.shutdown()
    server.server_close()


def test_fetch_then_cache(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert fetch_config("org/model") == {"hidden_size": 64}
    assert hub == [("/org/model/resolve/main/config.json", "Bearer hf_test")]
    assert fetch_config("org/model") == {"hidden_size": 64}
    assert len(hub) == 1                                               # second read from the cache


def test_gated_and_missing_models_say_what_to_do(hub):
    with pytest.raises(HubError, match="gated: accept its licence on the hub and set HF_TOKEN"):
        fetch_config("gated/model")
    with pytest.raises(HubError, match="not found on http://127.0.0.1"):
        fetch_config("org/missing", "v1")


def test_unreachable_hub(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubError, match="could not reach .* point `source` at a local directory"):
        fetch_config("org/model")


def test_bad_ids_and_local_errors(tmp_path):
    with pytest.raises(HubError, match="not a Hugging Face repo id"):
        fetch_config("no-slash")
    with pytest.raises(HubError, match="no config.json"):
        read_local(tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(HubError, match="not valid JSON"):
        read_local(tmp_path)
