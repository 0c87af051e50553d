"""Checks that span sections of the stack file, run once every section is parsed: what the resource
code would otherwise refuse only at `fleet render` / `pulumi preview` (one validation layer for plan,
render and the program). Pure."""

from __future__ import annotations

import ipaddress
import re

from infra.stack.cidr import parse_cidr, refuse_overlap
from infra.stack.names import deployment_name
from infra.stack.reader import ConfigError
from infra.stack.spec import GatewaySpec, SecretRef, StackConfig

NS = "llm-fleet"
FALLBACK_SUFFIX = "-fallback"    # the gateway's public name for a fallback (infra.serving.gateway.FALLBACK_SUFFIX)
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def check_stack(cfg: StackConfig) -> None:
    _refuse_shared_keys(cfg.gateway)
    _refuse_same_kubernetes_names(cfg)
    names = {m.name for m in cfg.models}
    for model in cfg.gateway.fallbacks:
        if model + FALLBACK_SUFFIX in names:
            raise ConfigError(f"{NS}.gateway.fallbacks.{model}: the gateway serves this fallback as "
                              f"{model + FALLBACK_SUFFIX!r}, which is also a model's name; rename that model")
    managed = cfg.cluster.existing is None
    if managed:
        _check_network(cfg)
        selected = [p.name for p in cfg.pools if p.node_selector]
        if selected:
            raise ConfigError(f"{NS}.pools: {', '.join(selected)} set nodeSelector, which is for cluster.existing "
                              "pools; the EKS node groups label their nodes llm-fleet/pool=<name>, remove it")


def _check_network(cfg: StackConfig) -> None:
    net = cfg.network
    pinned: list[str] = []
    for pool in cfg.pools:
        pinned += [az for az in pool.az_ids if az not in pinned]
    if net.existing_vpc_id is None and len(pinned) > net.az_count:
        raise ConfigError(f"{NS}.network.azCount: the pools pin {len(pinned)} AZs ({', '.join(pinned)}) but azCount "
                          f"is {net.az_count}; raise network.azCount to {len(pinned)} or pin fewer AZs")
    if net.existing_vpc_id is None:
        vpc = parse_cidr(f"{NS}.network.cidr", net.cidr)
        if cfg.cluster.endpoint_public:
            for i, text in enumerate(cfg.cluster.public_access_cidrs):
                entry = parse_cidr("", text)
                if any(entry.subnet_of(block) for block in RFC1918):
                    refuse_overlap(f"{NS}.cluster.publicAccessCidrs[{i}]", entry, f"{NS}.network.cidr", vpc,
                                   "the public endpoint sees public addresses only (traffic from the VPC uses the "
                                   "private endpoint); list your office or VPN egress CIDRs")


def _refuse_shared_keys(spec: GatewaySpec) -> None:
    """A key reference held by two holders widens access: two teams sharing one key share one budget and
    one audit trail, a team holding the master key is an admin, a provider holding ours can call us."""
    holders: list[tuple[SecretRef, str]] = []
    if spec.master_key is not None:
        holders.append((spec.master_key, f"{NS}.gateway.masterKey"))
    for i, team in enumerate(spec.teams):
        where = f"{NS}.gateway.teams[{i}].apiKey"
        for ref, other in holders:
            if _same_secret(ref, team.api_key):
                raise ConfigError(f"{where}: the same secret as {other}; each team needs a key of its own (a shared "
                                  "key merges budgets and audit, and the master key is an admin key)")
        holders.append((team.api_key, where))
    for model, fallback in spec.fallbacks.items():
        for ref, other in holders:
            if _same_secret(ref, fallback.api_key):
                raise ConfigError(f"{NS}.gateway.fallbacks.{model}.apiKey: the same secret as {other}; a provider's "
                                  "API key is the provider's, never one of this gateway's keys")


def _same_secret(a: SecretRef, b: SecretRef) -> bool:
    """One secret however its ARN is written: Secrets Manager takes the full ARN (the name plus the
    6-character suffix it adds) and the partial ARN (the name alone)."""
    if a == b:
        return True
    x, y = a.secrets_manager_arn, b.secrets_manager_arn
    return bool(x and y and (re.fullmatch(re.escape(x) + r"-[A-Za-z0-9]{6}", y)
                             or re.fullmatch(re.escape(y) + r"-[A-Za-z0-9]{6}", x)))


def _refuse_same_kubernetes_names(cfg: StackConfig) -> None:
    """Each model on each pool is one Deployment/Service named `<model>-<pool>`, cut to Kubernetes' 63
    characters: two that cut to the same name would overwrite each other in the cluster."""
    taken: dict[str, str] = {}
    for i, model in enumerate(cfg.models):
        for j, placement in enumerate(model.placements):
            name = deployment_name(model, placement.pool)
            where = f"{model.name!r} on pool {placement.pool!r}"
            if name in taken:
                raise ConfigError(f"{NS}.models[{i}].placements[{j}]: {where} gets the Kubernetes name {name!r} "
                                  f"(63 characters at most), the same as {taken[name]}; shorten the model or pool "
                                  "names")
            taken[name] = where
