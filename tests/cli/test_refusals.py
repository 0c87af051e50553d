"""One named test per class of bad stack file (issue 15): `fleet plan` refuses it with exit 2 and one
line naming the key path, the value (never a credential) and what would work; where the check used to
live only in the resource code, `fleet render` refuses it with the same line."""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml

from infra.stack.versions import ADDON_VERSIONS, CA_IMAGE_TAGS
from tests.cli.test_bad_stacks_property import refusal, run
from tests.conftest import STACKS

TOKEN = "hf_" + "q7" * 15


def stack_file(tmp_path, mutate, name="prod"):
    doc = yaml.safe_load((STACKS / f"Pulumi.{name}.yaml").read_text())
    mutate(doc["config"])
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def plan_refuses(path) -> str:
    return refusal(*run(["plan", "--stack-file", str(path)]), "plan")


def both_refuse(path) -> str:
    message = plan_refuses(path)
    assert refusal(*run(["render", "--stack-file", str(path), "--json"]), "render") == message
    return message


def pool(i, **changes):
    return lambda c: c["llm-fleet:pools"][i].update(changes)


# ------------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["llm-fleet:models"][0]["throughput"].update(outputTokensPerSecond=math.inf),
     "llm-fleet.models[0].throughput.outputTokensPerSecond: inf is not a finite number"),
    (lambda c: c["llm-fleet:monitoring"].update(ttftP99Seconds=math.nan),
     "llm-fleet.monitoring.ttftP99Seconds: nan is not a finite number"),
    (lambda c: c["llm-fleet:models"][0].update(gpuMemoryUtilization=-math.inf), "-inf is not a finite number"),
    (lambda c: c["llm-fleet:models"][0].update(revision=math.nan), "revision: expected a string, got nan"),
    (pool(0, maxSize=2**31), "llm-fleet.pools[0].maxSize: 2147483648 is above the maximum 2147483647 (a 32-bit"),
    (lambda c: c["llm-fleet:cluster"]["systemNodes"].update(maxSize=10**20), "systemNodes.maxSize: 1000000"),
    (lambda c: c["llm-fleet:gateway"].update(replicas=10**6), "gateway.replicas: 1000000 is above the maximum 100"),
    (pool(1, minSize=-1), "llm-fleet.pools[1].minSize: -1 is below the minimum 0"),
    (lambda c: c["llm-fleet:models"][0]["throughput"].update(outputTokensPerSecond=1e308), "above the maximum"),
])
def test_non_finite_and_out_of_range_numbers(tmp_path, mutate, expected):
    assert expected in plan_refuses(stack_file(tmp_path, mutate))


def test_json_plan_is_strict_json(capsys):
    """What plan accepts prints as JSON any parser takes (no NaN or Infinity tokens)."""
    code, out, _ = run(["plan", "--stack", "prod", "--json"])
    assert code == 0
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in plan --json"))


# ------------------------------------------------------------------------------- what the cloud refuses later

@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["llm-fleet:network"].update(cidr="10.0.0.0/33"), "network.cidr: '10.0.0.0/33' has the prefix /33"),
    (lambda c: c["llm-fleet:network"].update(cidr="10.0.0.1/16"), "host bits set (the network is 10.0.0.0/16)"),
    (lambda c: c["llm-fleet:network"].update(cidr="10.300.0.0/16"), "octet 300, above 255"),
    (lambda c: c["llm-fleet:gateway"].update(allowedCidrs=["10.0.0.0/8", "10.0.0.0/8"]),
     "gateway.allowedCidrs[1]: '10.0.0.0/8' is listed twice"),
    (lambda c: c["llm-fleet:cluster"].update(endpointPublic=True, publicAccessCidrs=["10.0.4.0/24"]),
     "cluster.publicAccessCidrs[0]: 10.0.4.0/24 overlaps llm-fleet.network.cidr 10.0.0.0/16"),
    (lambda c: c["llm-fleet:storage"].update(bucketName="my..bucket"), "storage.bucketName: 'my..bucket' has two adj"),
    (lambda c: c["llm-fleet:storage"].update(bucketName="weights-s3alias"), "reserved suffix '-s3alias'"),
    (lambda c: c["llm-fleet:jobs"].update(reconcileCron="*/5 25 * * *"),
     "jobs.reconcileCron: '*/5 25 * * *' hour field '25': 25 is outside 0-23"),
    (lambda c: c["llm-fleet:jobs"].update(sweepCron="0 0 * * 7"), "day of week field '7'"),
    (lambda c: c.update({"llm-fleet:engines": {"vllm": {"image": "vllm/vllm-openai:v0.19.0", "version": "v0.19.0"}}}),
     "engines.vllm.image: 'vllm/vllm-openai:v0.19.0' carries its own tag 'v0.19.0'; give the repository alone"),
    (lambda c: c.update({"llm-fleet:engines": {"vllm": {"image": "vllm/vllm-openai:latest"}}}),
     "carries its own tag 'latest'"),
    (lambda c: c.update({"llm-fleet:engines": {"sglang": {"version": "latest"}}}), "never latest"),
    (lambda c: c["llm-fleet:jobs"].update(inCluster=True, image="acme/jobs"), "has no tag, which means latest"),
    (lambda c: c["llm-fleet:jobs"].update(inCluster=True, image="acme/jobs:latest"), "is not pinned"),
])
def test_values_the_cloud_or_kubernetes_would_refuse_later(tmp_path, mutate, expected):
    assert expected in plan_refuses(stack_file(tmp_path, mutate))


def test_the_same_subnet_twice(tmp_path):
    def existing_vpc(c, private, public=()):
        c["llm-fleet:network"] = {"existingVpcId": "vpc-0123456789abcdef0", "existingPrivateSubnetIds": private,
                                  "existingPublicSubnetIds": list(public)}
    a, b = "subnet-0123456789abcdef0", "subnet-0123456789abcdef1"
    message = plan_refuses(stack_file(tmp_path, lambda c: existing_vpc(c, [a, b, a])))
    assert message.startswith("llm-fleet.network.existingPrivateSubnetIds[2]: 'subnet-0123456789abcdef0' is "
                              "listed twice")
    message = plan_refuses(stack_file(tmp_path, lambda c: existing_vpc(c, [a, b], [b])))
    assert "existingPublicSubnetIds[0]: subnet-0123456789abcdef1 is also listed as a private subnet" in message


def test_default_bucket_name_from_a_stack_name_s3_refuses(tmp_path):
    path = stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(name="dev-team"), "dev")
    path = path.rename(tmp_path / "Pulumi.Dev_Team.yaml")
    message = plan_refuses(path)
    assert "storage.bucketName: the default name from stack 'Dev_Team'" in message
    assert "set storage.bucketName" in message


# ------------------------------------------------------------------------------- Kubernetes versions

def test_unpinned_kubernetes_version_is_refused_in_plan_with_a_stack_setting_as_the_way_out(tmp_path):
    path = stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(kubernetesVersion="1.35"), "dev")
    message = both_refuse(path)
    assert "cluster.kubernetesVersion: '1.35' has no pinned add-on versions; pinned: 1.33, 1.34" in message
    assert "llm-fleet.cluster.addonVersions" in message and "source" not in message and "infra." not in message


def test_a_stack_pins_an_unknown_version_itself(tmp_path):
    addons = {"vpc-cni": "v1.21.0-eksbuild.1", "kube-proxy": "v1.35.0-eksbuild.2", "coredns": "v1.13.2-eksbuild.12",
              "eks-pod-identity-agent": "v1.3.10-eksbuild.2", "aws-ebs-csi-driver": "v1.57.1-eksbuild.1"}
    cluster = {"kubernetesVersion": "1.35", "addonVersions": addons}
    path = stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(cluster), "dev")
    assert "has no pinned cluster-autoscaler image" in plan_refuses(path)
    assert "autoscalerImageTag" in plan_refuses(path)
    path = stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(cluster, autoscalerImageTag="v1.34.5"), "dev")
    assert "'v1.34.5' is not a 1.35 release" in plan_refuses(path)
    path = stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(cluster, autoscalerImageTag="v1.35.0"), "dev")
    assert run(["plan", "--stack-file", str(path)])[0] == 0
    # what only EKS knows (does it offer these add-ons for 1.35?) is checked at preview; render's mock EKS
    # knows 1.33 and 1.34 only, and says so in one line, as `pulumi preview` would
    message = refusal(*run(["render", "--stack-file", str(path), "--json"]), "render")
    assert re.fullmatch(r"the cloud would refuse this stack at `pulumi preview`: reading EKS Add-On version info "
                        r"\([a-z-]+, 1\.35\): empty result", message)
    # that render stopped half-way (resources were registered): the next one in this process is whole
    code, out, err = run(["render", "--stack", "dev", "--json"])
    assert code == 0 and err == "" and json.loads(out)


def test_stack_pins_reach_the_add_ons(tmp_path):
    """A stack's own pins (here an older coredns build for 1.34) are what the cluster installs."""
    path = stack_file(tmp_path, lambda c: c["llm-fleet:cluster"].update(
        kubernetesVersion="1.34", addonVersions={"coredns": "v1.13.1-eksbuild.3"}), "dev")
    code, out, err = run(["render", "--stack-file", str(path), "--json"])
    assert code == 0 and err == ""
    records = json.loads(out)
    versions = {r["inputs"]["addonName"]: r["inputs"]["addonVersion"] for r in records
                if r["type"] == "aws:eks/addon:Addon"}
    assert versions == {**ADDON_VERSIONS["1.34"], "coredns": "v1.13.1-eksbuild.3"}
    (ca,) = [r for r in records if r["type"] == "kubernetes:helm.sh/v3:Release"
             and r["inputs"]["chart"] == "cluster-autoscaler"]
    assert f'"tag": "{CA_IMAGE_TAGS["1.34"]}"' in json.dumps(ca["inputs"])


# ------------------------------------------------------------------------------- render-only checks now in plan

@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["llm-fleet:network"].update(cidr="10.0.0.0/22"), "network.cidr: '10.0.0.0/22' has the prefix /22"),
    (pool(0, azIds=["use1-az9"]), "pools[0].azIds[0]: 'use1-az9' is not valid"),
    (pool(0, azIds=["use1-az1", "use1-az2", "use1-az3", "use1-az4"]),
     "network.azCount: the pools pin 4 AZs (use1-az1, use1-az2, use1-az3, use1-az4) but azCount is 3"),
    (lambda c: (c["llm-fleet:pools"][3].update(name="system"), c["llm-fleet:models"][1].update(pool="system")),
     "llm-fleet.pools[3].name: 'system' is taken by the system node group"),
    (pool(3, capacity="capacity-block", capacityReservationId="cr-0123456789abcdef0"),
     "pools[3].azIds: a Capacity Block lives in one AZ"),
    (pool(3, nodeSelector={"gpu": "l40s"}), "l40s-small set nodeSelector, which is for cluster.existing pools"),
    (pool(0, amiType="BOTTLEROCKET_x86_64_NVIDIA"),
     "pools.h200-base: BOTTLEROCKET_x86_64_NVIDIA keeps instance storage at /mnt/.ephemeral"),
    (pool(3, diskGB=50), "pools.l40s-small: g6e.xlarge has no instance store we assemble at /mnt/k8s-disks/0"),
])
def test_render_only_checks_are_refused_by_plan_with_the_same_line(tmp_path, mutate, expected):
    assert expected in both_refuse(stack_file(tmp_path, mutate))


# ------------------------------------------------------------------------------- credentials

def test_two_teams_sharing_one_key_are_refused(tmp_path):
    def share(c):
        teams = c["llm-fleet:gateway"]["teams"]
        teams[1]["apiKey"] = dict(teams[0]["apiKey"])
    message = plan_refuses(stack_file(tmp_path, share))
    assert message.startswith("llm-fleet.gateway.teams[1].apiKey: the same secret as llm-fleet.gateway.teams[0].apiKey")


def test_a_team_key_that_is_the_master_key_is_refused(tmp_path):
    def master(c):
        gw = c["llm-fleet:gateway"]
        gw["teams"][0]["apiKey"] = {"secretsManager": gw["masterKey"]["secretsManager"] + "-AbC123"}
    message = plan_refuses(stack_file(tmp_path, master))
    assert message.startswith("llm-fleet.gateway.teams[0].apiKey: the same secret as llm-fleet.gateway.masterKey")


def test_a_fallback_provider_given_our_master_key_is_refused(tmp_path):
    def leak(c):
        gw = c["llm-fleet:gateway"]
        gw["fallbacks"]["glm-5-1"]["apiKey"] = dict(gw["masterKey"])
    assert "fallbacks.glm-5-1.apiKey: the same secret as llm-fleet.gateway.masterKey" in plan_refuses(
        stack_file(tmp_path, leak))


@pytest.mark.parametrize("mutate, where", [
    (lambda c: c["llm-fleet:storage"].update(hfToken=TOKEN), "llm-fleet.storage.hfToken: a clear-text credential"),
    (lambda c: c["llm-fleet:gateway"].update(masterKey=TOKEN), "llm-fleet.gateway.masterKey: a clear-text"),
    (lambda c: c["llm-fleet:gateway"]["teams"][0].update(apiKey={"secretsManager": TOKEN}),
     "teams[0].apiKey.secretsManager: <value hidden"),
    (lambda c: c["llm-fleet:storage"].update(hfToken={"pulumiSecret": TOKEN}), "hfToken.pulumiSecret: "),
    (lambda c: c["llm-fleet:models"][0].update(revision=TOKEN, precision=TOKEN), "models[0].precision: <value hidden"),
    (lambda c: c["llm-fleet:storage"].update(hfToken=12345678), "llm-fleet.storage.hfToken: a clear-text credential"),
    (lambda c: c["llm-fleet:storage"].update(hfToken=[TOKEN]), "hfToken: expected a mapping, got <value hidden"),
])
def test_a_clear_text_credential_is_never_echoed(tmp_path, mutate, where):
    message = plan_refuses(stack_file(tmp_path, mutate))
    assert where in message and TOKEN not in message and "12345678" not in message


# ------------------------------------------------------------------------------- messages that misled

def test_a_lookalike_key_is_named_with_its_code_points(tmp_path):
    path = stack_file(tmp_path, lambda c: c["llm-fleet:pools"][0].__setitem__("mахSize", c["llm-fleet:pools"][0]
                                                                              .pop("maxSize")))
    assert plan_refuses(path) == ("llm-fleet.pools[0]: unknown key 'mахSize' (contains U+0430 CYRILLIC SMALL LETTER A, "
                                  "U+0445 CYRILLIC SMALL LETTER HA; did you mean 'maxSize'?)")
    path = stack_file(tmp_path, lambda c: c.__setitem__("llm-flееt:jobs", c.pop("llm-fleet:jobs")))
    assert "config: key 'llm-flееt:jobs' (contains U+0435 CYRILLIC SMALL LETTER IE; did you mean 'llm-fleet:jobs'?)" \
        == plan_refuses(path)


def test_a_misspelt_namespace_is_not_ignored(tmp_path):
    path = stack_file(tmp_path, lambda c: c.__setitem__("llm_fleet:jobs", c.pop("llm-fleet:jobs")))
    assert plan_refuses(path) == "config: 'llm_fleet:jobs' is in namespace 'llm_fleet'; did you mean llm-fleet:jobs?"
    path = stack_file(tmp_path, lambda c: c.__setitem__("jobs", c.pop("llm-fleet:jobs")))
    assert "config: 'jobs' is not a config key; Pulumi writes them namespace:key" in plan_refuses(path)


def test_a_model_named_like_a_fallback_route_is_refused_in_plan(tmp_path):
    from infra.serving.gateway import FALLBACK_SUFFIX
    from infra.stack.crosscheck import FALLBACK_SUFFIX as CHECKED

    assert CHECKED == FALLBACK_SUFFIX

    def clash(c):
        c["llm-fleet:models"][1]["name"] = "glm-5-1" + FALLBACK_SUFFIX
        del c["llm-fleet:gateway"]["teams"][1]["models"]
    message = both_refuse(stack_file(tmp_path, clash))
    assert message.startswith("llm-fleet.gateway.fallbacks.glm-5-1: the gateway serves this fallback as "
                              "'glm-5-1-fallback'")


def test_a_typo_of_a_required_key_is_named(tmp_path):
    path = stack_file(tmp_path, lambda c: c["llm-fleet:pools"][0].__setitem__("maxSiz", c["llm-fleet:pools"][0]
                                                                              .pop("maxSize")))
    assert plan_refuses(path) == "llm-fleet.pools[0].maxSize: required key is missing (is 'maxSiz' a typo of it?)"


def test_a_lookalike_value_is_spelled_out(tmp_path):
    message = plan_refuses(stack_file(tmp_path, pool(1, capacity="spоt")))
    assert message.startswith("llm-fleet.pools[1].capacity: 'spоt' (contains U+043E CYRILLIC SMALL LETTER O) is not "
                              "allowed; use one of: on-demand, spot, capacity-block")


def test_a_user_error_is_one_line_whatever_its_message(capsys):
    import argparse

    from infra.stack.reader import ConfigError
    from scripts.common import run_command

    def fail(args):
        raise ConfigError("first line\n  second line\r\nthird")
    assert run_command(fail, argparse.Namespace(command="plan"), (ConfigError,)) == 2
    assert capsys.readouterr().err == "fleet plan: first line second line third\n"


def test_a_lookalike_of_an_optional_key_is_named_not_defaulted(tmp_path):
    path = stack_file(tmp_path, lambda c: c["llm-fleet:pools"][0].__setitem__(
        "іnstanceTypes", c["llm-fleet:pools"][0].pop("instanceTypes")))
    assert plan_refuses(path) == ("llm-fleet.pools[0]: unknown key 'іnstanceTypes' (contains U+0456 CYRILLIC SMALL "
                                  "LETTER BYELORUSSIAN-UKRAINIAN I; did you mean 'instanceTypes'?)")


def test_two_deployments_cut_to_the_same_kubernetes_name_are_refused(tmp_path):
    long = "h200-" + "x" * 25

    def clash(c):
        c["llm-fleet:cluster"]["name"] = "lf"                   # node group names stay under 63 characters
        for i, suffix in ((0, "b1"), (1, "b2")):
            c["llm-fleet:pools"][i]["name"] = long + suffix
            c["llm-fleet:models"][0]["placements"][i]["pool"] = long + suffix
        c["llm-fleet:models"][0]["name"] = "glm-" + "y" * 28
        c["llm-fleet:gateway"]["fallbacks"] = {"glm-" + "y" * 28: c["llm-fleet:gateway"]["fallbacks"]["glm-5-1"]}
    message = both_refuse(stack_file(tmp_path, clash))
    assert message.startswith(f"llm-fleet.models[0].placements[1]: 'glm-{'y' * 28}' on pool '{long}b2' gets the "
                              f"Kubernetes name 'glm-{'y' * 28}-{long}'")


@pytest.mark.parametrize("key, value, expected", [
    ("source", "zai-org/" + "g" * 100, "is neither a Hugging Face id"),
    ("source", "zai-org/GLM--5", "is neither a Hugging Face id"),
    ("revision", "x" * 101, "give a branch, tag or commit"),
    ("revision", "main..dev", "give a branch, tag or commit"),
])
def test_model_ids_and_revisions_the_hub_would_refuse(tmp_path, key, value, expected):
    assert expected in plan_refuses(stack_file(tmp_path, lambda c: c["llm-fleet:models"][1].update({key: value})))


def test_a_huge_number_under_a_key_without_its_own_bound_is_refused(tmp_path):
    """A general ceiling for numbers (a declared shape's price, found by the property test: 1e308 USD/h
    made the month's cost infinite and `plan --json` print Infinity)."""
    path = stack_file(tmp_path, lambda c: c["llm-fleet:shapes"][0].update(hourlyUSD=1e308), "gpu-cloud")
    assert plan_refuses(path) == ("llm-fleet.shapes[0].hourlyUSD: 1e+308 is above the maximum 1000000000000.0 "
                                  "(no quantity in a stack file is that large)")
