"""Shared by the policy-pack tests: the pack on sys.path, and small builders of the resources it judges."""

from __future__ import annotations

import sys
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(POLICY_DIR))  # the pack is a directory of modules, not a package

import llmfleet_policies as lp  # noqa: E402
from llmfleet_policies import UNKNOWN  # noqa: E402

GPU_POOL_TYPE = lp.NODE_GROUP


def res(rtype: str, name: str, props: dict, **extra) -> dict:
    return {
        "type": rtype,
        "urn": f"urn:pulumi:dev::llm-fleet::{rtype}::{name}",
        "name": name,
        "props": props,
    } | extra


def node_group(name, *, max_size=2, gpus="8", capacity="ON_DEMAND", models="", gpu="H200", **extra):
    props = {
        "scalingConfig": {"minSize": 0, "desiredSize": 0, "maxSize": max_size},
        "instanceTypes": ["p5en.48xlarge"],
        "capacityType": capacity,
        "labels": {"llm-fleet/pool": name, **({"llm-fleet/gpu": gpu} if gpu else {})},
        "tags": {"llm-fleet/gpus-per-node": gpus, "llm-fleet/large-models": models},
        "subnetIds": extra.pop("subnet_ids", ["subnet-a"]),
    }
    if max_size is None:
        del props["scalingConfig"]["maxSize"]
    return res(GPU_POOL_TYPE, f"{name}-ng", props, **extra)


def one(messages, *needles):
    """Exactly one violation, which names every needle and says how to fix it."""
    messages = [m.message if isinstance(m, lp.Violation) else m for m in messages]
    assert len(messages) == 1, messages
    for needle in (*needles, "Fix:"):
        assert needle in messages[0], (needle, messages[0])
    return messages[0]


def bucket_set(name="models", *, sse="aws:kms", status="Enabled", pab=True, by="property_dependencies"):
    bucket = res(lp.BUCKET, name, {"bucket": f"{name}-1a2b3c", "id": f"{name}-1a2b3c"})
    link: dict = {}
    value = UNKNOWN
    if by == "property_dependencies":
        link = {"property_dependencies": {"bucket": [bucket["urn"]]}}
    elif by == "value":
        value = f"{name}-1a2b3c"
    elif by == "parent":
        link = {"parent": bucket["urn"]}
    sse_rules = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse, "kmsMasterKeyId": "arn:key"}}]
    flags = dict.fromkeys(lp._PAB_FLAGS, True)
    if pab is not True:
        flags[pab] = False
    return [
        bucket,
        res(lp.BUCKET_SSE, f"{name}-sse", {"bucket": value, "rules": sse_rules}, **link),
        res(
            lp.BUCKET_VERSIONING,
            f"{name}-ver",
            {"bucket": value, "versioningConfiguration": {"status": status}},
            **link,
        ),
        res(lp.BUCKET_PAB, f"{name}-pab", {"bucket": value, **flags}, **link),
    ]


def subnet(name, *, public=False, sid=UNKNOWN, elb=False):
    tags = {"kubernetes.io/role/elb": "1"} if elb else {"kubernetes.io/role/internal-elb": "1"}
    return res(lp.SUBNET, name, {"id": sid, "mapPublicIpOnLaunch": public, "tags": tags})
