"""The cold-start model: every term, overlaps that match what is rendered, the limit and the goal."""

from __future__ import annotations

import re

import pytest

from infra.planning import coldstart
from infra.planning.catalog import load_catalog
from infra.planning.plan import build_plan
from infra.stack.config import load_stack_file
from scripts.common import REPO_ROOT


@pytest.fixture(scope="module")
def p5en():
    return load_catalog().instance("p5en.48xlarge")


def _prod():
    return build_plan(load_stack_file(REPO_ROOT / "stacks" / "Pulumi.prod.yaml"))


def test_glm_on_p5en_is_within_twice_its_physical_limit():
    glm = [d for d in _prod().deployments if d.model == "glm-5-1"]
    assert {d.instance_type for d in glm} == {"p5en.48xlarge"}
    for d in glm:
        c = d.cold_start
        assert c.total_seconds / c.limit_seconds <= 2, c
        assert d.load.seconds == c.total_seconds          # what probes and others read is the model's total


def test_terms_add_up_with_the_image_beside_the_weights_fetch(p5en):
    c = coldstart.cold_start(756, "nvme", "vllm", p5en)
    assert c.overlapped == ("image", "weights")
    assert c.total_seconds == pytest.approx(
        c.node_seconds + max(c.image_seconds, c.weights_seconds) + c.load_seconds + c.warmup_seconds, abs=3)
    # without the pre-pull DaemonSet the image is pulled after the weights (kubelet: init first)
    before = c.total_seconds
    coldstart.PREPULL_IMAGE = False
    try:
        serial = coldstart.cold_start(756, "nvme", "vllm", p5en)
    finally:
        coldstart.PREPULL_IMAGE = True
    assert serial.overlapped == ()
    assert serial.total_seconds - before == pytest.approx(min(c.image_seconds, c.weights_seconds), abs=2)


def test_weights_fetch_follows_the_shape_and_the_deployed_connections(p5en):
    catalog = load_catalog()
    r = coldstart.rates()
    # 756 GB at the measured 100 Gbps ceiling: ~61 s; the 1.55 GB/s hub -> S3 figure would be 488 s
    assert coldstart.cold_start(756, "nvme", "vllm", p5en).weights_seconds == pytest.approx(756 * 8 / 100, abs=1)
    small = catalog.instance("g6.xlarge")
    assert coldstart.s3_gbps(small) == small.network_gbps < 100
    assert coldstart.cold_start(15, "nvme", "vllm", small).weights_seconds == pytest.approx(
        15 * 8 / small.network_gbps, abs=1)
    # too few connections cannot fill the line: 8 x 1.77 Gbps
    assert coldstart.fetch_gbps(p5en, connections=8) == pytest.approx(8 * r["s3"]["perConnectionGbps"])


def test_each_path_has_its_own_rate(p5en):
    by_path = {p: coldstart.cold_start(756, p, "vllm", p5en) for p in coldstart.PATHS}
    hub = coldstart.rates()["paths"]["hubDownloadGBps"]
    assert by_path["hub"].weights_seconds == pytest.approx(756 / hub, abs=1)
    assert by_path["runai-streamer"].load_seconds == by_path["fsx"].load_seconds == 0
    assert by_path["local"].weights_seconds == 0
    # the hub path has no shared compile cache: a new node compiles
    assert by_path["hub"].warmup_seconds == coldstart.rates()["warmup"]["large"]["coldSeconds"]
    assert by_path["nvme"].warmup_seconds == coldstart.rates()["warmup"]["large"]["cachedSeconds"]
    assert len({c.limit_seconds for c in by_path.values()}) == 1      # the limit is the shape's, not the path's


def test_a_cluster_we_do_not_make_has_no_node_term(p5en):
    assert coldstart.cold_start(15, "hub", "vllm", p5en, launches_nodes=False).node_seconds == 0


def test_probe_and_prewarm_follow_the_total():
    assert coldstart.probe_seconds(640) == 1260           # 640 x 1.5 + 300 = 1260
    assert coldstart.probe_seconds(10) == coldstart.rates()["probe"]["minimumSeconds"]
    assert coldstart.prewarm_minutes(640) == 11


def _prod_with_prewarm(tmp_path, value: str):
    text = re.sub(r"prewarmMinutes: auto.*", f"prewarmMinutes: {value}",
                  (REPO_ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    return load_stack_file(path)


def _lead(plan) -> int:
    """The pre-warm `auto` gives: the cold start plus one KEDA poll and the replicas' ramp (windows_plan)."""
    from infra.planning.windows_plan import ready_lead_seconds
    return -(-ready_lead_seconds(plan.deployments_on("h200-peak"), plan.schedule("h200-peak")) // 60)


def test_a_short_prewarm_gets_a_note(tmp_path):
    plan = build_plan(_prod_with_prewarm(tmp_path, "5"))
    need = _lead(plan)
    assert need >= coldstart.prewarm_minutes(max(d.load.seconds for d in plan.deployments_on("h200-peak")))
    assert any("pool h200-peak: schedule.prewarmMinutes 5 is shorter than the modeled cold start" in n and
               f"set prewarmMinutes to {need}" in n for n in plan.notes), plan.notes
    assert not any("is shorter than" in n for n in _prod().notes)


def test_auto_prewarm_is_the_cold_start_everywhere_the_lead_is_used(tmp_path):
    from scripts.common import load_stack

    plan = _prod()
    need = _lead(plan)
    assert plan.config.pool("h200-peak").schedule.prewarm_minutes == need
    assert f"{need} min pre-warm" in plan.pool("h200-peak").basis                  # the cost uses it
    args = type("Args", (), {"stack": "prod", "stack_file": None})()
    assert load_stack(args).pool("h200-peak").schedule.prewarm_minutes == need      # so do the jobs
    fixed = build_plan(_prod_with_prewarm(tmp_path, "45"))
    assert fixed.config.pool("h200-peak").schedule.prewarm_minutes == 45           # a number stays a number
    assert plan.pool("h200-peak").monthly_node_hours < fixed.pool("h200-peak").monthly_node_hours


def test_unknown_path_is_refused(p5en):
    with pytest.raises(ValueError, match="loading path 'ftp'"):
        coldstart.cold_start(1, "ftp", "vllm", p5en)
