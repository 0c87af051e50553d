"""The measures the cold-start model counts exist in the rendered system: the pre-pull DaemonSet per
pool, the fetch at the modeled connection count, compile caches restored and saved per revision, and
engines that wait on their own pools only."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from infra.planning.coldstart import CACHE_PATHS, rates
from infra.planning.plan import build_plan
from infra.serving import warmstart
from infra.stack.config import load_stack_file
from scripts.common import REPO_ROOT
from tests.conftest import of_type

CACHE = "s3://bucket/compile-cache/glm-5-1/main/vllm-vllm-openai-v0.19.0/"


def _plan(stack: str):
    return build_plan(load_stack_file(REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml"))


def _engines(records):
    return {r["name"]: r for r in of_type(records, "kubernetes:apps/v1:Deployment") if "gateway" not in r["name"]}


def test_every_overlapped_deployment_has_its_image_pre_pulled_on_its_pool(rendered):
    records = rendered("prod")
    daemonsets = of_type(records, "kubernetes:apps/v1:DaemonSet")
    pulled = {(d["inputs"]["spec"]["template"]["spec"]["nodeSelector"]["llm-fleet/pool"],
               d["inputs"]["spec"]["template"]["spec"]["initContainers"][0]["image"]) for d in daemonsets}
    overlapped = [d for d in _plan("prod").deployments if d.cold_start.overlapped]
    assert overlapped
    for dep in overlapped:
        assert (dep.pool, dep.engine_image) in pulled
    for d in daemonsets:
        spec = d["inputs"]["spec"]["template"]["spec"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["containers"][0]["image"] == warmstart.PAUSE_IMAGE


def test_engines_keep_and_share_compile_caches_per_revision(rendered):
    records = rendered("prod")
    for name, dep in _engines(records).items():
        pod = dep["inputs"]["spec"]["template"]["spec"]
        engine = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in engine["env"]}
        assert env["VLLM_CACHE_ROOT"].startswith(warmstart.CACHE_MOUNT) and "DG_JIT_CACHE_DIR" in env, name
        vol = next(v for v in pod["volumes"] if v["name"] == warmstart.CACHE_VOLUME)
        assert vol["hostPath"]["path"].endswith("/main"), vol            # per model revision
        saver = next(c for c in pod["containers"] if c["name"] == "save-compile-cache")
        cache_uri = next(e["value"] for e in saver["env"] if e["name"] == "CACHE_URI")
        init_env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
        assert init_env["CACHE_URI"] == cache_uri and "/compile-cache/" in cache_uri
        assert "restoring compile caches" in pod["initContainers"][0]["command"][-1]


def test_hub_paths_keep_caches_on_the_node_only(rendered):
    for dep in _engines(rendered("existing-cluster")).values():
        pod = dep["inputs"]["spec"]["template"]["spec"]
        assert any(v["name"] == warmstart.CACHE_VOLUME for v in pod["volumes"])
        assert not any(c["name"] == "save-compile-cache" for c in pod["containers"])
    assert "hub" not in CACHE_PATHS


def test_engines_wait_on_their_own_pools_only(rendered):
    records = rendered("prod")
    pools = {r["name"] for r in of_type(records, "aws:eks/nodeGroup:NodeGroup") if r["name"].startswith("gpu-")}
    assert len(pools) == 4
    for dep in _plan("prod").deployments:
        engine = next(r for name, r in _engines(records).items() if name == f"serving-{dep.model}-{dep.pool}")
        assert set(engine["dependsOn"]) & pools == {f"gpu-{dep.pool}"}
        assert "gpu" not in engine["dependsOn"]              # never the whole GpuNodePools component
    gateway = next(r for r in of_type(records, "kubernetes:apps/v1:Deployment") if r["name"] == "serving-gateway")
    assert not set(gateway["dependsOn"]) & pools


def _fake_s5cmd(tmp_path: Path, marker: bool) -> Path:
    fake = tmp_path / "s5cmd"
    fake.write_text("#!/bin/sh\n"
                    f'if [ "$1" = ls ]; then exit {0 if marker else 1}; fi\n'
                    'echo "s5cmd $*" >> "$LOG"\n')
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("marker", [True, False])
def test_restore_syncs_only_a_complete_cache(tmp_path, marker):
    script = warmstart.RESTORE_CACHE.replace("/s5cmd", str(_fake_s5cmd(tmp_path, marker)))
    done = subprocess.run(["/bin/sh", "-ec", script], env={"CACHE_URI": CACHE, "LOG": str(tmp_path / "log"),
                                                           "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    assert (f"sync {CACHE}* /compile-cache/" in log) is marker


@pytest.mark.parametrize("marker", [False, True])
def test_save_uploads_once_after_the_engine_is_healthy(tmp_path, marker):
    wget = tmp_path / "wget"
    wget.write_text('#!/bin/sh\necho "wget $*" >> "$LOG"\n')
    wget.chmod(0o755)
    script = (warmstart._SAVE_CACHE.format(port=8000).replace("/s5cmd", str(_fake_s5cmd(tmp_path, marker)))
              .replace(warmstart.IDLE, "exit 0"))
    done = subprocess.run(["/bin/sh", "-ec", script], env={"CACHE_URI": CACHE, "LOG": str(tmp_path / "log"),
                                                           "PATH": f"{tmp_path}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log").read_text()
    assert "wget -q -O /dev/null http://127.0.0.1:8000/health" in log
    assert (f"sync /compile-cache/ {CACHE}" in log) is not marker
    assert (f"cp /tmp/complete {CACHE}.complete" in log) is not marker


def test_the_save_sidecar_stops_at_once_on_term(tmp_path):
    wget = tmp_path / "wget"
    wget.write_text("#!/bin/sh\nexit 0\n")
    wget.chmod(0o755)
    script = warmstart._SAVE_CACHE.format(port=8000).replace("/s5cmd", str(_fake_s5cmd(tmp_path, True)))
    proc = subprocess.Popen(["/bin/sh", "-ec", script], env={"CACHE_URI": CACHE, "LOG": str(tmp_path / "log"),
                                                            "PATH": f"{tmp_path}:/usr/bin:/bin"})

    time.sleep(1)
    proc.terminate()
    assert proc.wait(timeout=5) == 0


def test_the_fetch_runs_the_connections_the_model_counts():
    flags = rates()["s5cmd"]
    script = warmstart.sync_script()
    assert f"--numworkers {flags['numworkers']} " in script and f"--concurrency {flags['concurrency']} " in script


def test_keda_starts_the_cold_start_before_the_window(rendered):
    """The window is KEDA's cron trigger (no EventBridge action writes node sizes: docs/capacity.md)."""
    records = rendered("prod")
    lead = _plan("prod").config.pool("h200-peak").schedule.prewarm_minutes
    minute = (9 * 60 - lead) % 60
    scaler = next(r for r in records if r["name"] == "serving-glm-5-1-h200-peak-scaler")
    cron = next(t for t in scaler["inputs"]["spec"]["triggers"] if t["type"] == "cron")
    assert cron["metadata"]["start"].startswith(f"{minute} {(9 * 60 - lead) // 60} ")
