"""`fleet plan` stays light: no cloud SDK, HTTP client or Pulumi import (a fresh interpreter proves it)."""

from __future__ import annotations

import subprocess
import sys

from scripts.common import REPO_ROOT

PROBE = """
import contextlib, io, sys
from scripts import fleet
with contextlib.redirect_stdout(io.StringIO()):
    code = fleet.main(["plan", "--stack", "prod", "--json"])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"boto3", "botocore", "requests", "pulumi", "pulumi_aws"})
print(code, ",".join(heavy))
"""


def test_fleet_plan_imports_neither_boto3_nor_requests_nor_pulumi():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    code, heavy = done.stdout.strip().split(" ", 1) if " " in done.stdout.strip() else (done.stdout.strip(), "")
    assert code == "0" and heavy == "", done.stdout


def test_the_catalog_parses_with_the_c_loader_when_present():
    import yaml

    from infra.planning import catalog

    assert catalog._LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
