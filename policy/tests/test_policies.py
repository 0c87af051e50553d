"""Tests for the llm-fleet policy pack: pure checks, their engine wrappers, and the pack over gRPC."""

from __future__ import annotations

import runpy
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pulumi_policy
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

POLICY_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(POLICY_DIR))

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


# ---------------------------------------------------------------- 4. exposed endpoints

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-123456789abc"


def service(name, *, lb=True, cert=CERT, ports="443", auth="api-key", scheme=None):
    annotations = {}
    if cert is not None:
        annotations[lp.ANN_SSL_CERT] = cert
    if ports is not None:
        annotations[lp.ANN_SSL_PORTS] = ports
    if scheme:
        annotations[lp.ANN_SCHEME] = scheme
    labels = {"app": name} | ({lp.LABEL_AUTH: auth} if auth else {})
    spec = {"type": "LoadBalancer" if lb else "ClusterIP", "ports": [{"port": 443}]}
    return res(lp.SERVICE, name, {"metadata": {"annotations": annotations, "labels": labels}, "spec": spec})


def test_gateway_load_balancer_with_tls_and_auth_passes():
    assert lp.check_exposed_endpoint(service("gateway")) == []
    assert lp.check_exposed_endpoint(service("gateway", cert=UNKNOWN)) == []  # ARN from ACM, in preview
    assert lp.check_exposed_endpoint(service("engine", lb=False, cert=None, ports=None, auth=None)) == []


def test_load_balancer_without_tls_fails():
    found = lp.check_exposed_endpoint(service("engine", cert=None, ports=None))
    assert len(found) == 2
    assert lp.ANN_SSL_CERT in found[0] and lp.ANN_SSL_PORTS in found[1]
    assert all("Fix:" in m for m in found)


def test_load_balancer_without_auth_label_fails():
    one(lp.check_exposed_endpoint(service("engine", auth=None)), "llm-fleet/auth: api-key", "engine")


def test_load_balancer_with_a_non_acm_cert_fails():
    one(lp.check_exposed_endpoint(service("gateway", cert="arn:aws:iam::1:server-certificate/x")), "ACM")


def test_internal_load_balancer_without_tls_is_only_advisory():
    internal = service("metrics", cert=None, ports=None, auth=None, scheme="internal")
    assert lp.check_exposed_endpoint(internal) == []
    advisories = lp.check_internal_lb(internal)
    assert len(advisories) == 3
    assert all("Internal LoadBalancer Service metrics" in m and "Fix:" in m for m in advisories)
    assert lp.check_internal_lb(service("metrics", scheme="internal")) == []
    legacy = service("metrics", cert=None, ports=None)
    legacy["props"]["metadata"]["annotations"][lp.ANN_INTERNAL_LEGACY] = "true"
    assert lp.check_exposed_endpoint(legacy) == [] and len(lp.check_internal_lb(legacy)) == 2
    assert lp.check_internal_lb(service("gateway")) == []


def ingress(name, *, tls=True, auth="api-key"):
    spec = {"rules": [{"host": "llm.example.com"}]} | (
        {"tls": [{"hosts": ["llm.example.com"]}]} if tls else {}
    )
    labels = {lp.LABEL_AUTH: auth} if auth else {}
    return res(lp.INGRESS, name, {"metadata": {"labels": labels}, "spec": spec})


def test_ingress_with_tls_and_auth_passes():
    assert lp.check_exposed_endpoint(ingress("gateway")) == []


def test_ingress_without_tls_fails():
    one(lp.check_exposed_endpoint(ingress("gateway", tls=False)), "Ingress gateway has no spec.tls")


def test_ingress_without_auth_label_fails():
    one(
        lp.check_exposed_endpoint(ingress("grafana", auth=None)), "Ingress grafana lacks label llm-fleet/auth"
    )


# ---------------------------------------------------------------- 5. pinned images and charts

VLLM = "vllm/vllm-openai:v0.19.0"
DIGEST = "public.ecr.aws/x/y@sha256:" + "ab" * 32


def container(name="engine", image=VLLM, gpu=0, probes=True, gpu_key="nvidia.com/gpu"):
    c = {"name": name, "image": image}
    if gpu:
        c["resources"] = {"limits": {gpu_key: gpu}}
    if probes:
        c |= {p: {"httpGet": {"path": "/health", "port": 8000}} for p in lp._PROBES}
    return c


def pod(*containers, init=(), labels=None):
    return {
        "metadata": {"labels": labels or {}},
        "spec": {"containers": list(containers), "initContainers": list(init)},
    }


def deployment(*containers, init=(), labels=None, kind="kubernetes:apps/v1:Deployment"):
    return res(kind, "gateway", {"spec": {"template": pod(*containers, init=init, labels=labels)}})


def lws(leader, worker):
    return res(
        lp.LWS,
        "glm",
        {"spec": {"leaderWorkerTemplate": {"leaderTemplate": leader, "workerTemplate": worker}}},
    )


def test_pinned_tags_and_digests_pass():
    d = deployment(
        container(image=VLLM),
        container("side", image=DIGEST),
        init=[container("dl", "amazon/aws-cli:2.27.1")],
    )
    assert lp.check_images_pinned(d) == []
    assert lp.check_images_pinned(deployment(container(image=UNKNOWN))) == []
    assert lp.check_images_pinned(lws(pod(container()), pod(container(image=DIGEST)))) == []


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("nginx", "has no tag"),
        ("registry.local:5000/team/engine", "has no tag"),
        ("vllm/vllm-openai:latest", ":latest"),
        ("public.ecr.aws/x/y@sha256:abc", "malformed digest"),
    ],
)
def test_unpinned_images_fail(image, problem):
    one(lp.check_images_pinned(deployment(container(image=image))), problem, "'engine'", image)


def test_unpinned_init_container_fails():
    d = deployment(container(), init=[container("fetch", "amazon/aws-cli")])
    one(lp.check_images_pinned(d), "initContainer 'fetch'")


def test_every_workload_kind_is_read():
    bad = container(image="busybox:latest")
    cron = res(lp.CRONJOB, "sweep", {"spec": {"jobTemplate": {"spec": {"template": pod(bad)}}}})
    one(lp.check_images_pinned(cron), "spec.jobTemplate.spec.template")
    one(lp.check_images_pinned(lws(pod(container()), pod(bad))), "workerTemplate")
    for kind in sorted(lp.TEMPLATED_WORKLOADS):
        one(lp.check_images_pinned(deployment(bad, kind=kind)), "busybox:latest")


def test_helm_release_with_exact_version_passes():
    assert (
        lp.check_helm_chart_pinned(res(lp.HELM_RELEASE, "keda", {"chart": "keda", "version": "2.17.0"})) == []
    )


@pytest.mark.parametrize("version", [None, "", "^2.17", "latest", "2.x"])
def test_helm_release_without_exact_version_fails(version):
    props = {"chart": "keda"} | ({} if version is None else {"version": version})
    one(lp.check_helm_chart_pinned(res(lp.HELM_RELEASE, "keda", props)), "Helm release keda")


# ---------------------------------------------------------------- 6. engine probes and GPU limits


def test_gpu_containers_with_probes_pass():
    engine = {"llm-fleet/role": "engine"}
    leader = pod(container(gpu=8), labels=engine)
    worker = pod(container(gpu="8", gpu_key="huawei.com/Ascend910"), labels=engine)
    assert lp.check_engine_pods(lws(leader, worker)) == []
    assert lp.check_engine_pods(deployment(container("gateway", probes=False))) == []


def test_gpu_container_without_probes_fails():
    gpu_pod = pod(container(gpu=8), container("worker", gpu=8, probes=False))
    one(lp.check_engine_pods(lws(gpu_pod, pod())), "GPU container 'worker'", "startupProbe, readinessProbe")


def test_engine_pod_without_gpu_limit_fails():
    d = deployment(container(probes=False), labels={"llm-fleet/role": "engine"})
    one(lp.check_engine_pods(d), "llm-fleet/role: engine", "nvidia.com/gpu")


# ---------------------------------------------------------------- 7. IMDSv2


def test_launch_template_requiring_imdsv2_passes():
    lt = res(lp.LAUNCH_TEMPLATE, "h200-lt", {"metadataOptions": {"httpTokens": "required"}})
    assert lp.check_imdsv2(lt) == []


@pytest.mark.parametrize("options", [{"httpTokens": "optional"}, {}, None])
def test_launch_template_without_imdsv2_fails(options):
    props = {} if options is None else {"metadataOptions": options}
    one(lp.check_imdsv2(res(lp.LAUNCH_TEMPLATE, "h200-lt", props)), "Launch template h200-lt", "required")


# ---------------------------------------------------------------- 8. private subnets


def subnet(name, *, public=False, sid=UNKNOWN, elb=False):
    tags = {"kubernetes.io/role/elb": "1"} if elb else {"kubernetes.io/role/internal-elb": "1"}
    return res(lp.SUBNET, name, {"id": sid, "mapPublicIpOnLaunch": public, "tags": tags})


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


# ---------------------------------------------------------------- engine wrappers


def test_to_plain_turns_unknowns_into_the_marker():
    proxied = unknown_checking_proxy(
        {"a": {"b": UNKNOWN_STRING_VALUE, "c": [1, UNKNOWN_STRING_VALUE]}, "d": "x"}
    )
    assert lp.to_plain(proxied) == {"a": {"b": UNKNOWN, "c": [1, UNKNOWN]}, "d": "x"}


def _options(parent=None):
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def _policy(name):
    return next(p for p in lp.POLICIES if p.name == name)


def test_resource_policy_reports_through_the_engine_callback():
    reported = []
    args = ResourceValidationArgs(
        lp.LAUNCH_TEMPLATE,
        unknown_checking_proxy({"metadataOptions": {"httpTokens": "optional"}}),
        "urn:lt",
        "h200-lt",
        _options(),
        None,
    )
    _policy("llmfleet-imdsv2-required").validate(args, lambda msg, urn=None: reported.append(msg))
    one(reported, "httpTokens='optional'")


def test_stack_policy_matches_companions_through_property_dependencies():
    def policy_resource(r, deps=()):
        pr = PolicyResource(
            r["type"], unknown_checking_proxy(r["props"]), r["urn"], r["name"], _options(), None, None, [], {}
        )
        pr.property_dependencies = {"bucket": list(deps)}
        return pr

    plain = bucket_set()
    for r in plain[1:]:
        r["props"]["bucket"] = UNKNOWN_STRING_VALUE  # the bucket's id, unknown in preview
    bucket = policy_resource(plain[0])
    companions = [policy_resource(r, [bucket]) for r in plain[1:] if r["type"] != lp.BUCKET_PAB]
    reported = []
    _policy("llmfleet-s3-encrypted-versioned-private").validate(
        StackValidationArgs([bucket, *companions]), lambda msg, urn=None: reported.append((msg, urn))
    )
    assert reported == [(reported[0][0], plain[0]["urn"])]
    assert "has no BucketPublicAccessBlock" in reported[0][0]


def test_stack_policy_reads_the_gpu_cap_from_config():
    def run(config):
        resources = [
            PolicyResource(
                r["type"],
                unknown_checking_proxy(r["props"]),
                r["urn"],
                r["name"],
                _options(),
                None,
                None,
                [],
                {},
            )
            for r in [node_group("a", max_size=6), node_group("b", max_size=6)]
        ]
        reported = []
        _policy("llmfleet-gpu-total-cap").validate(
            StackValidationArgs(resources, config), lambda m, u=None: reported.append(m)
        )
        return reported

    one(run(None), "96 GPUs", "cap of 64")
    assert run({"maxTotalGpus": 128}) == []


# ---------------------------------------------------------------- the pack itself

EXPECTED_IDS = {
    "llmfleet-gpu-pool-max-size",
    "llmfleet-gpu-total-cap",
    "llmfleet-spot-on-demand-fallback",
    "llmfleet-s3-encrypted-versioned-private",
    "llmfleet-exposed-endpoint-tls-auth",
    "llmfleet-internal-lb-tls",
    "llmfleet-images-pinned",
    "llmfleet-helm-chart-pinned",
    "llmfleet-engine-probes-gpu",
    "llmfleet-imdsv2-required",
    "llmfleet-nodegroup-private-subnets",
    "llmfleet-nodegroup-subnets-unverified",
}
ADVISORY_IDS = {"llmfleet-internal-lb-tls", "llmfleet-nodegroup-subnets-unverified"}


def test_policies_have_unique_ids_levels_and_severities():
    assert len(lp.POLICY_IDS) == len(set(lp.POLICY_IDS))
    assert set(lp.POLICY_IDS) == EXPECTED_IDS
    for p in lp.POLICIES:
        expected = "advisory" if p.name in ADVISORY_IDS else "mandatory"
        assert p.enforcement_level.value == expected, p.name
        assert p.severity is not None and p.description, p.name


def test_readme_lists_every_policy():
    readme = (POLICY_DIR / "README.md").read_text()
    for pid in lp.POLICY_IDS:
        assert f"`{pid}`" in readme, pid


class _RecordingPack:
    built: list[dict] = []

    def __init__(self, **kwargs):
        _RecordingPack.built.append(kwargs)


def test_main_builds_the_pack_only_when_run(monkeypatch):
    # The real PolicyPack starts a gRPC server and blocks forever: record the call instead.
    monkeypatch.setattr(pulumi_policy, "PolicyPack", _RecordingPack)
    _RecordingPack.built = []
    runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="not_main")
    assert _RecordingPack.built == []
    runpy.run_path(str(POLICY_DIR), run_name="__main__")  # as `python -m pulumi.policy` runs it
    (kwargs,) = _RecordingPack.built
    assert kwargs["name"] == "llm-fleet"
    assert {p.name for p in kwargs["policies"]} == EXPECTED_IDS
    assert kwargs["enforcement_level"] is pulumi_policy.EnforcementLevel.MANDATORY


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


@pytest.fixture
def analyzer(tmp_path):
    """The real pack, started the way the Pulumi CLI starts it, on a loopback port."""
    stderr = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(POLICY_DIR)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    try:
        if not first_line or not first_line[0].strip().isdigit():
            proc.kill()
            pytest.fail(
                f"policy pack did not start: {first_line} {(tmp_path / 'stderr.txt').read_text()[-2000:]}"
            )
        channel = grpc.insecure_channel(f"127.0.0.1:{first_line[0].strip()}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        stderr.close()


def test_pack_answers_the_engine_over_grpc(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "llm-fleet"
    assert {p.name for p in info.policies} == EXPECTED_IDS
    cap = next(p for p in info.policies if p.name == "llmfleet-gpu-total-cap")
    assert cap.configSchema.properties["maxTotalGpus"]["default"] == 64

    lt = analyzer_pb2.AnalyzeRequest(
        type=lp.LAUNCH_TEMPLATE, urn="urn:lt", name="h200-lt", properties=_struct({"metadataOptions": {}})
    )
    found = analyzer.Analyze(lt, timeout=30).diagnostics
    assert [d.policyName for d in found] == ["llmfleet-imdsv2-required"]
    assert found[0].enforcementLevel == analyzer_pb2.MANDATORY and "Fix:" in found[0].message

    ng = node_group("h200", max_size=10)
    s1, s2 = subnet("private-a"), subnet("public-a", public=True)
    ng["props"]["subnetIds"] = [UNKNOWN_STRING_VALUE, UNKNOWN_STRING_VALUE]

    def resource(r, **deps):
        props = {k: (UNKNOWN_STRING_VALUE if v is UNKNOWN else v) for k, v in r["props"].items()}
        out = analyzer_pb2.AnalyzerResource(
            type=r["type"], urn=r["urn"], name=r["name"], properties=_struct(props)
        )
        for key, urns in deps.items():
            out.propertyDependencies[key].urns.extend(urns)
        return out

    stack = analyzer_pb2.AnalyzeStackRequest(
        resources=[resource(s1), resource(s2), resource(ng, subnetIds=[s1["urn"], s2["urn"]])]
    )
    by_policy = {d.policyName: d for d in analyzer.AnalyzeStack(stack, timeout=30).diagnostics}
    assert set(by_policy) == {"llmfleet-gpu-total-cap", "llmfleet-nodegroup-private-subnets"}
    assert "80 GPUs" in by_policy["llmfleet-gpu-total-cap"].message
    assert by_policy["llmfleet-nodegroup-private-subnets"].urn == ng["urn"]

    config = analyzer_pb2.ConfigureAnalyzerRequest()
    config.policyConfig["llmfleet-gpu-total-cap"].enforcementLevel = analyzer_pb2.MANDATORY
    config.policyConfig["llmfleet-gpu-total-cap"].properties.update({"maxTotalGpus": 80})
    analyzer.Configure(config, timeout=30)
    names = {d.policyName for d in analyzer.AnalyzeStack(stack, timeout=30).diagnostics}
    assert names == {"llmfleet-nodegroup-private-subnets"}
