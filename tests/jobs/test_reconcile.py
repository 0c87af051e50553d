"""`fleet reconcile` against moto as a real HTTP server: bounds only (never a size at a window's edge),
drift, overrides, dry run, --at, the lock and --break-lock, the deployed stack, throttling, and per-pool
errors that leave the other pools handled."""

from __future__ import annotations

import json

import boto3
import pytest

from infra.planning.fleetops import TAG_SIZE, Override
from scripts import aws as aws_mod
from tests.jobs.conftest import answering, aws_reply, client, lock_key, ng_tags, scaling


def drift(cfg, pool: str, low: int, high: int, size: int) -> None:
    """What the old schedules or a hand edit leave behind on a node group."""
    client("eks").update_nodegroup_config(clusterName="llm-fleet-jobs", nodegroupName=f"llm-fleet-jobs-{pool}",
                                          scalingConfig={"minSize": low, "maxSize": high, "desiredSize": size})


def test_a_deployed_fleet_is_left_alone_through_a_day(deployed, stack_file, fleet):
    """Windows are KEDA's cron triggers: reconcile never writes a size at a window's start or end."""
    for at in ("07:00", "07:45", "12:00", "17:00", "17:05"):
        code, lines, text = fleet("reconcile", "--stack-file", stack_file, "--dry-run", "--at", f"2026-03-30T{at}Z")
        assert code == 0 and text == "", at
    code, lines, text = fleet("reconcile", "--stack-file", stack_file)
    assert code == 0 and text == ""


def test_drift_in_min_max_is_repaired_and_the_autoscalers_desired_kept(deployed, stack_file, fleet):
    drift(deployed, "peak", 2, 2, 2)                  # pinned by an old EventBridge action
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert code == 0 and [(x["pool"], x["action"], x["from"], x["to"], x["changed"]) for x in lines] == [
        ("peak", "scale", 2, 2, True)]
    assert lines[0]["scaling"] == {"min": 0, "max": 2, "desired": 2} and lines[0]["dryRun"] is False
    assert scaling(deployed, "peak") == {"minSize": 0, "maxSize": 2, "desiredSize": 2}
    code, lines, text = fleet("reconcile", "--stack-file", stack_file)
    assert code == 0 and text == ""                   # a second run has nothing to do
    drift(deployed, "base", 0, 3, 3)
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert [(x["pool"], x["scaling"]) for x in lines] == [("base", {"min": 1, "max": 3, "desired": 3})]


def test_at_is_refused_without_dry_run(deployed, stack_file, fleet, capsys):
    drift(deployed, "peak", 2, 2, 2)
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z")
    assert code == 2 and lines == [] and "add --dry-run" in capsys.readouterr().err
    assert scaling(deployed, "peak")["minSize"] == 2


def test_dry_run_changes_nothing_and_takes_no_lock(deployed, stack_file, fleet):
    drift(deployed, "peak", 2, 2, 2)
    before = (scaling(deployed, "peak"), ng_tags(deployed, "peak"))
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--at", "2026-03-30T07:45Z", "--dry-run")
    assert code == 0 and {x["pool"] for x in lines} == {"peak"} and all(x["dryRun"] for x in lines)
    assert lines[0]["at"].startswith("2026-03-30T07:45") and lines[0]["changed"] is False
    assert (scaling(deployed, "peak"), ng_tags(deployed, "peak")) == before
    bucket, _ = lock_key(deployed)
    assert client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_live_lock_blocks_a_stale_one_is_taken_over_and_break_lock_takes_a_dead_one(
        deployed, stack_file, fleet, capsys):
    bucket, key = lock_key(deployed)
    s3 = client("s3")
    drift(deployed, "peak", 2, 2, 2)
    body = {"owner": "ci@runner", "pid": 42, "command": "sweep", "expires": "2026-03-30T12:10:00Z"}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert code == 3 and lines == [] and scaling(deployed, "peak")["minSize"] == 2       # fake clock is 12:00Z
    err = capsys.readouterr().err
    assert "locked by ci@runner (pid 42, sweep) until 2026-03-30T12:10:00Z" in err and "--break-lock" in err
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--break-lock")
    assert code == 0 and lines[0]["action"] == "break-lock" and "ci@runner" in lines[0]["reason"]
    assert scaling(deployed, "peak")["minSize"] == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0
    drift(deployed, "peak", 2, 2, 2)
    body["expires"] = "2026-03-30T11:00:00Z"                                  # stale: taken over silently
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert code == 0 and scaling(deployed, "peak")["minSize"] == 0 and lines[0]["action"] == "scale"


def test_deployed_reads_the_stack_the_last_deploy_stored_not_the_local_file(deployed, stack_file, fleet, capsys):
    from infra.stack import names
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, "--deployed")
    assert code == 2 and "run `pulumi up -s jobs` once" in capsys.readouterr().err
    bucket, _ = lock_key(deployed)
    stored = stack_file.read_text()
    client("s3").put_object(Bucket=bucket, Key=names.deployed_key("jobs"), Body=stored.encode())
    # main now says maxSize 3 for peak (merged, not yet deployed): the job keeps the deployed 2
    stack_file.write_text(stored.replace("maxSize: 2", "maxSize: 3", 1))        # the first pool: peak
    code, lines, text = fleet("reconcile", "--stack-file", stack_file, "--deployed")
    assert code == 0 and text == "" and scaling(deployed, "peak")["maxSize"] == 2
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert scaling(deployed, "peak")["maxSize"] == 3                       # the local file, when asked for


def test_throttled_update_is_retried_with_backoff(deployed, stack_file, fleet, deps, fake_time):
    throttled = []

    def throttle(request):
        if len(throttled) < 2:
            throttled.append(request.url)
            return aws_reply(request, 429, b'{"message": "Rate exceeded"}', "ThrottlingException")
        return None

    drift(deployed, "peak", 2, 2, 2)
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file,
                           with_deps=answering(deps, "eks", "UpdateNodegroupConfig", throttle))
    assert code == 0 and len(throttled) == 2 and len(fake_time.sleeps) == 2
    assert 0.5 <= fake_time.sleeps[0] <= 1.0 and 1.0 <= fake_time.sleeps[1] <= 2.0   # exponential, jittered
    assert scaling(deployed, "peak") == {"minSize": 0, "maxSize": 2, "desiredSize": 2}


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
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    err = capsys.readouterr().err
    assert code == 2 and lines == [] and err.startswith("fleet reconcile: no AWS credentials:")
    assert err.count("\n") == 1


def test_a_pool_not_deployed_is_reported_and_the_others_are_handled(deployed, stack_file, fleet):
    client("eks").delete_nodegroup(clusterName="llm-fleet-jobs", nodegroupName="llm-fleet-jobs-burst")
    drift(deployed, "peak", 2, 2, 2)
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert code == 1                                                             # not all done
    by = {x["pool"]: x for x in lines}
    assert by["burst"]["action"] == "missing" and by["burst"]["changed"] is False
    assert by["peak"]["action"] == "scale" and by["peak"]["changed"] is True
    assert scaling(deployed, "peak") == {"minSize": 0, "maxSize": 2, "desiredSize": 2}


def test_one_pools_aws_error_does_not_stop_the_others_and_the_lines_say_what_changed(
        deployed, stack_file, fleet, deps):
    drift(deployed, "peak", 2, 2, 2)
    drift(deployed, "base", 0, 9, 2)

    def deny(request):
        if b"llm-fleet-jobs-peak" in request.url.encode():
            return aws_reply(request, 403, b'{"message": "not allowed"}', "AccessDeniedException")
        return None

    code, lines, _ = fleet("reconcile", "--stack-file", stack_file,
                           with_deps=answering(deps, "eks", "UpdateNodegroupConfig", deny))
    by = {x["pool"]: x for x in lines}
    assert code == 1
    assert by["peak"]["action"] == "error" and by["peak"]["changed"] is False
    assert "AccessDeniedException" in by["peak"]["reason"] and "nothing changed" in by["peak"]["reason"]
    assert by["base"]["changed"] is True and scaling(deployed, "base") == {"minSize": 1, "maxSize": 3,
                                                                           "desiredSize": 2}


def test_an_unexpected_aws_answer_is_one_line_and_exit_4(deployed, stack_file, fleet, deps, capsys):
    html = answering(deps, "eks", "DescribeNodegroup",
                     lambda request: aws_reply(request, 500, b"<html>oops</html>", content_type="text/html"))
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file, with_deps=html)
    err = capsys.readouterr().err
    assert code == 4 and lines == [] and err.startswith("fleet reconcile: AWS error: ") and err.count("\n") == 1


def test_an_override_is_kept_until_it_expires_then_the_stack_bounds_return(deployed, stack_file, fleet, fake_time):
    from datetime import UTC, datetime, timedelta
    arn = client("eks").describe_nodegroup(clusterName="llm-fleet-jobs",
                                           nodegroupName="llm-fleet-jobs-peak")["nodegroup"]["nodegroupArn"]
    client("eks").tag_resource(resourceArn=arn, tags=Override(1, datetime(2026, 3, 30, 13, tzinfo=UTC),
                                                              "ops").tags())
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert [(x["pool"], x["to"]) for x in lines] == [("peak", 1)] and "override 1" in lines[0]["reason"]
    assert scaling(deployed, "peak") == {"minSize": 1, "maxSize": 1, "desiredSize": 1}
    _, lines, text = fleet("reconcile", "--stack-file", stack_file)
    assert text == ""                                                          # honoured, nothing to do
    fake_time.now += timedelta(hours=1)
    _, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert lines[0]["action"] == "scale" and TAG_SIZE in lines[0]["removeTags"]
    assert scaling(deployed, "peak") == {"minSize": 0, "maxSize": 2, "desiredSize": 1}   # the autoscaler's now
    assert TAG_SIZE not in ng_tags(deployed, "peak")


def test_an_existing_cluster_stack_is_refused(aws, tmp_path, fleet, capsys):
    from tests.jobs.conftest import STACK
    path = tmp_path / "Pulumi.onprem.yaml"
    path.write_text(STACK.replace("  llm-fleet:pools:", "  llm-fleet:cluster:\n    existing: {kubeconfig: /tmp/kc}\n"
                                  "  llm-fleet:pools:", 1))
    code, lines, _ = fleet("reconcile", "--stack-file", path)
    assert code == 2 and lines == [] and "runs on an existing cluster" in capsys.readouterr().err


def test_node_groups_are_found_by_their_pool_tag_not_by_name(deployed, stack_file, fleet):
    """Generated node-group names (a replacement gets a new one): the pool tag is what the jobs follow."""
    from infra.stack import names
    eks = client("eks")
    eks.delete_nodegroup(clusterName="llm-fleet-jobs", nodegroupName="llm-fleet-jobs-peak")
    eks.create_nodegroup(clusterName="llm-fleet-jobs", nodegroupName="gpu-peak-2026120203101234",
                         nodeRole="arn:aws:iam::123456789012:role/node", subnets=["subnet-1", "subnet-2"],
                         scalingConfig={"minSize": 2, "maxSize": 2, "desiredSize": 2},
                         tags={**names.tags(deployed, "nodepools"), names.LABEL_POOL: "peak"})
    code, lines, _ = fleet("reconcile", "--stack-file", stack_file)
    assert code == 0 and [(x["pool"], x["scaling"]) for x in lines] == [("peak", {"min": 0, "max": 2, "desired": 2})]
    ng = eks.describe_nodegroup(clusterName="llm-fleet-jobs", nodegroupName="gpu-peak-2026120203101234")
    assert ng["nodegroup"]["scalingConfig"] == {"minSize": 0, "maxSize": 2, "desiredSize": 2}
