"""`fleet plan`: the JSON contract, the table, and user errors as one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from scripts.fleet import main
from tests.conftest import SHIPPED, STACKS

DEPLOYMENT_KEYS = {"model", "source", "pool", "instanceType", "precision", "engine", "fits", "weightsGB",
                   "gpusPerReplica", "nodesPerReplica", "tensorParallel", "kvCacheGB", "kvBytesPerToken",
                   "maxTokensInFlight", "engineArgs"}
POOL_KEYS = {"name", "capacity", "instanceType", "hourlyUSD", "monthlyUSD"}


@pytest.mark.parametrize("stack", SHIPPED)
def test_json_contract(stack, capsys):
    assert main(["plan", "--stack", stack, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stack"] == stack
    assert out["monthlyUSD"] == pytest.approx(sum(p["monthlyUSD"] for p in out["pools"]), abs=0.05)
    assert all(POOL_KEYS <= set(p) for p in out["pools"])
    assert out["deployments"] and all(DEPLOYMENT_KEYS <= set(d) for d in out["deployments"])
    assert all(d["fits"] is True and isinstance(d["engineArgs"], list) for d in out["deployments"])


def test_table_names_pools_deployments_and_totals(capsys):
    assert main(["plan", "--stack", "prod"]) == 0
    out = capsys.readouterr().out
    for text in ("h200-base", "h200-peak", "glm-5-1", "TP8 EP", "Total:", "break-even", "--tool-call-parser glm47"):
        assert text in out


def test_plan_says_whose_traffic_may_leave(capsys):
    assert main(["plan", "--stack", "prod"]) == 0
    out = capsys.readouterr().out
    section = out.split("Traffic that may leave the cluster", 1)[1]
    assert "- team risk: glm-5-1 -> deepinfra (zai-org/GLM-5.1)" in section
    assert "- team research: nothing leaves the cluster" in section          # its models have no fallback
    assert "- team legal: nothing leaves the cluster (fallback: never)" in section
    assert main(["plan", "--stack", "prod", "--json"]) == 0
    assert "team legal: nothing leaves the cluster (fallback: never)" in json.loads(capsys.readouterr().out)["egress"]


def _broken(tmp_path, mutate, name="prod"):
    values = yaml.safe_load((STACKS / f"Pulumi.{name}.yaml").read_text())
    mutate(values["config"])
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["llm-fleet:pools"][0].__setitem__("instanceTypes", ["p5.48xlarge"]),
     "needs ~756 GB of weights plus KV cache for maxContext 131072; pool h200-base (p5.48xlarge) has 8x85.9 GB"),
    (lambda c: c["llm-fleet:pools"][0].__setitem__("capacty", "spot"), "llm-fleet.pools[0].capacty: unknown key"),
    (lambda c: c["llm-fleet:pools"][0].__setitem__("instanceTypes", ["p9.huge"]), "unknown instance type 'p9.huge'"),
    (lambda c: c["llm-fleet:pools"][0].__setitem__("maxSize", 1) or c["llm-fleet:models"][0]["placements"][0]
     .__setitem__("replicas", {"min": 2, "max": 2}), "need 2 node(s)"),
    # an engine older than the model's catalog minimum: GLM-5.1 (glm_moe_dsa) does not load on vLLM 0.19.0
    (lambda c: c.__setitem__("llm-fleet:engines", {"vllm": {"version": "v0.19.0"}}),
     "engines.vllm.version: v0.19.0 cannot run zai-org/GLM-5.1-FP8 (models.glm-5-1); GLM-5.1 needs vllm >= 0.19.1"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, mutate, message):
    assert main(["plan", "--stack-file", str(_broken(tmp_path, mutate))]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("fleet plan: ")


def test_unknown_stack_lists_the_known_ones(capsys):
    assert main(["plan", "--stack", "qa"]) == 2
    err = capsys.readouterr().err
    assert "no " in err and "stacks here: dev, " in err and "prod" in err


def test_usage_errors_are_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "scripts.fleet", "plan", "--stack", "dev", "--month", "13-2026"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "YYYY-MM" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "scripts.fleet", "plan"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and "--stack" in proc.stderr


def test_month_option_uses_the_calendar(capsys):
    assert main(["plan", "--stack", "staging", "--json", "--month", "2026-02"]) == 0
    feb = json.loads(capsys.readouterr().out)
    assert main(["plan", "--stack", "staging", "--json", "--month", "2026-03"]) == 0
    mar = json.loads(capsys.readouterr().out)
    # 20 weekdays in Feb 2026, 22 in March: the scheduled H200 pool costs accordingly
    f = next(p for p in feb["pools"] if p["name"] == "h200-business")["monthlyNodeHours"]
    m = next(p for p in mar["pools"] if p["name"] == "h200-business")["monthlyNodeHours"]
    assert m / f == pytest.approx(22 / 20, rel=1e-3)           # monthlyNodeHours is rounded to 0.1 h


def test_every_deployment_carries_its_cold_start_for_the_before_stop_hook(capsys):
    from scripts import fleet

    assert fleet.main(["plan", "--stack", "prod", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    keys = {"nodeSeconds", "imageSeconds", "weightsSeconds", "loadSeconds", "warmupSeconds", "totalSeconds",
            "limitSeconds"}
    for dep in plan["deployments"]:
        assert keys <= set(dep["coldStart"]), dep["model"]
        assert dep["load"]["estimateSeconds"] == dep["coldStart"]["totalSeconds"]
    glm = [d["coldStart"] for d in plan["deployments"] if d["model"] == "glm-5-1"]
    assert glm and all(c["totalSeconds"] / c["limitSeconds"] <= 2 for c in glm)


def test_the_table_prints_the_breakdown_and_the_ratio(capsys):
    from infra.planning.plan import build_plan
    from infra.stack.config import load_stack_file
    from scripts import fleet
    from scripts.common import REPO_ROOT

    ratio = build_plan(load_stack_file(REPO_ROOT / "stacks" / "Pulumi.prod.yaml")).deployments[0].cold_start.ratio
    assert fleet.main(["plan", "--stack", "prod"]) == 0
    out = capsys.readouterr().out
    assert "Cold start (seconds" in out and "total/limit" in out and f"{ratio:.2f}x" in out
    assert "not reachable at the stated throughput" in out and "Platform (non-GPU, monthly)" in out
