"""The cost jobs' access: least-privilege IAM, GitHub OIDC scoped to the repo's main branch, and the
in-cluster CronJobs reading a copy of the stack file that parses back to the same config."""

from __future__ import annotations

import json

import yaml

from infra.aws.jobs import SKIP_WHEN_LOCKED, github_trust_policy, jobs_policy
from infra.stack.config import load_stack_file
from tests.conftest import STACKS, named, of_type


def test_policy_is_scoped_to_this_clusters_node_groups_and_the_stack_lock():
    cfg = load_stack_file(STACKS / "Pulumi.prod.yaml")
    doc = jobs_policy(cfg, "aws", "123456789012", "bucket", "arn:aws:kms:us-east-1:123456789012:key/k")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["NodeGroups"]["Resource"] == "arn:aws:eks:us-east-1:123456789012:nodegroup/llm-fleet-prod/*/*"
    assert set(by_sid["NodeGroups"]["Action"]) == {"eks:DescribeNodegroup", "eks:UpdateNodegroupConfig",
                                                   "eks:TagResource", "eks:UntagResource"}
    assert by_sid["Lock"]["Resource"] == "arn:aws:s3:::bucket/locks/prod.json"
    assert "CapacityBlocksRead" not in by_sid                     # prod has no capacity-block pool
    actions = {a for st in doc["Statement"] for a in st["Action"]}
    assert "ec2:PurchaseCapacityBlock" not in actions and "ec2:DescribeInstances" in actions
    assert all("*" not in a for s in doc["Statement"] for a in s["Action"])


def test_capacity_block_stacks_may_read_offerings_in_their_region_only(stack_values):
    from infra.stack.config import parse_config
    values = stack_values("prod")
    values["llm-fleet:pools"][0].update(capacity="capacity-block", capacityReservationId="cr-0123456789abcdef0",
                                        azIds=["use1-az4"])
    doc = jobs_policy(parse_config(values, "prod"), "aws", "1", "b", "k")
    block = next(s for s in doc["Statement"] if s["Sid"] == "CapacityBlocksRead")
    assert block["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    assert block["Action"] == ["ec2:DescribeCapacityBlockOfferings", "ec2:DescribeCapacityReservations"]


def test_github_trust_is_the_repos_main_branch():
    doc = github_trust_policy("arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com", "acme/llm-fleet")
    cond = doc["Statement"][0]["Condition"]["StringEquals"]
    assert cond["token.actions.githubusercontent.com:sub"] == "repo:acme/llm-fleet:ref:refs/heads/main"


def test_prod_renders_the_github_role_and_no_cronjob(rendered):
    records = rendered("prod")
    role = named(records, "jobs-github", "aws:iam/role:Role")
    trust = json.loads(role["inputs"]["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"]["Federated"].endswith("token.actions.githubusercontent.com")
    assert not [r for r in of_type(records, "kubernetes:batch/v1:CronJob") if r["name"].startswith("jobs-")]


def test_staging_cronjobs_read_a_stack_file_equal_to_the_deployed_config(rendered, tmp_path):
    records = rendered("staging")
    cronjobs = {r["name"]: r for r in of_type(records, "kubernetes:batch/v1:CronJob") if r["name"].startswith("jobs-")}
    assert set(cronjobs) == {"jobs-reconcile", "jobs-sweep"}
    pod = cronjobs["jobs-reconcile"]["inputs"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][:3] == ["fleet", "reconcile", "--stack-file"]
    assert pod["containers"][0]["command"] == ["/bin/sh", "-c", SKIP_WHEN_LOCKED, "fleet-job"]
    assert pod["nodeSelector"] == {"llm-fleet/role": "system"} and pod["serviceAccountName"] == "fleet-jobs"
    assert "--prometheus-url" not in pod["containers"][0]["args"]        # reconcile needs no engine metrics
    args = cronjobs["jobs-sweep"]["inputs"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    prometheus = args[args.index("--prometheus-url") + 1]       # staging installs kube-prometheus-stack
    releases = {r["inputs"]["name"]: r["inputs"] for r in of_type(records, "kubernetes:helm.sh/v3:Release")}
    stack_release = releases["kube-prometheus-stack"]
    assert prometheus == (f"http://kube-prometheus-stack-prometheus.{stack_release['namespace']}"
                          ".svc.cluster.local:9090")
    assert cronjobs["jobs-reconcile"]["inputs"]["spec"]["concurrencyPolicy"] == "Forbid"
    data = named(records, "jobs-stack")["inputs"]["data"]["Pulumi.staging.yaml"]
    copy = tmp_path / "Pulumi.staging.yaml"
    copy.write_text(data)
    assert "secretsManager" in data and yaml.safe_load(data)["config"]["llm-fleet:environment"] == "staging"
    assert load_stack_file(copy) == load_stack_file(STACKS / "Pulumi.staging.yaml")
    # the same document in the stack's bucket, where the GitHub jobs read it (`--deployed`)
    stored = named(records, "jobs-deployed")["inputs"]
    assert stored["key"] == "deployed/Pulumi.staging.yaml" and stored["content"] == data


def test_lock_held_exit_is_a_skip_and_other_failures_stay_failures():
    import subprocess
    for code, expected in ((0, 0), (3, 0), (2, 2), (1, 1)):
        proc = subprocess.run(["/bin/sh", "-c", SKIP_WHEN_LOCKED, "fleet-job", "/bin/sh", "-c", f"exit {code}"],
                              timeout=10)
        assert proc.returncode == expected
