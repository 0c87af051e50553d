"""Program tests: the real Pulumi program under the SDK's mocks, through the same recorder as `fleet render`."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from scripts.render import render
from tests.conftest import STACKS


@functools.cache
def _render(path: str) -> tuple:
    return tuple(render(Path(path)))


@pytest.fixture
def rendered():
    """rendered("prod") or rendered(path) -> the recorded resources (cached per session: renders are pure)."""
    def get(stack: str | Path):
        path = Path(stack) if isinstance(stack, Path) else STACKS / f"Pulumi.{stack}.yaml"
        return list(_render(str(path)))
    return get


def of_type(records, typ: str) -> list[dict]:
    return [r for r in records if r["type"] == typ]


def named(records, name: str) -> dict:
    matches = [r for r in records if r["name"] == name]
    assert len(matches) == 1, f"{len(matches)} resources named {name!r}"
    return matches[0]
