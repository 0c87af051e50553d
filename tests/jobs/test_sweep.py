"""`fleet sweep` against moto: the cost report (idle pools, spot fallback), which never writes a size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infra.planning.catalog import load_catalog
from infra.planning.fleetops import pool_prices
from tests.jobs.conftest import client, prometheus_reply, scaling


def sunday_noon() -> str:
    """A Sunday noon (UTC) at least two days after now: moto stamps modifiedAt with the real clock,
    and sweep only calls a pool idle once it has kept its size for idleMinutes."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    day += timedelta(days=(6 - day.weekday()) % 7)
    return f"{day.isoformat()}T12:00Z"


@pytest.fixture
def instances(aws):
    """Start instances tagged as EKS tags a node group's; terminated afterwards (EC2 is not reset)."""
    ec2, started = client("ec2"), []

    def start(cluster: str, group: str, spot: bool) -> None:
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
        reply = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g6.xlarge", **extra,
                                  TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                      {"Key": "eks:cluster-name", "Value": cluster},
                                      {"Key": "eks:nodegroup-name", "Value": group}]}])
        started.extend(i["InstanceId"] for i in reply["Instances"])

    yield start
    if started:
        ec2.terminate_instances(InstanceIds=started)


def test_idle_spot_pool_and_on_demand_fallback_are_reported_and_nothing_changes(deployed, stack_file, fleet,
                                                                               http_server, instances):
    eks = client("eks")
    eks.update_nodegroup_config(clusterName="llm-fleet-jobs", nodegroupName="llm-fleet-jobs-burst",
                                scalingConfig={"minSize": 0, "maxSize": 2, "desiredSize": 2})
    instances("llm-fleet-jobs", "llm-fleet-jobs-burst", spot=True)
    instances("llm-fleet-jobs", "llm-fleet-jobs-burst", spot=False)
    instances("llm-fleet-jobs", "llm-fleet-jobs-base", spot=False)             # not a spot pool: not noted
    queries = []

    def query(q):
        queries.append(q["query"])
        return prometheus_reply(0)

    http_server.routes["/api/v1/query"] = query
    at = sunday_noon()
    code, lines, _ = fleet("sweep", "--stack-file", stack_file, "--at", at, "--prometheus-url", http_server.url)
    assert code == 0
    assert [(x["pool"], x["action"], x["from"], x["to"], x["changed"]) for x in lines] == [
        ("burst", "note", 2, 2, False), ("burst", "note", 2, 2, False)]
    price = pool_prices(deployed, load_catalog())["burst"]
    assert lines[0]["hourlySavingUSD"] == round(2 * price.paid_usd, 2)
    assert "idle: no requests for 30 min" in lines[0]["reason"] and "autoscaler" in lines[0]["reason"]
    assert "1 on-demand node(s) in spot pool burst" in lines[1]["reason"]
    assert lines[1]["hourlySavingUSD"] == round(price.on_demand_usd - price.paid_usd, 2)
    assert scaling(deployed, "burst") == {"minSize": 0, "maxSize": 2, "desiredSize": 2}   # sizes are not sweep's
    assert any("[30m]" in q for q in queries)                                  # idleMinutes of the pool


def test_busy_pool_is_not_idle_and_no_metrics_or_no_series_is_unknown(deployed, stack_file, fleet, http_server):
    client("eks").update_nodegroup_config(clusterName="llm-fleet-jobs", nodegroupName="llm-fleet-jobs-burst",
                                          scalingConfig={"minSize": 0, "maxSize": 2, "desiredSize": 1})
    http_server.routes["/api/v1/query"] = lambda q: prometheus_reply(7 if "increase" in q["query"] else 0)
    _, lines, text = fleet("sweep", "--stack-file", stack_file, "--at", sunday_noon(),
                           "--prometheus-url", http_server.url)
    assert text == ""                                                         # 7 requests finished lately
    _, lines, _ = fleet("sweep", "--stack-file", stack_file, "--at", sunday_noon())
    assert [(x["pool"], x["action"]) for x in lines] == [("burst", "note")]
    assert "idle unknown for pool burst" in lines[0]["reason"]
    # engines still loading: Prometheus has no series for the pool yet, which is not "idle"
    http_server.routes["/api/v1/query"] = lambda q: prometheus_reply(None)
    _, lines, _ = fleet("sweep", "--stack-file", stack_file, "--at", sunday_noon(),
                        "--prometheus-url", http_server.url)
    assert "idle unknown" in lines[0]["reason"] and scaling(deployed, "burst")["desiredSize"] == 1
