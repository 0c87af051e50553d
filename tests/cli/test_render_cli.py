"""`fleet render`: JSON and tree output, and a bad stack file refused exactly as `fleet plan` refuses it."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest
import yaml

from scripts.fleet import main
from tests.conftest import STACKS


def test_json_is_the_recorded_program(capsys, rendered):
    assert main(["render", "--stack", "dev", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == rendered("dev")
    assert {"type", "name", "parent", "dependsOn", "inputs"} == set(out[0])
    assert any(r["type"] == "aws:eks/nodeGroup:NodeGroup"
               and r["inputs"].get("nodeGroupNamePrefix") == "llm-fleet-dev-l4-spot-" for r in out)


def test_tree_nests_children_under_components(capsys):
    assert main(["render", "--stack", "dev"]) == 0
    lines = capsys.readouterr().out.splitlines()
    gpu = lines.index("llmfleet:nodepools:GpuNodePools  gpu")
    assert lines[gpu + 1].startswith("  ") and "aws:eks/nodeGroup:NodeGroup  gpu-l4-spot" in "\n".join(lines)


@pytest.mark.parametrize("mutate", [
    lambda c: c["llm-fleet:pools"][0].__setitem__("instanceTypes", ["p5.48xlarge"]),
    lambda c: c["llm-fleet:pools"][0]["schedule"].__setitem__("windows", []),
    lambda c: c["llm-fleet:models"][0].__setitem__("precison", "bf16"),
])
def test_bad_stack_file_same_message_as_plan(tmp_path, capsys, mutate):
    doc = yaml.safe_load((STACKS / "Pulumi.staging.yaml").read_text())
    mutate(doc["config"])
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["plan", "--stack-file", str(path)]) == 2
    plan_err = capsys.readouterr().err.strip().removeprefix("fleet plan: ")
    assert main(["render", "--stack-file", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"fleet render: {plan_err}"
    assert len(captured.err.strip().splitlines()) == 1


def _open_loops() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed())


def test_render_leaves_no_event_loop_open(capsys):
    """Every loop a render made is closed before it returns: an open one is garbage-collected at exit
    after its sockets and prints "Exception ignored in: BaseEventLoop.__del__ ... Invalid file
    descriptor: -1" on the user's terminal (the mock monitor makes one per executor thread)."""
    before = _open_loops()
    assert main(["render", "--stack", "dev", "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert _open_loops() == before
