"""Network component: VPC, subnets, NAT, endpoints, AZ pinning, EFA and existing VPCs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pulumi
import pytest
import yaml

from infra.aws.network import choose_azs, subnet_cidrs
from scripts import render as render_module
from scripts.render import render
from tests.conftest import STACKS, named, of_type

SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


def stack_file(tmp_path: Path, edit, base: str = "prod", name: str = "t") -> Path:
    """A shipped stack, changed by `edit(config)`, written as tmp_path/Pulumi.<name>.yaml."""
    doc = yaml.safe_load((STACKS / f"Pulumi.{base}.yaml").read_text())
    edit(doc["config"])
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def pool_of(config: dict, name: str) -> dict:
    return next(p for p in config["llm-fleet:pools"] if p["name"] == name)


def add_multi_node(config: dict) -> None:
    """A BF16 GLM-5.1 (1.5 TB) needs two 8x H200 nodes per replica: EFA + placement group."""
    config["llm-fleet:pools"].append({"name": "h200-multi", "instanceTypes": ["p5en.48xlarge"],
                                      "capacity": "on-demand", "minSize": 0, "maxSize": 2, "diskGB": 300})
    config["llm-fleet:models"].append({"name": "glm-5-1-bf16", "source": "zai-org/GLM-5.1", "precision": "bf16",
                                       "engine": "vllm", "pool": "h200-multi", "replicas": {"min": 0, "max": 1},
                                       "maxNodesPerReplica": 2, "maxContext": 32768})


def render_error(path: Path) -> str:
    with pytest.raises(pulumi.RunError) as err:
        render(path)
    return str(err.value)


def narrow_offerings(monkeypatch, missing: dict[str, set[str]]) -> None:
    """Make the mocked DescribeInstanceTypeOfferings leave `type` out of the given AZ ids."""
    original = render_module.Recorder.call

    def call(self, args):
        result = original(self, args)
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            keep = [(t, z) for t, z in zip(result["instanceTypes"], result["locations"], strict=True)
                    if z not in missing.get(t, set())]
            result.update(instanceTypes=[t for t, _ in keep], locations=[z for _, z in keep],
                          locationTypes=["availability-zone-id"] * len(keep))
        return result

    monkeypatch.setattr(render_module.Recorder, "call", call)


# ---------------------------------------------------------------------------------------------- shipped stacks

def test_prod_vpc_spans_three_azs_with_private_and_public_subnets(rendered):
    records = rendered("prod")
    vpc = of_type(records, "aws:ec2/vpc:Vpc")[0]["inputs"]
    assert vpc["cidrBlock"] == "10.0.0.0/16" and vpc["enableDnsHostnames"] is True
    subnets = of_type(records, SUBNET)
    private = [s["inputs"] for s in subnets if "private" in s["name"]]
    public = [s["inputs"] for s in subnets if "public" in s["name"]]
    # use1-az3 is skipped: EKS refuses control-plane subnets there (test_first_deploy)
    assert sorted(s["availabilityZoneId"] for s in private) == ["use1-az1", "use1-az2", "use1-az4"]
    assert sorted(s["availabilityZoneId"] for s in public) == ["use1-az1", "use1-az2", "use1-az4"]
    for s in private:
        assert s["mapPublicIpOnLaunch"] is False
        assert s["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in s["tags"]
    for s in public:
        assert s["tags"]["kubernetes.io/role/elb"] == "1"
    cidrs = [ipaddress.ip_network(s["cidrBlock"]) for s in private + public]
    assert all(c.subnet_of(ipaddress.ip_network("10.0.0.0/16")) for c in cidrs)
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])


def test_nat_per_az_in_prod_and_single_in_dev(rendered):
    assert len(of_type(rendered("prod"), NAT)) == 3
    assert len(of_type(rendered("dev"), NAT)) == 1
    routes = of_type(rendered("dev"), "aws:ec2/route:Route")
    dev_routes = [r["inputs"] for r in routes if r["inputs"].get("natGatewayId")]
    assert len(dev_routes) == 2 and len({r["natGatewayId"] for r in dev_routes}) == 1


def test_weights_take_the_s3_gateway_endpoint_on_every_private_route_table(rendered):
    records = rendered("prod")
    s3 = named(records, "network-s3")["inputs"]
    assert s3["vpcEndpointType"] == "Gateway" and s3["serviceName"] == "com.amazonaws.us-east-1.s3"
    private_rts = [r for r in of_type(records, "aws:ec2/routeTable:RouteTable") if "private" in r["name"]]
    assert len(s3["routeTableIds"]) == len(private_rts) == 3


def test_interface_endpoints_follow_the_stack(rendered):
    prod = [e["inputs"] for e in of_type(rendered("prod"), ENDPOINT) if e["inputs"]["vpcEndpointType"] == "Interface"]
    assert sorted(e["serviceName"].removeprefix("com.amazonaws.us-east-1.") for e in prod) == [
        "ecr.api", "ecr.dkr", "logs", "sts"]
    assert all(e["privateDnsEnabled"] is True and len(e["subnetIds"]) == 3 for e in prod)
    dev = [e for e in of_type(rendered("dev"), ENDPOINT) if e["inputs"]["vpcEndpointType"] == "Interface"]
    assert dev == []


def test_no_efa_or_placement_group_without_multi_node_pools(rendered):
    records = rendered("prod")
    assert of_type(records, "aws:ec2/placementGroup:PlacementGroup") == []
    assert not [r for r in of_type(records, "aws:ec2/securityGroup:SecurityGroup") if r["name"] == "network-efa"]


# ---------------------------------------------------------------------------------------------- pure

def test_subnet_cidrs_are_fixed_by_az_id():
    assert subnet_cidrs("10.0.0.0/16", "use1-az1") == ("10.0.0.0/20", "10.0.128.0/23")
    assert subnet_cidrs("10.0.0.0/16", "use1-az4") == ("10.0.48.0/20", "10.0.134.0/23")
    with pytest.raises(pulumi.RunError, match="too small"):
        subnet_cidrs("10.0.0.0/22", "use1-az1")


def test_choose_azs_keeps_pinned_azs_and_fills_in_region_order(stack_values):
    from infra.stack.config import parse_config

    values = stack_values("prod")
    values["llm-fleet:pools"][0]["azIds"] = ["use1-az5"]
    cfg = parse_config(values, "prod")
    region = ["use1-az1", "use1-az2", "use1-az3", "use1-az4", "use1-az5", "use1-az6"]
    assert choose_azs(region, 3, cfg.pools) == ("use1-az1", "use1-az2", "use1-az5")


# ---------------------------------------------------------------------------------------------- pinning and errors

def test_pinned_az_is_spanned_and_used_by_the_pool(tmp_path):
    records = render(stack_file(tmp_path, lambda c: pool_of(c, "h200-base").update(azIds=["use1-az4"])))
    assert "network-private-use1-az4" in {s["name"] for s in of_type(records, SUBNET)}
    assert named(records, "gpu-h200-base")["inputs"]["subnetIds"] == ["network-private-use1-az4-id"]
    assert len(named(records, "gpu-h200-spot")["inputs"]["subnetIds"]) == 3


def test_az_id_outside_the_region_is_refused_naming_pool_and_azs(tmp_path):
    message = render_error(stack_file(tmp_path, lambda c: pool_of(c, "h200-base").update(azIds=["use1-az7"])))
    assert "pools.h200-base.azIds" in message and "use1-az7" in message and "use1-az1, use1-az2" in message


def test_az_without_the_shape_is_refused(tmp_path, monkeypatch):
    narrow_offerings(monkeypatch, {"p5en.48xlarge": {"use1-az2"}})
    message = render_error(stack_file(tmp_path, lambda c: pool_of(c, "h200-base").update(azIds=["use1-az2"])))
    assert "pools.h200-base.azIds: use1-az2 does not offer p5en.48xlarge" in message
    assert "use1-az1" in message and "use1-az2," not in message


def test_unpinned_pool_uses_only_azs_that_offer_its_types(tmp_path, monkeypatch):
    narrow_offerings(monkeypatch, {"p5en.48xlarge": {"use1-az1", "use1-az4"}})
    records = render(stack_file(tmp_path, lambda c: None))
    assert named(records, "gpu-h200-base")["inputs"]["subnetIds"] == ["network-private-use1-az2-id"]


def test_more_pinned_azs_than_az_count_is_refused(tmp_path):
    def edit(c):
        c["llm-fleet:network"]["azCount"] = 2
        pool_of(c, "h200-base").update(azIds=["use1-az4", "use1-az5", "use1-az6"])
    assert "raise network.azCount to 3" in render_error(stack_file(tmp_path, edit))


def test_multi_node_pool_gets_efa_group_placement_group_and_one_az(tmp_path):
    records = render(stack_file(tmp_path, add_multi_node))
    pg = named(records, "network-pg-h200-multi")["inputs"]
    assert pg["strategy"] == "cluster" and pg["name"] == "llm-fleet-t-h200-multi"
    ingress = named(records, "network-efa-in")["inputs"]
    egress = named(records, "network-efa-out")["inputs"]
    for rule in (ingress, egress):
        assert rule["ipProtocol"] == "-1" and rule["referencedSecurityGroupId"] == rule["securityGroupId"]
    assert len(named(records, "gpu-h200-multi")["inputs"]["subnetIds"]) == 1


def test_existing_vpc_is_used_as_given(tmp_path):
    def edit(c):
        c["llm-fleet:network"] = {"existingVpcId": "vpc-0abc12345678def00",
                                  "existingPrivateSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2",
                                                               "subnet-0aaaaaaaaaaaaaaa3"],
                                  "existingPublicSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1"]}
        pool_of(c, "h200-base").update(azIds=["use1-az3"])      # the mock puts subnet ...a2 in az3
    records = render(stack_file(tmp_path, edit))
    assert of_type(records, "aws:ec2/vpc:Vpc") == [] and of_type(records, SUBNET) == []
    cluster = of_type(records, "aws:eks/cluster:Cluster")[0]["inputs"]
    # ...a2 is in use1-az3, where EKS refuses the control plane; the pool pinned there still gets it
    assert cluster["vpcConfig"]["subnetIds"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa3"]
    assert named(records, "gpu-h200-base")["inputs"]["subnetIds"] == ["subnet-0aaaaaaaaaaaaaaa2"]


def test_existing_vpc_without_the_pinned_az_is_refused(tmp_path):
    def edit(c):
        c["llm-fleet:network"] = {"existingVpcId": "vpc-0abc12345678def00",
                                  "existingPrivateSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2",
                                                               "subnet-0aaaaaaaaaaaaaaa3"]}
        pool_of(c, "h200-base").update(azIds=["use1-az5"])
    message = render_error(stack_file(tmp_path, edit))
    assert "the VPC does not span 'use1-az5'" in message and "use1-az2, use1-az3, use1-az4" in message
