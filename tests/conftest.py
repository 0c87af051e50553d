"""Shared fixtures and record helpers. Renders run the real program under the SDK mocks (scripts/render.py)."""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "stacks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHIPPED = ("dev", "staging", "prod")

# The policy pack imports its modules as top-level names (Pulumi runs it from policy/): put that directory
# on the path here, before any test module is imported, so every test file passes when run alone.
if str(REPO / "policy") not in sys.path:
    sys.path.insert(0, str(REPO / "policy"))


@pytest.fixture
def stack_values():
    """A shipped stack's `config:` mapping, deep-copied so a test can break it."""
    def load(name: str = "prod") -> dict:
        return copy.deepcopy(yaml.safe_load((STACKS / f"Pulumi.{name}.yaml").read_text())["config"])
    return load


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch, tmp_path):
    """Nothing downloads in tests: the hub client points at a closed port, the cache at a temp dir."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("LLMFLEET_CACHE", str(tmp_path / "cache"))


@functools.cache
def render_cached(path: str) -> tuple:
    """One render per stack file per test session (renders are pure); program and serving tests share it."""
    from scripts.render import render
    return tuple(render(Path(path)))


@pytest.fixture
def rendered():
    """rendered("prod") or rendered(path) -> the records `fleet render --json` would print."""
    def get(stack: str | Path):
        path = Path(stack) if isinstance(stack, Path) else STACKS / f"Pulumi.{stack}.yaml"
        return list(render_cached(str(path)))
    return get


def of_type(records, typ: str) -> list[dict]:
    return [r for r in records if r["type"] == typ]


def named(records, name: str, typ: str | None = None) -> dict:
    matches = [r for r in records if r["name"] == name and (typ is None or r["type"] == typ)]
    assert len(matches) == 1, f"{len(matches)} resources named {name!r}"
    return matches[0]
