"""The renders of the shipped stacks match their reviewed golden files in tests/golden/.

A deliberate change: refresh with `python -m scripts.golden`, read the diff, commit it with the change."""

from __future__ import annotations

import json

import pytest

from scripts.cmd_diff import diff_records
from scripts.cmd_render import dumps
from scripts.golden import golden_path, shipped_stacks
from tests.conftest import STACKS


@pytest.mark.parametrize("stack", shipped_stacks())
def test_render_matches_golden(rendered, stack):
    path = golden_path(stack)
    assert path.is_file(), f"no golden render for {stack}: run `python -m scripts.golden {stack}` and review it"
    records = rendered(STACKS / f"Pulumi.{stack}.yaml")
    if dumps(records) != path.read_text():
        drift = diff_records(json.loads(path.read_text()), records)
        summary = {k: [f"{i['type']} {i['name']}" + (f" ({', '.join(c['path'] for c in i['changes'][:5])})"
                                                     if "changes" in i else "") for i in v][:10]
                   for k, v in drift.items() if v}
        if not summary:                       # same inputs: show where the text differs (parents, order)
            import difflib
            summary = "".join(list(difflib.unified_diff(path.read_text().splitlines(True),
                                                        dumps(records).splitlines(True), n=1))[:30])
        pytest.fail(f"the {stack} render drifted from {path.name}: {json.dumps(summary, indent=1)}\n"
                    f"if intended: python -m scripts.golden {stack}, then review and commit the diff")


def test_render_is_deterministic():
    from scripts.render import render
    first = dumps(render(STACKS / "Pulumi.dev.yaml"))
    assert dumps(render(STACKS / "Pulumi.dev.yaml")) == first


def test_pulumi_secrets_never_appear_in_a_render():
    """A gateway master key and an HF token given as Pulumi secrets reach their Kubernetes Secrets
    as secret outputs: the render (and so the engine's plan and the golden files) shows [secret]."""
    import json as _json

    from scripts.render import render_values, stack_config

    stack, values, secret_keys = stack_config(STACKS / "Pulumi.staging.yaml")
    gateway = _json.loads(values["llm-fleet:gateway"])
    gateway["masterKey"] = {"pulumiSecret": "gatewayMasterKey"}
    storage = _json.loads(values["llm-fleet:storage"])
    storage["hfToken"] = {"pulumiSecret": "hfToken"}
    values.update({"llm-fleet:gateway": _json.dumps(gateway), "llm-fleet:storage": _json.dumps(storage),
                   "llm-fleet:gatewayMasterKey": "sk-live-CANARY-0123456789", "llm-fleet:hfToken": "hf_CANARY987654"})
    records = render_values(stack, values, [*secret_keys, "llm-fleet:gatewayMasterKey", "llm-fleet:hfToken"],
                            STACKS)
    text = dumps(records)
    assert "CANARY" not in text
    secrets = [r for r in records if r["type"] == "kubernetes:core/v1:Secret"]
    assert secrets and any("[secret]" in _json.dumps(r["inputs"]) for r in secrets)
