"""The jobs run from the light install (`pip install -e .`, no `deploy` extra): nothing on their path imports
Pulumi. Each check runs in a fresh interpreter where any Pulumi or gRPC import fails, as it would without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO

JOBS = ("status", "scale", "reconcile", "sweep", "capacity")
HEAVY = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_policy", "grpc")

# A meta-path finder that refuses the heavy packages, then the CLI; the loaded top-level modules go to fd 3.
PRELUDE = f"""
import importlib.abc, json, os, sys
class _LightInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is not in the light install")
sys.meta_path.insert(0, _LightInstall())
"""


def _python(code: str, *argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    read, write = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FD": str(write)}
    tail = ("\nos.write(int(os.environ['FD']), json.dumps(sorted({m.split('.')[0] for m in sys.modules})).encode())"
            "\nsys.exit(globals().get('rc', 0))\n")
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code + tail, *argv], cwd=REPO, env=env, pass_fds=(write,),
                          capture_output=True, text=True, timeout=120)
    os.close(write)
    with os.fdopen(read) as f:
        loaded = set(json.loads(f.read() or "[]"))
    return proc, loaded


def test_pyproject_keeps_pulumi_out_of_the_base_install():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "pulumi" not in base and {"boto3", "pyyaml", "requests"} <= {d.split(">")[0].split("=")[0].lower()
                                                                         for d in project["dependencies"]}
    deploy = {d.split(">")[0] for d in project["optional-dependencies"]["deploy"]}
    assert deploy == {"pulumi", "pulumi-aws", "pulumi-kubernetes"}
    assert "llm-fleet[deploy]" in project["optional-dependencies"]["dev"]       # pip install -e '.[dev]' still works
    # `pulumi install` (pip toolchain) runs `pip install -r requirements.txt` in the program directory, `main:`
    lines = [x for x in (REPO / "infra" / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert lines == ["-e ..[deploy]"]
    assert "main: infra/" in (REPO / "Pulumi.yaml").read_text()


def test_the_jobs_import_closure_has_no_pulumi():
    code = ("import importlib\nfrom scripts import fleet\nfleet.build_parser()\n"
            f"for name in {JOBS!r}:\n    importlib.import_module(fleet.COMMANDS[name])\n")
    proc, loaded = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert {"scripts", "infra", "boto3", "yaml"} <= loaded and not loaded & set(HEAVY)
    blocked, _ = _python("import pulumi")                         # the finder does refuse them
    assert blocked.returncode == 1 and "pulumi is not in the light install" in blocked.stderr


def test_render_without_the_deploy_extra_says_what_to_install(stack_file):
    proc, _ = _python("from scripts.fleet import main\nrc = main(sys.argv[1:])\n", "render", "--stack-file",
                      str(stack_file))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("fleet render: needs the Pulumi SDK") and "pip install -e '.[deploy]'" in proc.stderr


@pytest.mark.parametrize("argv", [
    ("status", "--json", "--at", "2026-03-30T12:00Z"),
    ("reconcile", "--dry-run", "--at", "2026-03-30T12:00Z"),
    ("sweep", "--dry-run", "--at", "2026-03-30T12:00Z"),
    ("scale", "--dry-run", "--pool", "peak", "--size", "1"),
], ids=lambda a: a[0])
def test_each_job_runs_against_aws_without_pulumi(deployed, stack_file, argv):
    """The real CLI in a fresh interpreter, against moto (the `aws` fixture's endpoint and credentials)."""
    code = "from scripts.fleet import main\nrc = main(sys.argv[1:])\n"
    proc, loaded = _python(code, argv[0], "--stack-file", str(stack_file), *argv[1:])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    if argv[0] not in ("sweep", "reconcile"):                     # a fresh stack: bounds as deployed, nothing to do
        assert [json.loads(x) for x in proc.stdout.splitlines()], proc.stderr   # it read AWS, printed JSON
    assert "boto3" in loaded and not loaded & set(HEAVY)
