"""The S3 copy job downloads through the stack's Hugging Face mirror (storage.hubEndpoint)."""

from __future__ import annotations

from infra.aws.data.copy_weights import hub_fetcher
from scripts.render import render
from tests.aws.test_network import stack_file
from tests.conftest import of_type


def test_the_copy_job_gets_the_mirror_as_hf_endpoint(tmp_path):
    def edit(config):
        config.setdefault("llm-fleet:storage", {})["hubEndpoint"] = "https://hf-mirror.com"

    records = render(stack_file(tmp_path, edit))
    jobs = [j["inputs"] for j in of_type(records, "kubernetes:batch/v1:Job") if j["parent"] == "weights"]
    assert jobs
    for job in jobs:
        (container,) = job["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HF_ENDPOINT"] == "https://hf-mirror.com"


def test_the_copy_script_streams_from_the_mirror(monkeypatch):
    import huggingface_hub

    urls = []

    class Stop(Exception):
        pass

    def fake_stream(method, url, **kwargs):
        urls.append(url)
        raise Stop

    monkeypatch.setattr(huggingface_hub, "get_session", lambda: type("S", (), {"stream": staticmethod(fake_stream)}))
    fetch = hub_fetcher("org/model", None, "https://hf-mirror.com")
    try:
        next(iter(fetch("config.json", "abc123")))
    except Stop:
        pass
    assert urls == ["https://hf-mirror.com/org/model/resolve/abc123/config.json"]
