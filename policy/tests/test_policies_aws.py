"""The AWS checks: GPU caps, spot fallback, buckets, IMDSv2, private subnets."""

from __future__ import annotations

import pytest
from policy_helpers import UNKNOWN, bucket_set, lp, node_group, one, res, subnet

# ---------------------------------------------------------------- 1. GPU max size and cap


def test_gpu_pool_with_max_size_and_gpu_count_passes():
    assert lp.check_gpu_pool_max_size(node_group("h200")) == []


def test_gpu_pool_without_max_size_fails():
    one(lp.check_gpu_pool_max_size(node_group("h200", max_size=None)), "h200-ng", "maxSize=None")


def test_gpu_pool_without_gpu_count_fails():
    one(lp.check_gpu_pool_max_size(node_group("h200", gpus="")), "llm-fleet/gpus-per-node")


def test_cpu_pool_and_unknown_sizes_are_not_judged():
    assert lp.check_gpu_pool_max_size(node_group("system", max_size=None, gpu=None)) == []
    assert lp.check_gpu_pool_max_size(node_group("h200", max_size=UNKNOWN, gpus=UNKNOWN)) == []


def test_total_gpus_at_the_cap_passes():
    pools = [
        node_group("a", max_size=4),
        node_group("b", max_size=4),
        node_group("cpu", max_size=50, gpu=None),
    ]
    assert lp.check_gpu_total(pools, 64) == []


def test_total_gpus_over_the_cap_fails():
    pools = [node_group("a", max_size=5), node_group("b", max_size=4.0)]
    msg = one(lp.check_gpu_total(pools, 64), "72 GPUs", "cap of 64", "maxTotalGpus", "a-ng (pool a): 5 x 8")
    assert "b-ng (pool b): 4 x 8" in msg


def test_cap_comes_from_policy_config_with_default():
    assert lp.max_total_gpus({}) == 64
    assert lp.max_total_gpus(None) == 64
    assert lp.max_total_gpus({"maxTotalGpus": 96.0}) == 96  # JSON numbers arrive as floats
    pools = [node_group("a", max_size=12)]
    assert lp.check_gpu_total_from_config(pools, {"maxTotalGpus": 96}) == []
    one(lp.check_gpu_total_from_config(pools, {}), "96 GPUs", "cap of 64")


# ---------------------------------------------------------------- 2. spot fallback


def test_spot_large_model_with_on_demand_base_passes():
    pools = [
        node_group("spot", capacity="SPOT", models="glm-5.1"),
        node_group("base", capacity="ON_DEMAND", models="glm-5.1,deepseek-v3"),
        node_group("small", capacity="SPOT", models=""),
    ]
    assert lp.check_spot_fallback(pools) == []


def test_capacity_block_and_default_capacity_count_as_fallback():
    block = node_group("block", capacity="CAPACITY_BLOCK", models="glm-5.1")
    default = node_group("default", models="kimi-k2")
    del default["props"]["capacityType"]
    pools = [node_group("spot", capacity="SPOT", models="glm-5.1, kimi-k2"), block, default]
    assert lp.check_spot_fallback(pools) == []


def test_spot_large_model_without_fallback_fails():
    spot = node_group("spot", capacity="SPOT", models="glm-5.1")
    other = node_group("base", capacity="ON_DEMAND", models="qwen3-235b")
    found = lp.check_spot_fallback([spot, other])
    one(found, "spot-ng (pool spot)", "glm-5.1", "ON_DEMAND or CAPACITY_BLOCK")
    assert found[0].urn == spot["urn"]


# ---------------------------------------------------------------- 3. buckets


@pytest.mark.parametrize("by", ["property_dependencies", "value", "parent"])
def test_bucket_with_all_companions_passes(by):
    assert lp.check_buckets(bucket_set(by=by)) == []


def test_bucket_missing_versioning_fails():
    resources = [r for r in bucket_set() if r["type"] != lp.BUCKET_VERSIONING]
    found = lp.check_buckets(resources)
    one(found, "Bucket models has no BucketVersioning")
    assert found[0].urn == resources[0]["urn"]


def test_companions_of_one_bucket_do_not_cover_another():
    lonely = res(lp.BUCKET, "logs", {"bucket": "logs-9z", "id": UNKNOWN})
    found = lp.check_buckets([*bucket_set(), lonely])
    assert len(found) == 3 and all("Bucket logs has no" in v.message for v in found)


def test_bucket_with_aes256_fails():
    one(lp.check_buckets(bucket_set(sse="AES256")), "AES256", "aws:kms")


def test_bucket_with_suspended_versioning_fails():
    one(lp.check_buckets(bucket_set(status="Suspended")), "Suspended", "Enabled")


def test_bucket_with_a_public_access_flag_off_fails():
    one(lp.check_buckets(bucket_set(pab="restrictPublicBuckets")), "restrictPublicBuckets", "all four")


# ---------------------------------------------------------------- 7. IMDSv2


def test_launch_template_requiring_imdsv2_passes():
    lt = res(lp.LAUNCH_TEMPLATE, "h200-lt", {"metadataOptions": {"httpTokens": "required"}})
    assert lp.check_imdsv2(lt) == []


@pytest.mark.parametrize("options", [{"httpTokens": "optional"}, {}, None])
def test_launch_template_without_imdsv2_fails(options):
    props = {} if options is None else {"metadataOptions": options}
    one(lp.check_imdsv2(res(lp.LAUNCH_TEMPLATE, "h200-lt", props)), "Launch template h200-lt", "required")


# ---------------------------------------------------------------- 8. private subnets


def wired(group, *subnets):
    group["property_dependencies"] = {"subnetIds": [s["urn"] for s in subnets]}
    group["props"]["subnetIds"] = [UNKNOWN for _ in subnets]
    return [group, *subnets]


def test_node_group_in_private_subnets_passes():
    resources = wired(node_group("h200"), subnet("private-a"), subnet("private-b"))
    assert lp.check_nodegroup_subnets(resources) == []
    assert lp.check_nodegroup_subnets_unverified(resources) == []


def test_node_group_in_public_subnet_fails():
    found = lp.check_nodegroup_subnets(
        wired(node_group("h200"), subnet("private-a"), subnet("public-a", public=True))
    )
    one(found, "h200-ng (pool h200)", "public-a")
    one(lp.check_nodegroup_subnets(wired(node_group("h200"), subnet("elb-a", elb=True))), "elb-a")


def test_subnets_matched_by_id_after_create():
    ng = node_group("h200", subnet_ids=["subnet-1", "subnet-2"])
    resources = [ng, subnet("private-a", sid="subnet-1"), subnet("public-a", sid="subnet-2", public=True)]
    one(lp.check_nodegroup_subnets(resources), "public-a")
    assert lp.check_nodegroup_subnets_unverified(resources) == []


def test_unresolvable_subnets_are_advisory():
    external = node_group("h200", subnet_ids=["subnet-0abc"])
    unknown = node_group("b200", subnet_ids=UNKNOWN)
    resources = [external, unknown]
    assert lp.check_nodegroup_subnets(resources) == []
    found = lp.check_nodegroup_subnets_unverified(resources)
    assert len(found) == 2
    assert "subnet-0abc (not a subnet of this stack)" in found[0].message
    assert "unknown during preview" in found[1].message and "Fix:" in found[1].message


