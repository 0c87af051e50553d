"""`fleet scale` (an atomic override: tags and bounds, --wait) and `fleet status` against moto."""

from __future__ import annotations

import dataclasses
import json

from infra.planning.fleetops import TAG_BY, TAG_SIZE, TAG_UNTIL
from tests.jobs.conftest import ng_tags, scaling

NIGHT = "2026-03-30T20:00Z"                 # Monday, after the peak window (fake clock is 12:00Z)


def test_scale_sets_an_override_that_reconcile_keeps_then_restores(deployed, stack_file, fleet, fake_time):
    fake_time.now = fake_time.now.replace(hour=20)
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1",
                           "--until", "+3h", "--by", "ops@launch")
    assert code == 0 and [(x["pool"], x["action"], x["from"], x["to"], x["changed"]) for x in lines] == [
        ("peak", "scale", 0, 1, True)]
    assert scaling(deployed, "peak") == {"minSize": 1, "maxSize": 1, "desiredSize": 1}
    tags = ng_tags(deployed, "peak")
    assert (tags[TAG_SIZE], tags[TAG_UNTIL], tags[TAG_BY]) == ("1", "2026-03-30T23:00:00Z", "ops@launch")
    assert tags["project"] == "llm-fleet"                                     # the program's tags are kept
    # the same override again: nothing to change
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1",
                           "--until", "2026-03-30T23:00Z", "--by", "ops@launch")
    assert code == 0 and lines[0]["action"] == "unchanged"
    _, _, text = fleet("reconcile", "--stack-file", stack_file)
    assert text == ""
    fake_time.now = fake_time.now.replace(hour=23)
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert "expired" in lines[0]["reason"] and scaling(deployed, "peak") == {"minSize": 0, "maxSize": 2,
                                                                             "desiredSize": 1}
    assert TAG_SIZE not in ng_tags(deployed, "peak")


def test_a_failed_update_leaves_no_override_tags_behind(deployed, stack_file, fleet, deps):
    """The old order (tags, then an update that failed, exit 2 "nothing changed") left the tags for the next
    reconcile to apply."""
    from tests.jobs.conftest import answering, aws_reply

    refuse = answering(deps, "eks", "UpdateNodegroupConfig", lambda request: aws_reply(
        request, 400, b'{"message": "Minimum capacity 1 can\'t be greater than desired size 0"}',
        "InvalidParameterException"))
    before = ng_tags(deployed, "peak")
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1",
                           with_deps=refuse)
    assert code == 1 and lines[0]["action"] == "error" and lines[0]["changed"] is False
    assert "InvalidParameterException" in lines[0]["reason"] and "nothing changed" in lines[0]["reason"]
    assert ng_tags(deployed, "peak") == before and scaling(deployed, "peak")["desiredSize"] == 0


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


def test_scale_wait_times_out_and_says_unknown_when_it_cannot_check(deployed, stack_file, fleet, http_server,
                                                                    fake_time, deps):
    http_server.routes["/v1/models"] = lambda q: (200, "application/json", json.dumps({"data": []}))
    nodes = dataclasses.replace(deps, ready_nodes=lambda pool: 2)
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "2", "--wait",
                           "--timeout", "30", "--gateway-url", http_server.url, with_deps=nodes)
    assert code == 1 and lines[-1]["action"] == "wait" and lines[-1]["ready"] is False
    assert "timed out after 30 s waiting for: gateway lists qwen" in lines[-1]["reason"]
    assert sum(fake_time.sleeps) == 30
    # no kubeconfig (a private endpoint) and no gateway URL: never "ready": true
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "base", "--size", "2", "--wait",
                           "--timeout", "30")
    assert code == 5 and lines[-1]["ready"] == "unknown"
    assert "cannot check Ready nodes" in lines[-1]["reason"] and "no --gateway-url" in lines[-1]["reason"]


def test_status_shows_the_override_as_what_holds(deployed, stack_file, fleet, fake_time):
    fake_time.now = fake_time.now.replace(hour=20)
    fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1", "--until", "+3h")
    code, lines, _ = fleet("status", "--stack-file", stack_file, "--json")
    peak = next(x for x in lines if x["pool"] == "peak")
    assert peak["holds"] == "override" and peak["want"] == 1 and peak["bounds"] == {"min": 1, "max": 1, "desired": 1}
    assert peak["next"][0]["at"] == "2026-03-30T23:00:00Z" and "override by" in peak["next"][0]["reason"]
    _, _, text = fleet("status", "--stack-file", stack_file)
    row = next(line for line in text.splitlines() if line.startswith("peak"))
    assert "override" in row and "override ends 03-30 23:00 UTC" in row


def test_status_table_and_json(deployed, stack_file, fleet):
    code, _, text = fleet("status", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z")
    assert code == 0
    assert "stack jobs at 2026-03-30T12:00+00:00" in text
    row = next(line for line in text.splitlines() if line.startswith("peak"))
    assert "0/2/0" in row and "ACTIVE" in row and " stack " in row
    assert "0 at 03-30 18:00 Europe/London (03-30 17:00 UTC)" in row
    assert next(line for line in text.splitlines() if line.startswith("base")).split()[3] == "autoscaler"
    code, lines, _ = fleet("status", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z", "--json")
    peak = next(x for x in lines if x["pool"] == "peak")
    assert peak["want"] == 2 and peak["aws"] == {"min": 0, "max": 2, "desired": 0} and peak["hourlyUSD"] == 0
    assert peak["holds"] == "stack" and "KEDA cron" in peak["wantReason"]
    assert peak["next"][0] == {"at": "2026-03-30T17:00:00Z", "local": "2026-03-30T18:00+01:00", "size": 0,
                               "reason": "outside windows"}
    assert peak["next"][1]["at"] == "2026-03-31T07:30:00Z"                    # Tuesday's pre-warm, BST
    base = next(x for x in lines if x["pool"] == "base")
    assert base["want"] is None and base["hourlyUSD"] > 0                      # one g6e.xlarge running


def test_dry_run_scale_changes_nothing(deployed, stack_file, fleet):
    before = {p.name: (scaling(deployed, p.name), ng_tags(deployed, p.name)) for p in deployed.pools}
    code, lines, _ = fleet("scale", "--stack-file", stack_file, "--pool", "peak", "--size", "1", "--until", "+1h",
                           "--dry-run")
    assert code == 0 and lines and all(x["dryRun"] and not x["changed"] for x in lines)
    assert lines[0]["pool"] == "peak" and lines[0]["to"] == 1
    assert {p.name: (scaling(deployed, p.name), ng_tags(deployed, p.name)) for p in deployed.pools} == before
