"""`fleet scale` (override tags, bounds, --wait) and `fleet status` against moto."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra.planning.fleetops import TAG_BY, TAG_SIZE, TAG_UNTIL
from tests.jobs.conftest import client, ng_tags, prometheus_reply, scaling

NIGHT = "2026-03-30T20:00Z"                 # Monday, after the peak window (fake clock is 12:00Z)


def test_scale_sets_an_override_that_reconcile_keeps_then_restores(deployed, stack_file, fleet, fake_time):
    fake_time.now = fake_time.now.replace(hour=20)
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1",
                           "--until", "+3h", "--by", "ops@launch")
    assert code == 0 and [(x["pool"], x["action"], x["from"], x["to"]) for x in lines] == [("peak", "scale", 0, 1)]
    assert scaling(deployed, "peak") == {"minSize": 1, "maxSize": 2, "desiredSize": 1}
    tags = ng_tags(deployed, "peak")
    assert (tags[TAG_SIZE], tags[TAG_UNTIL], tags[TAG_BY]) == ("1", "2026-03-30T23:00:00Z", "ops@launch")
    assert tags["project"] == "llm-fleet"                                     # the program's tags are kept
    # the same override again: nothing to change
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1",
                           "--until", "2026-03-30T23:00Z", "--by", "ops@launch")
    assert code == 0 and lines[0]["action"] == "unchanged"
    _, _, text = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T22:59Z")
    assert text == ""
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T23:00Z", "--no-drain-check")
    assert lines[0]["to"] == 0 and "expired" in lines[0]["reason"]
    assert TAG_SIZE not in ng_tags(deployed, "peak")


def test_scale_refuses_what_the_pool_cannot_take(deployed, stack_file, fleet, capsys):
    for argv, message in [
        (("--pool", "peak", "--size", "3"), "--size 3 is outside pool peak's bounds 0..2"),
        (("--pool", "base", "--size", "0"), "--size 0 is outside pool base's bounds 1..3"),
        (("--pool", "nope", "--size", "1"), "--pool nope: no such pool in stack jobs; pools: peak, base, burst, block"),
        (("--pool", "peak", "--size", "1", "--until", "2026-03-30T23:00"), "has no UTC offset"),
        (("--pool", "peak", "--size", "1", "--until", "+9d"), "more than 7 days away"),
    ]:
        code, lines, _ = fleet("scale", "--stack-file", stack_file, *argv)
        err = capsys.readouterr().err
        assert code == 2 and lines == [] and message in err and err.count("\n") == 1, (argv, err)
    assert scaling(deployed, "peak")["desiredSize"] == 0 and TAG_SIZE not in ng_tags(deployed, "peak")


def test_scale_down_with_traffic_is_held_and_sets_nothing(deployed, stack_file, fleet, http_server):
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z")           # peak at 2
    http_server.routes["/api/v1/query"] = lambda q: prometheus_reply(5)
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1",
                           "--prometheus-url", http_server.url, "--drain-timeout", "10")
    assert code == 1 and lines[0]["action"] == "hold" and "gave up" in lines[0]["reason"]
    assert scaling(deployed, "peak")["desiredSize"] == 2 and TAG_SIZE not in ng_tags(deployed, "peak")


def test_scale_wait_until_nodes_ready_and_gateway_lists_the_models(deployed, stack_file, fleet, deps, http_server,
                                                                   monkeypatch, fake_time):
    ready = iter([0, 1, 2])
    monkeypatch.setenv("LLMFLEET_GATEWAY_KEY", "sk-ops")
    listed = iter([[], [{"id": "qwen"}]])
    http_server.routes["/v1/models"] = lambda q: (200, "application/json",
                                                  json.dumps({"data": next(listed, [{"id": "qwen"}])}))
    waiting = dataclasses.replace(deps, ready_nodes=lambda pool: next(ready, 2))
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "2", "--wait",
                           "--timeout", "600", "--gateway-url", http_server.url, with_deps=waiting)
    assert code == 0 and [x["action"] for x in lines] == ["scale", "wait"]
    assert lines[1]["ready"] is True and lines[1]["reason"] == "ready"
    assert fake_time.sleeps == [5.0, 5.0, 5.0]                # two node polls, one gateway poll
    assert http_server.hits[-1][2]["Authorization"] == "Bearer sk-ops"


def test_scale_wait_times_out_and_says_what_it_cannot_check(deployed, stack_file, fleet, http_server, fake_time):
    http_server.routes["/v1/models"] = lambda q: (200, "application/json", json.dumps({"data": []}))
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "2", "--wait",
                           "--timeout", "30", "--gateway-url", http_server.url)
    assert code == 1 and lines[-1]["action"] == "wait" and lines[-1]["ready"] is False
    assert "timed out after 30 s waiting for: gateway lists qwen" in lines[-1]["reason"]
    assert sum(fake_time.sleeps) == 30
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "base", "--size", "2", "--wait",
                           "--timeout", "30")
    assert code == 0 and "cannot check Ready nodes" in lines[-1]["reason"] and "no --gateway-url" in lines[-1]["reason"]


def test_status_table_and_json(deployed, stack_file, fleet):
    code, _, text = fleet("status", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z")
    assert code == 0
    assert "stack jobs at 2026-03-30T12:00+00:00" in text
    row = next(line for line in text.splitlines() if line.startswith("peak"))
    assert "0/2/0" in row and "ACTIVE" in row
    assert "0 at 03-30 18:00 Europe/London (03-30 17:00 UTC)" in row
    assert next(line for line in text.splitlines() if line.startswith("base")).split()[2] == "autoscaler"
    code, lines, _ = fleet("status", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z", "--json")
    peak = next(x for x in lines if x["pool"] == "peak")
    assert peak["want"] == 2 and peak["aws"] == {"min": 0, "max": 2, "desired": 0} and peak["hourlyUSD"] == 0
    assert peak["next"][0] == {"at": "2026-03-30T17:00:00Z", "local": "2026-03-30T18:00+01:00", "size": 0,
                               "reason": "outside windows"}
    assert peak["next"][1]["at"] == "2026-03-31T07:30:00Z"                    # Tuesday's pre-warm, BST
    base = next(x for x in lines if x["pool"] == "base")
    assert base["want"] is None and base["hourlyUSD"] > 0                      # one g6e.xlarge running


@pytest.mark.parametrize("argv", [
    ("scale", "--pool", "peak", "--size", "1", "--until", "+1h", "--no-drain-check"),
    ("sweep", "--at", "2026-03-29T12:00Z", "--no-drain-check"),
])
def test_dry_run_scale_and_sweep_change_nothing(deployed, stack_file, fleet, argv):
    eks = client("eks")
    eks.update_nodegroup_config(clusterName="llm-fleet-jobs", nodegroupName="llm-fleet-jobs-peak",
                                scalingConfig={"minSize": 2, "maxSize": 2, "desiredSize": 2})
    before = {p.name: (scaling(deployed, p.name), ng_tags(deployed, p.name)) for p in deployed.pools}
    dev = stack_file.with_name("Pulumi.jobs.yaml")
    dev.write_text(stack_file.read_text().replace("environment: prod", "environment: dev"))
    code, lines, _ = fleet(argv[0], "--stack-file", dev, *argv[1:], "--dry-run")
    assert code == 0 and lines and all(x["dryRun"] for x in lines)
    assert lines[0]["pool"] == "peak" and lines[0]["to"] in (0, 1)
    assert {p.name: (scaling(deployed, p.name), ng_tags(deployed, p.name)) for p in deployed.pools} == before
