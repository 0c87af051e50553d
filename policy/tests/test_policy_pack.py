"""The pack itself: engine wrappers, the PolicyPack entry point, and the pack over gRPC."""

from __future__ import annotations

import runpy
import subprocess
import sys
import threading

import grpc
import pulumi_policy
import pytest
from google.protobuf import empty_pb2, struct_pb2
from policy_helpers import POLICY_DIR, UNKNOWN, bucket_set, lp, node_group, one, subnet
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

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
