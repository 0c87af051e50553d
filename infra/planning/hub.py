"""Read a model's config.json: from a local directory, or from the Hugging Face hub (cached on disk).

The stack's `storage.hubEndpoint` picks the hub: a Hugging Face mirror's URL (e.g. https://hf-mirror.com),
or `modelscope` (ModelScope's file API, for clusters that cannot reach huggingface.co). Without it,
`HF_ENDPOINT` (default https://huggingface.co) and `HF_TOKEN` are honoured as the hub's own tools do.
`LLMFLEET_CACHE` moves the cache (default ~/.cache/llm-fleet).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

TIMEOUT_SECONDS = 20
MODELSCOPE = "modelscope"
MODELSCOPE_URL = "https://www.modelscope.cn"    # modelscope SDK's default endpoint


class HubError(ValueError):
    """The config could not be read; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("LLMFLEET_CACHE", Path.home() / ".cache" / "llm-fleet")) / "hf"


def read_local(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "config.json"
    try:
        cfg = json.loads(path.read_text())
        described = Path(directory) / "quant_model_description.json"
        if described.is_file() and not cfg.get("quantization_config"):
            # an msModelSlim checkpoint (Ascend): the scheme lives beside config.json
            scheme = json.loads(described.read_text()).get("model_quant_type")
            cfg["quantization_config"] = {"quant_method": "ascend", "model_quant_type": scheme}
        return cfg
    except FileNotFoundError:
        raise HubError(f"{path}: no config.json in that directory") from None
    except ValueError as err:
        raise HubError(f"{path}: not valid JSON ({err})") from None


def config_url(hf_id: str, revision: str, endpoint: str | None) -> tuple[str, str]:
    """(hub base, URL of config.json) for the stack's hubEndpoint (None: HF_ENDPOINT or huggingface.co)."""
    if endpoint == MODELSCOPE:
        # ModelScope's default branch is `master`; its file API (modelscope SDK get_file_download_url)
        rev = "master" if revision == "main" else revision
        return MODELSCOPE_URL, f"{MODELSCOPE_URL}/api/v1/models/{hf_id}/repo?Revision={rev}&FilePath=config.json"
    base = (endpoint or os.environ.get("HF_ENDPOINT", "https://huggingface.co")).rstrip("/")
    return base, f"{base}/{hf_id}/resolve/{revision}/config.json"


def fetch_config(hf_id: str, revision: str = "main", session: Any = None,
                 endpoint: str | None = None) -> dict[str, Any]:
    """config.json of `hf_id` at `revision` from `endpoint` (see config_url); a cached copy is used when
    present (pin a commit to be exact). `requests` is imported only when the hub is really asked:
    `fleet plan` on catalog models stays light."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", hf_id) or not re.fullmatch(r"[\w./-]+", revision):
        raise HubError(f"{hf_id}@{revision}: not a Hugging Face repo id and revision")
    cached = cache_dir() / hf_id / revision / "config.json"
    if cached.is_file():
        return read_local(cached.parent)
    hub, url = config_url(hf_id, revision, endpoint)
    send_token = os.environ.get("HF_TOKEN") and endpoint != MODELSCOPE     # never hand an HF token to another hub
    headers = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if send_token else {}
    import requests

    try:
        response = (session or requests).get(url, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as err:
        raise HubError(f"{hf_id}: could not reach {hub} ({err.__class__.__name__}); check the network, "
                       "set storage.hubEndpoint to a mirror (or modelscope), or point `source` at a local directory "
                       "with config.json") from None
    if response.status_code in (401, 403):
        raise HubError(f"{hf_id}: the hub refused access ({response.status_code}); the model may be gated: "
                       "accept its licence on the hub and set HF_TOKEN")
    if response.status_code == 404:
        raise HubError(f"{hf_id}@{revision}: not found on {hub}; check the id and revision")
    if response.status_code != 200:
        raise HubError(f"{hf_id}: the hub answered {response.status_code} for {url}")
    try:
        data = response.json()
    except ValueError:
        raise HubError(f"{hf_id}: config.json from {url} is not JSON") from None
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(cached)
    return data
