"""The policy pack's checks run offline over a render (no engine, no credentials): what `fleet diff`
shows on a PR, including PRs from forks that get no AWS access for `pulumi preview`."""

from __future__ import annotations

import sys
from typing import Any

from scripts.common import REPO_ROOT


def _pack():
    """policy/llmfleet_policies.py, or None when pulumi-policy is not installed (it is a dev extra)."""
    if str(REPO_ROOT / "policy") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "policy"))
    try:
        import llmfleet_policies
    except ImportError:
        return None
    return llmfleet_policies


def as_policy_resources(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Render records in the shape the checks read; props carry the id the mocks gave each resource,
    which is what other resources' inputs refer to."""
    return [{"type": r["type"], "name": r["name"], "urn": f"urn:pulumi:stack::llm-fleet::{r['type']}::{r['name']}",
             "parent": r["parent"], "props": {**r["inputs"], "id": f"{r['name']}-id"}} for r in records]


def verdicts(records: list[dict[str, Any]]) -> list[dict[str, str]] | None:
    """Every violation: policy id, enforcement level, resource and message. None: the pack is missing."""
    pack = _pack()
    if pack is None:
        return None
    resources = as_policy_resources(records)
    out = []
    for pid, check, kind, level, _severity in pack.CHECKS:
        if kind == "resource":
            found = [(f"{r['type']} {r['name']}", m) for r in resources for m in check(r)]
        else:
            result = check(resources, {}) if kind == "stack-config" else check(resources)
            found = [((v.urn or "stack").rsplit("::", 1)[-1], v.message) for v in result]
        out += [{"policy": pid, "level": level.value, "resource": res, "message": msg} for res, msg in found]
    return out
