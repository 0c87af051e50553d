"""The benchmark's generated stacks, and the property it watches: per-resource dependencies do not grow
with the number of pools."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra.planning.plan import build_plan
from infra.stack.config import load_stack_file
from scripts.bench import stack_document
from scripts.render import render


def _write(tmp_path: Path, pools: int) -> Path:
    path = tmp_path / f"Pulumi.bench{pools}.yaml"
    path.write_text(yaml.safe_dump(stack_document(pools), sort_keys=False))
    return path


def test_generated_stacks_have_one_model_per_pool(tmp_path):
    plan = build_plan(load_stack_file(_write(tmp_path, 3)))
    assert [p.pool for p in plan.pools] == ["p000", "p001", "p002"]
    assert sorted(d.pool for d in plan.deployments) == ["p000", "p001", "p002"]


def test_an_engine_waits_on_the_same_few_resources_however_many_pools(tmp_path):
    def deps(pools: int) -> int:
        records = render(_write(tmp_path, pools))
        engine = next(r for r in records if r["type"] == "kubernetes:apps/v1:Deployment" and r["name"].endswith("p000"))
        return len(engine["dependsOn"])
    assert deps(2) == deps(6)
