"""Program tests: the real Pulumi program under the SDK's mocks, through the same recorder as `fleet render`."""

from __future__ import annotations


def of_type(records, typ: str) -> list[dict]:
    return [r for r in records if r["type"] == typ]


def named(records, name: str, typ: str | None = None) -> dict:
    matches = [r for r in records if r["name"] == name and (typ is None or r["type"] == typ)]
    assert len(matches) == 1, f"{len(matches)} resources named {name!r}"
    return matches[0]
