"""The VPC the fleet runs in: private/public subnets per AZ, NAT, an S3 gateway endpoint (weights never
cross NAT), optional interface endpoints, and for multi-node pools an EFA security group and a cluster
placement group. Or an existing VPC, given by its subnet ids.

AZs are chosen by AZ *id* (use1-az4), not name: names are shuffled per account, ids are not, and GPU
shapes exist only in some ids. Every check that needs AWS data (AZs of the region, which AZs offer a
pool's instance types, the AZ of an existing subnet) runs as a synchronous invoke while the program is
built, so a stack that asks for something impossible fails at preview with nothing created.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.planning.plan import Plan
from infra.stack import names
from infra.stack.spec import PoolSpec, StackConfig

MAX_AZ_SLOT = 8          # subnet CIDRs are carved by the AZ id's number (use1-az4 -> slot 3)
# AZ ids where EKS refuses control-plane subnets (Amazon EKS user guide, "VPC and subnet requirements":
# "us-east-1: use1-az3, us-west-1: usw1-az2, ca-central-1: cac1-az3"). Node groups may still use them.
CONTROL_PLANE_UNSUPPORTED_AZS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})
ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts", "logs")


class NetworkError(pulumi.RunError):
    """A stack file that asks for a network AWS cannot give (the message names the pool and the fix)."""


# ---------------------------------------------------------------------------------------------- pure

def az_slot(az_id: str) -> int:
    match = re.fullmatch(r"[a-z0-9]+-az(\d+)", az_id)
    if not match or not 1 <= int(match.group(1)) <= MAX_AZ_SLOT:
        raise NetworkError(f"AZ id {az_id!r} is not one this network can carve a subnet for "
                           f"(expected <region-code>-az1..az{MAX_AZ_SLOT})")
    return int(match.group(1)) - 1


def subnet_cidrs(vpc_cidr: str, az_id: str) -> tuple[str, str]:
    """(private, public) CIDRs for an AZ, fixed by the AZ id so adding an AZ never moves another.
    Private subnets take the lower half of the VPC in eighths (/20 in a /16: pods use VPC IPs),
    public subnets small blocks of the upper half (/23 in a /16: NAT gateways and load balancers)."""
    net = ipaddress.ip_network(vpc_cidr)
    if net.prefixlen > 20:
        raise NetworkError(f"network.cidr: {vpc_cidr} is too small for {MAX_AZ_SLOT} AZ slots of private "
                           "and public subnets; use a /20 or larger (e.g. 10.0.0.0/16)")
    slot = az_slot(az_id)
    private = list(net.subnets(new_prefix=net.prefixlen + 4))[slot]
    upper = list(net.subnets(new_prefix=net.prefixlen + 1))[1]
    public = list(upper.subnets(new_prefix=net.prefixlen + 7))[slot]
    return str(private), str(public)


def choose_azs(region_azs: Sequence[str], az_count: int, pools: Iterable[PoolSpec]) -> tuple[str, ...]:
    """The AZ ids the VPC spans: every AZ a pool pins, filled up to az_count in the region's order with
    AZs the EKS control plane accepts first (an unsupported one only when nothing else is left)."""
    pinned: list[str] = []
    for pool in pools:
        for az in pool.az_ids:
            if az not in region_azs:
                raise NetworkError(f"pools.{pool.name}.azIds: {az!r} is not an available AZ id in this region; "
                                   f"available: {', '.join(region_azs)}")
            if az not in pinned:
                pinned.append(az)
    if len(pinned) > az_count:
        raise NetworkError(f"network.azCount: the pools pin {len(pinned)} AZs ({', '.join(pinned)}) but azCount is "
                           f"{az_count}; raise network.azCount to {len(pinned)} or pin fewer AZs")
    if len(region_azs) < az_count:
        raise NetworkError(f"network.azCount: {az_count} AZs asked, the region has {len(region_azs)} "
                           f"({', '.join(region_azs)})")
    chosen = set(pinned)
    fill = [az for az in region_azs if az not in CONTROL_PLANE_UNSUPPORTED_AZS]
    fill += [az for az in region_azs if az in CONTROL_PLANE_UNSUPPORTED_AZS]
    for az in fill:
        if len(chosen) >= az_count:
            break
        chosen.add(az)
    return tuple(az for az in region_azs if az in chosen)


def control_plane_azs(vpc_azs: Sequence[str]) -> tuple[str, ...]:
    """The VPC's AZ ids the EKS control plane may use (it needs subnets in at least two)."""
    usable = tuple(az for az in vpc_azs if az not in CONTROL_PLANE_UNSUPPORTED_AZS)
    if len(usable) < 2:
        refused = ", ".join(az for az in vpc_azs if az in CONTROL_PLANE_UNSUPPORTED_AZS)
        raise NetworkError(f"network: the EKS control plane needs private subnets in two AZs it supports; this VPC "
                           f"has {', '.join(usable) or 'none'} ({refused} refused by EKS); raise network.azCount, "
                           "or with existingVpcId list private subnets in two other AZs")
    return usable


def pool_azs(pool: PoolSpec, vpc_azs: Sequence[str], offered: Mapping[str, set[str]],
             single_az: bool) -> tuple[str, ...]:
    """The AZ ids a pool's node group uses: its pinned AZs (each must be in the VPC and offer one of the
    pool's types) or every VPC AZ that offers one; one AZ when a placement group or reservation needs it."""
    def offers(az: str) -> bool:
        # A Capacity Block's reservation is the proof the shape is there (some shapes are sold only as
        # blocks and may not be listed as regular offerings).
        if pool.capacity == "capacity-block":
            return True
        return any(az in offered.get(t, set()) for t in pool.instance_types)

    types = ", ".join(pool.instance_types)
    if pool.az_ids:
        for az in pool.az_ids:
            if az not in vpc_azs:
                raise NetworkError(f"pools.{pool.name}.azIds: the VPC does not span {az!r}; its AZ ids: "
                                   f"{', '.join(vpc_azs)}")
            if not offers(az):
                where = sorted({a for t in pool.instance_types for a in offered.get(t, set())})
                raise NetworkError(f"pools.{pool.name}.azIds: {az} does not offer {types}; AZ ids that do: "
                                   f"{', '.join(where) or 'none in this region'}")
        chosen = tuple(pool.az_ids)
    else:
        chosen = tuple(az for az in vpc_azs if offers(az))
        if not chosen:
            raise NetworkError(f"pools.{pool.name}.instanceTypes: none of the VPC's AZs ({', '.join(vpc_azs)}) offers "
                               f"{types}; pin an AZ id that does under pools.{pool.name}.azIds")
    if pool.capacity == "capacity-block" and len(chosen) != 1:
        raise NetworkError(f"pools.{pool.name}.azIds: a Capacity Block lives in one AZ; pin exactly the AZ id "
                           "of the reservation (see `aws ec2 describe-capacity-reservations`)")
    return chosen[:1] if single_az else chosen


def multi_node_pools(cfg: StackConfig, plan: Plan) -> tuple[str, ...]:
    """Pools where some deployment spans more than one node per replica (EFA + placement group)."""
    return tuple(p.name for p in cfg.pools if any(d.layout.nodes > 1 for d in plan.deployments_on(p.name)))


def _offerings(types: Sequence[str]) -> dict[str, set[str]]:
    result = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone-id",
        filters=[aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=sorted(set(types)))])
    offered: dict[str, set[str]] = {}
    for itype, location in zip(result.instance_types, result.locations, strict=True):
        offered.setdefault(itype, set()).add(location)
    return offered


# ---------------------------------------------------------------------------------------------- component

class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    cluster_subnet_ids: pulumi.Output[list[str]]       # private subnets in AZs the control plane accepts
    public_subnet_ids: pulumi.Output[list[str]]
    efa_security_group_id: pulumi.Output[str] | None

    def __init__(self, name: str, cfg: StackConfig, plan: Plan, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:network:Network", name, None, opts)
        self._name, self._cfg = name, cfg
        self._child = pulumi.ResourceOptions(parent=self)
        self._cluster = names.cluster_name(cfg)
        self._tags = names.tags(cfg, "network")
        self._multi = multi_node_pools(cfg, plan)
        offered = _offerings([t for p in cfg.pools for t in p.instance_types]) if cfg.pools else {}

        if cfg.network.existing_vpc_id:
            private_by_az = self._adopt()
        else:
            private_by_az = self._build()
        self.azs = tuple(private_by_az)
        self.cluster_subnet_ids = pulumi.Output.all(
            *[sid for az in control_plane_azs(self.azs) for sid in private_by_az[az]]).apply(list)
        self._pool_subnets: dict[str, pulumi.Output[list[str]]] = {}
        for pool in cfg.pools:
            azs = pool_azs(pool, self.azs, offered, single_az=pool.name in self._multi)
            ids = [sid for az in azs for sid in private_by_az[az]]
            self._pool_subnets[pool.name] = pulumi.Output.all(*ids).apply(list)

        self.efa_security_group_id = self._efa_group() if self._multi else None
        self.runner_security_group_id = self._runner_group() if cfg.ci.runner == "codebuild" else None
        self._placement: dict[str, pulumi.Output[str]] = {
            pool: aws.ec2.PlacementGroup(
                f"{name}-pg-{pool}", name=names.nodegroup_name(cfg, pool), strategy="cluster",
                tags={**self._tags, names.LABEL_POOL: pool}, opts=self._child).name
            for pool in self._multi}
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "public_subnet_ids": self.public_subnet_ids})

    # -- what the other components ask for
    def subnet_ids_for(self, pool: PoolSpec) -> pulumi.Output[list[str]]:
        """Private subnets for the pool's node group (its pinned AZs, or the AZs offering its types)."""
        return self._pool_subnets[pool.name]

    def placement_group(self, pool_name: str) -> pulumi.Output[str] | None:
        return self._placement.get(pool_name)

    # -- a VPC of our own
    def _build(self) -> dict[str, list[pulumi.Output[str]]]:
        cfg, name, child, tags = self._cfg, self._name, self._child, self._tags
        zones = aws.get_availability_zones(
            state="available",
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])])
        azs = choose_azs(list(zones.zone_ids), cfg.network.az_count, cfg.pools)
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=cfg.network.cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, tags={**tags, "Name": self._cluster}, opts=child)
        self.vpc_id = vpc.id
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": self._cluster}, opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id,
                                       tags={**tags, "Name": f"{self._cluster}-public"}, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=child)
        cluster_tag = {f"kubernetes.io/cluster/{self._cluster}": "shared"}
        private, public, private_rts = {}, {}, []
        nat_ids: dict[str, pulumi.Output[str]] = {}
        for az in azs:
            private_cidr, public_cidr = subnet_cidrs(cfg.network.cidr, az)
            public[az] = aws.ec2.Subnet(
                f"{name}-public-{az}", vpc_id=vpc.id, cidr_block=public_cidr, availability_zone_id=az,
                map_public_ip_on_launch=False,
                tags={**tags, **cluster_tag, "Name": f"{self._cluster}-public-{az}", "kubernetes.io/role/elb": "1"},
                opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{az}", subnet_id=public[az].id,
                                          route_table_id=public_rt.id, opts=child)
            private[az] = aws.ec2.Subnet(
                f"{name}-private-{az}", vpc_id=vpc.id, cidr_block=private_cidr, availability_zone_id=az,
                map_public_ip_on_launch=False,
                tags={**tags, **cluster_tag, "Name": f"{self._cluster}-private-{az}",
                      "kubernetes.io/role/internal-elb": "1"},
                opts=child)
            if cfg.network.nat == "per-az" or not nat_ids:
                eip = aws.ec2.Eip(f"{name}-nat-{az}", domain="vpc", tags={**tags, "Name": f"{self._cluster}-nat-{az}"},
                                  opts=child)
                nat_ids[az] = aws.ec2.NatGateway(
                    f"{name}-nat-{az}", allocation_id=eip.id, subnet_id=public[az].id,
                    tags={**tags, "Name": f"{self._cluster}-{az}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])).id
            nat = nat_ids.get(az) or next(iter(nat_ids.values()))
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{az}", vpc_id=vpc.id,
                                    tags={**tags, "Name": f"{self._cluster}-private-{az}"}, opts=child)
            aws.ec2.Route(f"{name}-private-default-{az}", route_table_id=rt.id, destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nat, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{az}", subnet_id=private[az].id, route_table_id=rt.id,
                                          opts=child)
            private_rts.append(rt.id)
        # Weights (and ECR image layers, which ECR serves from S3) take the gateway endpoint, not NAT.
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{cfg.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=private_rts,
                            tags={**tags, "Name": f"{self._cluster}-s3"}, opts=child)
        if cfg.network.interface_endpoints:
            self._interface_endpoints(vpc, [private[az].id for az in azs])
        self.private_subnet_ids = pulumi.Output.all(*[private[az].id for az in azs]).apply(list)
        self.public_subnet_ids = pulumi.Output.all(*[public[az].id for az in azs]).apply(list)
        return {az: [private[az].id] for az in azs}

    def _interface_endpoints(self, vpc: aws.ec2.Vpc, subnet_ids: list[pulumi.Output[str]]) -> None:
        cfg, name, child, tags = self._cfg, self._name, self._child, self._tags
        sg = aws.ec2.SecurityGroup(f"{name}-endpoints", name=f"{self._cluster}-endpoints", vpc_id=vpc.id,
                                   description="HTTPS from the VPC to its interface endpoints",
                                   tags={**tags, "Name": f"{self._cluster}-endpoints"}, opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=sg.id, ip_protocol="tcp",
                                         from_port=443, to_port=443, cidr_ipv4=vpc.cidr_block,
                                         description="HTTPS from the VPC", opts=child)
        for service in cfg.network.interface_endpoints:
            aws.ec2.VpcEndpoint(f"{name}-{service.replace('.', '-')}", vpc_id=vpc.id,
                                service_name=f"com.amazonaws.{cfg.region}.{service}",
                                vpc_endpoint_type="Interface", private_dns_enabled=True, subnet_ids=subnet_ids,
                                security_group_ids=[sg.id], tags={**tags, "Name": f"{self._cluster}-{service}"},
                                opts=child)

    # -- a VPC the user already has
    def _adopt(self) -> dict[str, list[pulumi.Output[str]]]:
        net = self._cfg.network
        self.vpc_id = pulumi.Output.from_input(net.existing_vpc_id)
        self.private_subnet_ids = pulumi.Output.from_input(list(net.existing_private_subnet_ids))
        self.public_subnet_ids = pulumi.Output.from_input(list(net.existing_public_subnet_ids))
        by_az: dict[str, list[pulumi.Output[str]]] = {}
        for sid in net.existing_private_subnet_ids:
            subnet = aws.ec2.get_subnet(id=sid)
            if subnet.vpc_id and subnet.vpc_id != net.existing_vpc_id:
                raise NetworkError(f"network.existingPrivateSubnetIds: {sid} is in {subnet.vpc_id}, not in "
                                   f"existingVpcId {net.existing_vpc_id}")
            by_az.setdefault(subnet.availability_zone_id, []).append(pulumi.Output.from_input(sid))
        pulumi.log.info(f"network: existing VPC {net.existing_vpc_id}; make sure its private route tables have an "
                        "S3 gateway endpoint, or every weight download crosses NAT", resource=self)
        return by_az

    def _runner_group(self) -> pulumi.Output[str]:
        """The CodeBuild deploy runner's group: out to anywhere (GitHub, AWS APIs through NAT or endpoints,
        the cluster's private endpoint, which lets this group in on 443), nothing in."""
        name, child = self._name, self._child
        sg = aws.ec2.SecurityGroup(f"{name}-runner", name=f"{self._cluster}-deploy-runner", vpc_id=self.vpc_id,
                                   description="CI deploy runner (CodeBuild): egress only",
                                   tags={**self._tags, "Name": f"{self._cluster}-deploy-runner"}, opts=child)
        aws.vpc.SecurityGroupEgressRule(f"{name}-runner-out", security_group_id=sg.id, ip_protocol="-1",
                                        cidr_ipv4="0.0.0.0/0", description="GitHub, AWS APIs, the EKS endpoint",
                                        opts=child)
        return sg.id

    def _efa_group(self) -> pulumi.Output[str]:
        """EFA needs every protocol open within the group, both directions (AWS EFA user guide)."""
        name, child = self._name, self._child
        sg = aws.ec2.SecurityGroup(f"{name}-efa", name=f"{self._cluster}-efa", vpc_id=self.vpc_id,
                                   description="EFA: all traffic between members of this group",
                                   tags={**self._tags, "Name": f"{self._cluster}-efa"}, opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-efa-in", security_group_id=sg.id, ip_protocol="-1",
                                         referenced_security_group_id=sg.id, description="EFA within the group",
                                         opts=child)
        aws.vpc.SecurityGroupEgressRule(f"{name}-efa-out", security_group_id=sg.id, ip_protocol="-1",
                                        referenced_security_group_id=sg.id, description="EFA within the group",
                                        opts=child)
        return sg.id
