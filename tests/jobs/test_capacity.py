"""`fleet capacity`: moto 5.2.5 lacks the Capacity Block APIs, so EC2 is a botocore Stubber fed from
tests/fixtures/aws (see its NOTE.md); STS and the S3 lock still run against moto."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.stub import Stubber

from infra.planning.catalog import load_catalog
from infra.stack import names
from scripts import aws as aws_mod
from tests.jobs.conftest import answering, aws_reply, client, lock_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "aws"
AT = "2026-03-28T00:00Z"                   # a Saturday: the next two weeks' Shanghai business days
WEEK1 = (datetime(2026, 3, 29, 11, 30, tzinfo=UTC), datetime(2026, 4, 3, 11, 30, tzinfo=UTC))


def recorded(name: str) -> dict:
    """A fixture's response with its timestamps as aware datetimes, as botocore's parser returns them."""
    def convert(value, key=""):
        if isinstance(value, dict):
            return {k: convert(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if key.endswith("Date") and isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value
    return convert(json.loads((FIXTURES / f"{name}.json").read_text())["response"])


@pytest.fixture
def ec2_stub(deps):
    """deps whose EC2 client is stubbed; every other client is real (moto)."""
    made = {}

    def make(session, service):
        c = aws_mod.client(session, service)
        if service == "ec2":
            made["stub"] = Stubber(c)
            for args in made["queue"]:
                made["stub"].add_response(*args)
            made["stub"].activate()
        return c

    made["queue"] = [("describe_capacity_reservations", recorded("ec2-describe-capacity-reservations"),
                      {"Filters": [{"Name": "instance-type", "Values": ["p5en.48xlarge"]},
                                   {"Name": "state", "Values": ["active", "scheduled", "payment-pending"]}]}),
                     ("describe_capacity_block_offerings", recorded("ec2-describe-capacity-block-offerings"),
                      {"InstanceType": "p5en.48xlarge", "InstanceCount": 1, "CapacityDurationHours": 120,
                       "StartDateRange": WEEK1[0], "EndDateRange": WEEK1[1]})]
    made["deps"] = dataclasses.replace(deps, client=make)
    return made


def test_offers_are_priced_against_on_demand_and_covered_weeks_skipped(deployed, stack_file, fleet, ec2_stub):
    code, lines, _ = fleet("capacity", "--stack-file", stack_file, "--weeks", "2", "--at", AT,
                           with_deps=ec2_stub["deps"])
    assert code == 0
    ec2_stub["stub"].assert_no_pending_responses()                            # and nothing else was called
    assert [x["action"] for x in lines] == ["offer", "offer", "offer", "covered"]
    on_demand = load_catalog().instance("p5en.48xlarge").hourly_usd("us-east-1")
    best = lines[0]
    assert (best["offering"], best["covers"], best["hours"], best["upfrontUSD"]) == (
        "cb-0bfad2f7fb1b4478a", True, 120, 4012.80)
    assert best["usdPerNodeHour"] == round(4012.80 / 120, 2)
    assert best["onDemandSameHoursUSD"] == round(on_demand * 120, 2)
    assert best["onDemandScheduledUSD"] == round(on_demand * 5 * 10.75, 2)   # 5 days of 10 h + 45 min pre-warm
    assert lines[2]["offering"] == "cb-0c1fa9b2125eb49e0" and lines[2]["covers"] is False   # starts a day late
    assert lines[3]["reservation"] == "cr-0a1b2c3d4e5f60718" and lines[3]["spanStart"] == "2026-04-05T11:30:00Z"
    bucket, _ = lock_key(deployed)
    assert client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0   # reading takes no lock


def test_purchase_buys_the_cheapest_covering_offering_only_when_asked(deployed, stack_file, fleet, ec2_stub,
                                                                      fake_time, capsys):
    code, _, _ = fleet("capacity", "--stack-file", stack_file, "--weeks", "2", "--at", AT, "--purchase",
                       with_deps=ec2_stub["deps"])
    assert code == 2 and "add --dry-run" in capsys.readouterr().err          # --at buys only in a dry run
    fake_time.now = datetime.fromisoformat(AT.replace("Z", "+00:00"))
    ec2_stub["queue"].append(("purchase_capacity_block", recorded("ec2-purchase-capacity-block"), {
        "CapacityBlockOfferingId": "cb-0bfad2f7fb1b4478a", "InstancePlatform": "Linux/UNIX",
        "TagSpecifications": [{"ResourceType": "capacity-reservation", "Tags": [
            {"Key": k, "Value": v} for k, v in {**names.tags(deployed, "capacity"),
                                                "llm-fleet/pool": "block"}.items()]}]}))
    code, lines, _ = fleet("capacity", "--stack-file", stack_file, "--weeks", "2", "--purchase",
                           with_deps=ec2_stub["deps"])
    assert code == 0
    ec2_stub["stub"].assert_no_pending_responses()
    [bought] = [x for x in lines if x["action"] == "purchase"]
    assert bought["offering"] == "cb-0bfad2f7fb1b4478a" and bought["reservation"] == "cr-0123456789abcdef1"
    assert "capacityReservationId" in bought["reason"] and bought["dryRun"] is False
    bucket, key = lock_key(deployed)
    assert client("s3").list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0   # lock released


def test_purchase_dry_run_buys_nothing(deployed, stack_file, fleet, ec2_stub):
    code, lines, _ = fleet("capacity", "--stack-file", stack_file, "--weeks", "2", "--at", AT, "--purchase",
                           "--dry-run", with_deps=ec2_stub["deps"])
    assert code == 0                                    # a purchase call would fail: it is not stubbed
    ec2_stub["stub"].assert_no_pending_responses()
    [would] = [x for x in lines if x["action"] == "purchase"]
    assert would["dryRun"] is True and "would purchase" in would["reason"] and "reservation" not in would


def test_capacity_needs_a_capacity_block_pool(deployed, stack_file, fleet, capsys):
    code, _, _ = fleet("capacity", "--stack-file", stack_file, "--pool", "peak", "--at", AT)
    assert code == 2 and "not a capacity-block pool" in capsys.readouterr().err
    code, _, _ = fleet("capacity", "--stack-file", stack_file, "--weeks", "30", "--at", AT)
    assert code == 2 and "--weeks 30" in capsys.readouterr().err


@pytest.mark.parametrize("error, code, message", [
    ({"service_error_code": "InternalError", "service_message": "We encountered an internal error",
      "http_status_code": 500}, 4, "AWS error: DescribeCapacityReservations: AWS answered InternalError"),
    ({"service_error_code": "UnauthorizedOperation", "service_message": "not authorized",
      "http_status_code": 403}, 2, "AWS refused (UnauthorizedOperation: not authorized)"),
])
def test_every_aws_error_is_one_line_with_its_exit_status(deployed, stack_file, fleet, deps, error, code,
                                                          message, capsys):
    def make(session, service):
        c = aws_mod.client(session, service, max_attempts=1)
        if service == "ec2":
            stub = Stubber(c)
            stub.add_client_error("describe_capacity_reservations", **error)
            stub.activate()
        return c

    got, lines, _ = fleet("capacity", "--stack-file", stack_file, "--at", AT,
                          with_deps=dataclasses.replace(deps, client=make))
    err = capsys.readouterr().err
    assert got == code and lines == [] and message in err and err.count("\n") == 1


def test_an_answer_botocore_cannot_parse_is_one_line_and_exit_4(deployed, stack_file, fleet, deps, capsys):
    """An HTTP 500 with an HTML body: a ResponseParserError traceback before."""
    html = answering(deps, "ec2", "DescribeCapacityReservations",
                     lambda request: aws_reply(request, 500, b"<html><body>502</body>", content_type="text/html"))
    got, lines, _ = fleet("capacity", "--stack-file", stack_file, "--at", AT, with_deps=html)
    err = capsys.readouterr().err
    assert got == 4 and err.startswith("fleet capacity: AWS error:") and err.count("\n") == 1
