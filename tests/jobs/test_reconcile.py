"""`fleet reconcile` against moto as a real HTTP server: instants through a day, DST, drain, dry run,
the lock, throttling, and the errors that must change nothing."""

from __future__ import annotations

import dataclasses
import io
import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from infra.planning.fleetops import TAG_SIZE, Override
from scripts import aws as aws_mod
from scripts.cmd_reconcile import Deps
from tests.jobs.conftest import client, closed_port_url, lock_key, ng_tags, prometheus_reply, scaling


def desired(cfg) -> dict[str, int]:
    return {p.name: scaling(cfg, p.name)["desiredSize"] for p in cfg.pools}


@pytest.fixture
def prom(http_server):
    """Prometheus answering with `prom.values` in turn (the last one repeats)."""
    http_server.values = [0]

    def query(q):
        value = http_server.values.pop(0) if len(http_server.values) > 1 else http_server.values[0]
        return prometheus_reply(value)

    http_server.routes["/api/v1/query"] = query
    return http_server


def test_a_day_of_reconciles(deployed, stack_file, fleet, prom):
    cfg, sf = deployed, stack_file
    # Monday 30 March 2026, BST. 07:00Z = 08:00 London: before the 08:30 pre-warm; block (Shanghai) in window
    code, lines, _ = fleet("reconcile", "--stack-file", sf, "--at", "2026-03-30T07:00Z", "--prometheus-url", prom.url)
    assert code == 0
    assert [(x["pool"], x["action"], x["from"], x["to"]) for x in lines] == [("block", "scale", 0, 1)]
    assert desired(cfg) == {"peak": 0, "base": 1, "burst": 0, "block": 1}
    # 07:45Z = 08:45 BST: the peak pool's pre-warm
    code, lines, _ = fleet("reconcile", "--stack-file", sf, "--at", "2026-03-30T07:45Z", "--prometheus-url", prom.url)
    assert [(x["pool"], x["to"]) for x in lines] == [("peak", 2)] and "pre-warm" in lines[0]["reason"]
    assert scaling(cfg, "peak") == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert lines[0]["hourlySavingUSD"] < 0 and lines[0]["stack"] == "jobs" and lines[0]["dryRun"] is False
    # 12:00Z: peak is inside its window; the block pool's Shanghai window ended at 11:00Z (19:00 local)
    code, lines, _ = fleet("reconcile", "--stack-file", sf, "--at", "2026-03-30T12:00Z", "--prometheus-url", prom.url)
    assert [(x["pool"], x["action"], x["to"]) for x in lines] == [("block", "scale", 0)]
    assert "no requests in flight" in lines[0]["reason"] and lines[0]["hourlySavingUSD"] > 0
    # a second run with nothing to do changes nothing
    code, lines, text = fleet("reconcile", "--stack-file", sf, "--at", "2026-03-30T12:05Z",
                              "--prometheus-url", prom.url)
    assert code == 0 and text == ""
    # 17:00Z = 18:00 BST: the peak window ends; drained (0 in flight), so it scales down, max stays >= 1
    code, lines, _ = fleet("reconcile", "--stack-file", sf, "--at", "2026-03-30T17:00Z", "--prometheus-url", prom.url)
    assert [(x["pool"], x["action"], x["to"]) for x in lines] == [("peak", "scale", 0)]
    assert scaling(cfg, "peak") == {"minSize": 0, "maxSize": 2, "desiredSize": 0}
    code, lines, text = fleet("reconcile", "--stack-file", sf, "--at", "2026-03-30T17:05Z",
                              "--prometheus-url", prom.url)
    assert text == ""


def test_dst_change_moves_the_utc_instant_not_the_local_one(deployed, stack_file, fleet):
    # 07:45Z is 07:45 GMT on Friday 27 March (before the 08:30 pre-warm) but 08:45 BST on Monday 30 March
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-27T07:45Z", "--no-drain-check")
    assert desired(deployed)["peak"] == 0
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z", "--no-drain-check")
    assert desired(deployed)["peak"] == 2


def test_unscheduled_pool_keeps_the_autoscalers_desired_but_drift_in_min_is_repaired(deployed, stack_file, fleet):
    eks, cfg = client("eks"), deployed
    ng = {"clusterName": "llm-fleet-jobs", "nodegroupName": "llm-fleet-jobs-base"}
    eks.update_nodegroup_config(**ng, scalingConfig={"minSize": 1, "maxSize": 3, "desiredSize": 3})
    _, lines, text = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-29T12:00Z")
    assert text == "" and scaling(cfg, "base")["desiredSize"] == 3
    eks.update_nodegroup_config(**ng, scalingConfig={"minSize": 0, "maxSize": 3, "desiredSize": 3})
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-29T12:00Z")
    assert [(x["pool"], x["scaling"]) for x in lines] == [("base", {"min": 1, "max": 3, "desired": 3})]


def test_scale_down_waits_for_drain(deployed, stack_file, fleet, prom, fake_time):
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z", "--prometheus-url", prom.url)
    prom.values = [3, 1, 0]
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T17:00Z",
                           "--prometheus-url", prom.url, "--dry-run")
    assert all(x["dryRun"] for x in lines) and desired(deployed)["peak"] == 2           # dry run: untouched
    assert "would wait up to 60 s for drain; in flight now: 3" in lines[0]["reason"]
    prom.values = [3, 1, 0]
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T17:00Z",
                           "--prometheus-url", prom.url)
    assert code == 0 and desired(deployed)["peak"] == 0
    assert fake_time.sleeps == [5.0, 5.0] and "drained" in lines[0]["reason"]


def test_scale_down_gives_up_when_traffic_does_not_drain(deployed, stack_file, fleet, prom, fake_time):
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z", "--no-drain-check")
    prom.values = [4]
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T17:00Z",
                           "--prometheus-url", prom.url)
    assert code == 0 and desired(deployed)["peak"] == 2
    [line] = [x for x in lines if x["pool"] == "peak"]
    assert line["action"] == "hold" and line["to"] == 2 and "gave up" in line["reason"]
    assert sum(fake_time.sleeps) == 60                                        # jobs.drainTimeoutSeconds


@pytest.mark.parametrize("flags, why", [
    ((), "no engine metrics configured"),
    (("--prometheus-url", closed_port_url()), "no engine metrics reachable"),
])
def test_scale_down_refuses_without_metrics(deployed, stack_file, fleet, flags, why):
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z")
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T17:00Z", *flags)
    [line] = [x for x in lines if x["pool"] == "peak"]
    assert line["action"] == "hold" and why in line["reason"] and desired(deployed)["peak"] == 2


def test_dry_run_changes_nothing_and_takes_no_lock(deployed, stack_file, fleet):
    before = (desired(deployed), ng_tags(deployed, "peak"))
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z", "--dry-run")
    assert code == 0 and {x["pool"] for x in lines} == {"peak", "block"} and all(x["dryRun"] for x in lines)
    assert lines[0]["at"].startswith("2026-03-30T07:45")
    assert (desired(deployed), ng_tags(deployed, "peak")) == before
    bucket, _ = lock_key(deployed)
    assert client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_held_lock_stops_a_second_run(deployed, stack_file, fleet, fake_time, prom, capsys):
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T12:00Z", "--no-drain-check")
    second = {}

    def sleep(seconds):                      # while the first run waits for drain, a second one starts
        if not second:
            other = Deps(clock=fake_time.clock, monotonic=fake_time.monotonic, sleep=lambda s: None,
                         out=io.StringIO())
            second["code"], second["lines"], _ = fleet("reconcile", "--stack-file", stack_file,
                                                       "--at", "2026-03-30T17:00Z", "--no-drain-check",
                                                       with_deps=other)
        fake_time.sleep(seconds)

    prom.values = [2, 0]
    first = dataclasses.replace(_deps(fake_time), sleep=sleep)
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T17:00Z",
                           "--prometheus-url", prom.url, with_deps=first)
    assert second["code"] == 3 and second["lines"] == []
    assert "stack is locked by" in capsys.readouterr().err
    assert code == 0 and desired(deployed)["peak"] == 0                        # the first run finished
    bucket, key = lock_key(deployed)
    assert client("s3").list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0   # released


def _deps(fake_time) -> Deps:
    return Deps(clock=fake_time.clock, monotonic=fake_time.monotonic, sleep=fake_time.sleep,
                ready_nodes=lambda pool: None, out=io.StringIO(), poll_seconds=5.0)


def test_a_live_lock_file_blocks_and_a_stale_one_is_taken_over(deployed, stack_file, fleet, fake_time, capsys):
    bucket, key = lock_key(deployed)
    s3 = client("s3")
    body = {"owner": "ci@runner", "pid": 42, "command": "sweep", "expires": "2026-03-30T12:10:00Z"}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z")
    assert code == 3 and lines == [] and desired(deployed)["peak"] == 0       # fake clock is 12:00Z
    assert "locked by ci@runner (pid 42, sweep) until 2026-03-30T12:10:00Z" in capsys.readouterr().err
    body["expires"] = "2026-03-30T11:00:00Z"                                  # stale
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z")
    assert code == 0 and desired(deployed)["peak"] == 2
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def test_throttled_update_is_retried_with_backoff(deployed, stack_file, fleet, deps, fake_time):
    throttled = []

    def throttle(request, **kwargs):
        if len(throttled) < 2:
            throttled.append(request.url)
            return AWSResponse(request.url, 429, {"x-amzn-ErrorType": "ThrottlingException",
                                                  "Content-Type": "application/json"},
                               _Raw(b'{"message": "Rate exceeded"}'))
        return None

    def make_client(session, service):
        c = aws_mod.client(session, service, max_attempts=1)     # botocore's own retries off: ours only
        if service == "eks":
            c.meta.events.register("before-send.eks.UpdateNodegroupConfig", throttle)
        return c

    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z",
                           with_deps=dataclasses.replace(deps, client=make_client))
    assert code == 0 and len(throttled) == 2 and len(fake_time.sleeps) == 2
    assert 0.5 <= fake_time.sleeps[0] <= 1.0 and 1.0 <= fake_time.sleeps[1] <= 2.0   # exponential, jittered
    assert desired(deployed)["peak"] == 2


def test_default_clients_use_botocore_standard_retries(aws):
    c = aws_mod.client(boto3.Session(region_name="us-east-1"), "eks")
    assert c.meta.config.retries == {"mode": "standard", "total_max_attempts": aws_mod.MAX_ATTEMPTS}


def test_retrying_does_not_retry_other_errors():
    from botocore.exceptions import ClientError
    calls = []

    def fail():
        calls.append(1)
        raise ClientError({"Error": {"Code": "InvalidParameterException", "Message": "no"}}, "UpdateNodegroupConfig")

    with pytest.raises(ClientError):
        aws_mod.retrying(fail, sleep=lambda s: pytest.fail("slept"))
    assert calls == [1]


def test_missing_credentials_is_one_line_and_exit_2(deployed, stack_file, fleet, monkeypatch, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var)
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z")
    err = capsys.readouterr().err
    assert code == 2 and lines == [] and err.startswith("fleet reconcile: no AWS credentials:")
    assert err.count("\n") == 1


def test_missing_node_group_changes_nothing(deployed, stack_file, fleet, capsys):
    client("eks").delete_nodegroup(clusterName="llm-fleet-jobs", nodegroupName="llm-fleet-jobs-burst")
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z")
    err = capsys.readouterr().err
    assert code == 2 and lines == []
    assert "pool burst: no node group llm-fleet-jobs-burst in cluster llm-fleet-jobs" in err
    assert scaling(deployed, "peak")["desiredSize"] == 0                        # nothing changed
    assert scaling(deployed, "block")["desiredSize"] == 0


def test_expired_override_is_removed_and_the_schedule_restored(deployed, stack_file, fleet):
    arn = client("eks").describe_nodegroup(clusterName="llm-fleet-jobs",
                                           nodegroupName="llm-fleet-jobs-peak")["nodegroup"]["nodegroupArn"]
    from datetime import UTC, datetime
    client("eks").tag_resource(resourceArn=arn, tags=Override(1, datetime(2026, 3, 30, 22, tzinfo=UTC),
                                                              "ops").tags())
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T20:00Z", "--no-drain-check")
    assert [(x["pool"], x["to"]) for x in lines] == [("peak", 1)] and "override 1" in lines[0]["reason"]
    _, lines, text = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T21:00Z")
    assert text == ""                                                          # honoured, nothing to do
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T22:00Z", "--no-drain-check")
    assert lines[0]["action"] == "scale" and lines[0]["to"] == 0 and TAG_SIZE in lines[0]["removeTags"]
    assert TAG_SIZE not in ng_tags(deployed, "peak") and desired(deployed)["peak"] == 0


def test_the_drain_bound_is_per_run_not_per_pool(deployed, stack_file, fleet, prom, fake_time):
    fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z")        # peak 2, block 1
    prom.values = [4]
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T17:00Z",
                        "--prometheus-url", prom.url)
    assert [(x["pool"], x["action"]) for x in lines] == [("peak", "hold"), ("block", "hold")]
    assert sum(fake_time.sleeps) == 60                   # one drainTimeoutSeconds for the whole run
    assert desired(deployed) == {"peak": 2, "base": 1, "burst": 0, "block": 1}


def test_an_existing_cluster_stack_is_refused(aws, tmp_path, fleet, capsys):
    from tests.jobs.conftest import STACK
    path = tmp_path / "Pulumi.onprem.yaml"
    path.write_text(STACK.replace("  llm-fleet:pools:", "  llm-fleet:cluster:\n    existing: {kubeconfig: /tmp/kc}\n"
                                  "  llm-fleet:pools:", 1))
    code, lines, _ = fleet("reconcile", "--stack-file", path)
    assert code == 2 and lines == [] and "runs on an existing cluster" in capsys.readouterr().err
