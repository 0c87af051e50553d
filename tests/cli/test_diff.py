"""`fleet diff`'s pure parts: resource diff by (type, name) with changed input paths, cost delta, Markdown."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import yaml

from scripts.cmd_diff import MAX_ROWS, cost_delta, diff_records, to_markdown

NG = "aws:eks/nodeGroup:NodeGroup"


def rec(name, typ=NG, **inputs):
    return {"type": typ, "name": name, "parent": None, "inputs": inputs}


def test_added_removed_changed_with_paths():
    base = [rec("a", scalingConfig={"maxSize": 2, "minSize": 0}, instanceTypes=["p5en.48xlarge"]), rec("gone")]
    head = [rec("a", scalingConfig={"maxSize": 4, "minSize": 0}, instanceTypes=["p5en.48xlarge", "p5e.48xlarge"]),
            rec("new")]
    d = diff_records(base, head)
    assert d["added"] == [{"type": NG, "name": "new"}] and d["removed"] == [{"type": NG, "name": "gone"}]
    (changed,) = d["changed"]
    assert [c["path"] for c in changed["changes"]] == ["instanceTypes[1]", "scalingConfig.maxSize"]
    assert changed["changes"][1] == {"path": "scalingConfig.maxSize", "from": 2, "to": 4}


def test_identical_renders_have_no_diff():
    records = [rec("a", tags={"x": "1"}), rec("b", typ="kubernetes:apps/v1:Deployment", spec={"replicas": 1})]
    assert diff_records(records, list(reversed(records))) == {"added": [], "removed": [], "changed": []}


def test_same_name_different_type_is_two_resources():
    d = diff_records([rec("x")], [rec("x", typ="aws:iam/role:Role")])
    assert len(d["added"]) == 1 and len(d["removed"]) == 1


def test_cost_delta_per_pool_and_new_stack():
    base = {"monthlyUSD": 100.0, "pools": [{"name": "a", "monthlyUSD": 100.0}]}
    head = {"monthlyUSD": 250.0, "pools": [{"name": "a", "monthlyUSD": 50.0}, {"name": "b", "monthlyUSD": 200.0}]}
    c = cost_delta(base, head)
    assert c["delta"] == 150.0
    assert {p["pool"]: p["delta"] for p in c["pools"]} == {"a": -50.0, "b": 200.0}
    assert cost_delta(None, head)["before"] == 0.0 and cost_delta(None, head)["delta"] == 250.0


def test_markdown_names_the_cost_and_every_change():
    d = diff_records([rec("a", scalingConfig={"maxSize": 2})], [rec("a", scalingConfig={"maxSize": 4}), rec("b")])
    c = cost_delta({"monthlyUSD": 10.0, "pools": [{"name": "a", "monthlyUSD": 10.0}]},
                   {"monthlyUSD": 1010.5, "pools": [{"name": "a", "monthlyUSD": 1010.5}]})
    md = to_markdown("prod", "origin/main", d, c)
    assert "$10.00 -> $1,010.50 (**+$1,000.50**/month)" in md
    assert "| a | $10.00 | $1,010.50 | +$1,000.50 |" in md
    assert "1 to add, 1 to change, 0 to remove" in md
    assert "`scalingConfig.maxSize`: `2` -> `4`" in md and "`+` `aws:eks/nodeGroup:NodeGroup` **b**" in md


def test_markdown_is_bounded_for_huge_diffs():
    head = [rec(f"r{i}") for i in range(MAX_ROWS + 25)]
    md = to_markdown("dev", "main", diff_records([], head), cost_delta(None, {"monthlyUSD": 0.0, "pools": []}))
    assert md.count("\n- `+`") == MAX_ROWS and "... and 25 more" in md


def test_end_to_end_against_a_git_ref(tmp_path):
    """A throwaway repo: commit, raise a pool's maxSize, and diff the working tree against HEAD."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    work = tmp_path / "repo"                 # the working tree as it is (what the tests are testing)
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.egg-info",
                                                              ".pytest_cache", ".ruff_cache", ".hypothesis"))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    subprocess.run([*git, "add", "-A"], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "base"], check=True, timeout=30)
    stack = work / "stacks" / "Pulumi.dev.yaml"
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["llm-fleet:pools"][0]["schedule"]["windows"][0]["end"] = "21:00"
    stack.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": str(work)}
    proc = subprocess.run([sys.executable, "-m", "scripts.fleet", "diff", "--stack", "dev", "--base", "HEAD"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    assert "### llm-fleet `dev`: this PR vs `HEAD`" in md
    assert "| l4-spot |" in md and "(**+$" in md                       # two more hours a weekday cost more
    assert "kubernetes:keda.sh/v1alpha1:ScaledObject" in md      # windows are KEDA cron triggers
    assert "**Policy:** 0 mandatory violation(s)" in md
    bad = subprocess.run([sys.executable, "-m", "scripts.fleet", "diff", "--stack", "dev", "--base", "nope"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--base nope: not a commit" in bad.stderr


COPY_IGNORE = (".git", ".venv", "venv", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", ".hypothesis")


def _checkout(tmp_path, name):
    """A throwaway git repository holding this working tree, committed once."""
    from tests.conftest import REPO

    work = tmp_path / name
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    subprocess.run([*git, "add", "-A"], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "base"], check=True, timeout=30)
    return work, git


def _fleet(code, *argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(code)}
    return subprocess.run([sys.executable, "-m", "scripts.fleet", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_repository_is_the_stack_files_checkout_not_the_installed_code(tmp_path):
    """Checkout A holds the stack file; the CLI's code comes from clone B (another install) and runs from a
    directory outside any repository. The base is A's HEAD, so only A's change shows, not every resource new."""
    a, _ = _checkout(tmp_path, "a")
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True, timeout=60)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stack = a / "stacks" / "Pulumi.dev.yaml"
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["llm-fleet:pools"][0]["maxSize"] += 1
    stack.write_text(yaml.safe_dump(doc))
    proc = _fleet(b, "diff", "--stack-file", str(stack), "--base", "HEAD", "--json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["baseMissing"] is False and out["resources"]["added"] == [] and out["resources"]["removed"] == []
    paths = [c["path"] for r in out["resources"]["changed"] for c in r["changes"]]
    assert "scalingConfig.maxSize" in paths


def test_a_base_that_cannot_render_is_refused_and_a_stack_outside_any_checkout_too(tmp_path):
    a, git = _checkout(tmp_path, "a")
    (a / "infra" / "program.py").write_text("raise RuntimeError('broken at the base')\n")
    subprocess.run([*git, "commit", "-qam", "broken"], check=True, timeout=30)
    subprocess.run([*git, "checkout", "-q", "HEAD~1", "--", "infra/program.py"], check=True, timeout=30)
    proc = _fleet(a, "diff", "--stack", "dev", "--base", "HEAD", cwd=a)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "cannot render stacks/Pulumi.dev.yaml at --base HEAD" in proc.stderr
    assert "broken at the base" in proc.stderr

    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "Pulumi.dev.yaml").write_text((a / "stacks" / "Pulumi.dev.yaml").read_text())
    proc = _fleet(a, "diff", "--stack-file", str(loose / "Pulumi.dev.yaml"), "--base", "HEAD", cwd=loose)
    assert proc.returncode == 2 and "nor the working directory is in a git checkout" in proc.stderr


def test_a_stack_new_at_the_head_says_so(tmp_path):
    """A stack file absent at the base ref is the one case with an empty base, and the output says it."""
    a, _ = _checkout(tmp_path, "a")
    new = a / "stacks" / "Pulumi.dev2.yaml"
    new.write_text((a / "stacks" / "Pulumi.dev.yaml").read_text())
    proc = _fleet(a, "diff", "--stack", "dev2", "--base", "HEAD", cwd=a)
    assert proc.returncode == 0, proc.stderr
    assert "does not exist at `HEAD`: every resource is new" in proc.stdout


def test_policy_section_blocks_on_mandatory_violations():
    from scripts.cmd_diff import policy_markdown
    found = [{"policy": "llmfleet-imdsv2-required", "level": "mandatory", "resource": "lt", "message": "m"},
             {"policy": "llmfleet-internal-lb-tls", "level": "advisory", "resource": "svc", "message": "a"}]
    text = "\n".join(policy_markdown(found))
    assert "1 mandatory violation(s), 1 advisory" in text and "will block this" in text
    assert text.index("**BLOCK**") < text.index("advisory `llmfleet-internal-lb-tls`")
    assert "not checked" in "\n".join(policy_markdown(None))


def test_base_and_head_render_at_the_same_time(monkeypatch, capsys):
    """The base ref renders (subprocesses) while the head renders here: wall time ~ the slower one."""
    import time

    import scripts.cmd_diff as cmd_diff
    import scripts.cmd_render as cmd_render
    from scripts import fleet

    def slow_base(ref, path, *rest):
        time.sleep(1.5)
        return [], None

    def slow_head(args):
        time.sleep(1.5)
        return []

    monkeypatch.setattr(cmd_diff, "base_outputs", slow_base)
    monkeypatch.setattr(cmd_render, "render_records", slow_head)
    monkeypatch.setattr("scripts.policy_check.verdicts", lambda records: [])
    started = time.perf_counter()
    assert fleet.main(["diff", "--stack", "dev", "--base", "HEAD", "--json"]) == 0
    assert time.perf_counter() - started < 2.8
    assert '"added": []' in capsys.readouterr().out
