"""Engine manifests from the real planner: Deployment vs LeaderWorkerSet, arguments, probes, resources,
weights, and the two shell/Python snippets the pods run (executed here against fakes)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infra.planning.catalog import load_catalog
from infra.planning.coldstart import rates
from infra.planning.plan import build_plan
from infra.planning.shapes import catalog_for
from infra.serving import engines
from infra.serving.engines import EngineSpec, WeightsPlan
from infra.serving.warmstart import sync_script
from infra.stack.config import parse_config

CATALOG = load_catalog()
S3 = "s3://bucket/models/glm-5-1/main/"
MARKER = S3 + ".llm-fleet-complete"


def plan_for(values: dict, stack: str = "prod"):
    cfg = parse_config({k: v for k, v in values.items()}, stack)
    return cfg, build_plan(cfg)


def spec_of(dep, cfg, weights: WeightsPlan | None = None, accelerator: str | None = None) -> EngineSpec:
    shape = catalog_for(cfg, CATALOG).instance(dep.instance_type)
    return EngineSpec(name=f"{dep.model}-{dep.pool}", namespace="llm-fleet", dep=dep,
                      accelerator=accelerator or cfg.cluster.accelerator, node_selector=cfg.pool(dep.pool).selector,
                      vcpus=shape.vcpus, memory_mib=shape.memory_mib, gpus_per_node=shape.gpu_count,
                      weights=weights or WeightsPlan("nvme", source_uri=S3, marker_uri=MARKER, region="us-east-1",
                                                     service_account="weights-reader",
                                                     cache_dir="/mnt/k8s-disks/0/llm-fleet/glm-5-1/main"),
                      grace_seconds=cfg.gateway.request_timeout_seconds + 60)


@pytest.fixture
def prod(stack_values):
    cfg, plan = plan_for(stack_values("prod"))
    dep = next(d for d in plan.deployments if d.model == "glm-5-1" and d.pool == "h200-base")
    return cfg, spec_of(dep, cfg)


@pytest.fixture
def bf16_two_nodes(stack_values):
    """GLM-5.1 BF16 (~1.5 TB) on two 8x H200 nodes: a LeaderWorkerSet."""
    values = stack_values("prod")
    glm = values["llm-fleet:models"][0]
    glm.update(source="zai-org/GLM-5.1", precision="bf16", maxNodesPerReplica=2, maxContext=65536)
    glm["placements"] = [{"pool": "h200-spot", "replicas": {"min": 0, "max": 1}}]
    cfg, plan = plan_for(values)
    dep = next(d for d in plan.deployments if d.model == "glm-5-1")
    return cfg, dep


def engine(manifest: dict, template: str = "template") -> dict:
    spec = manifest["spec"]
    pod = spec[template] if template == "template" else spec["leaderWorkerTemplate"][template]
    return pod["spec"]["containers"][0]


def test_single_node_replica_is_a_deployment_with_the_planner_arguments(prod):
    cfg, spec = prod
    m = engines.workload(spec)
    assert m["kind"] == "Deployment" and m["apiVersion"] == "apps/v1"
    c = engine(m)
    cmd = c["command"]
    assert cmd[:3] == ["vllm", "serve", "/weights"]
    assert cmd[3:] == list(spec.dep.engine_args)
    for flag, value in (("--tensor-parallel-size", "8"), ("--served-model-name", "glm-5-1"),
                        ("--tool-call-parser", "glm47"), ("--reasoning-parser", "glm45"),
                        ("--max-model-len", "131072"), ("--gpu-memory-utilization", "0.92")):
        assert cmd[cmd.index(flag) + 1] == value
    assert {"--enable-prefix-caching", "--enable-chunked-prefill", "--enable-expert-parallel"} <= set(cmd)
    assert "--speculative-config.method" in cmd and "--headless" not in cmd
    assert c["image"] == "vllm/vllm-openai:v0.28.0"        # >= 0.20.0: GLM-5.1 loads, tool calls + MTP
    env = {e["name"]: e for e in c["env"]}
    # the API server waits the planner's whole startup budget for the engine core (default 600 s)
    assert int(env["VLLM_ENGINE_READY_TIMEOUT_S"]["value"]) == spec.dep.load.probe_seconds > 600
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-engine-key", "key": "api-key"}
    assert m["spec"]["template"]["metadata"]["labels"]["llm-fleet/serves"] == "api"
    assert m["spec"]["replicas"] == 1
    assert m["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}  # a whole node


def test_pod_placement_resources_and_shutdown(prod):
    cfg, spec = prod
    m = engines.workload(spec)
    pod = m["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8" == c["resources"]["requests"]["nvidia.com/gpu"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"llm-fleet/pool": "h200-base"}
    labels = m["spec"]["template"]["metadata"]["labels"]
    assert labels["llm-fleet/role"] == "engine" and labels["llm-fleet/model"] == "glm-5-1"
    assert labels["llm-fleet/pool"] == "h200-base"
    assert pod["terminationGracePeriodSeconds"] >= cfg.gateway.request_timeout_seconds
    assert c["lifecycle"]["preStop"]["exec"]["command"][:2] == ["python3", "-c"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"] == "64Gi"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    # the request fits the p5en node; the weight shard (~750 GB) plus headroom is reserved
    assert 800 <= int(c["resources"]["requests"]["memory"].removesuffix("Gi")) < 2048 * 0.8
    assert m["spec"]["template"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


def test_probes_budget_covers_the_load_estimate(prod):
    _, spec = prod
    c = engine(engines.workload(spec))
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["failureThreshold"] * startup["periodSeconds"] >= spec.dep.load.probe_seconds
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"       # /v1 asks for the engine key
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_weights_come_from_the_nvme_cache_after_the_marker_check(prod):
    _, spec = prod
    pod = engines.workload(spec)["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["image"] == engines.S5CMD_IMAGE and init["name"] == "fetch-weights"
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["SOURCE"] == S3 and env["MARKER"] == MARKER
    assert pod["serviceAccountName"] == "weights-reader"
    cache = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert cache["hostPath"]["path"].startswith(engines.NVME_ROOT)
    assert {"name": "weights", "mountPath": "/weights", "readOnly": True} in pod["containers"][0]["volumeMounts"]


def _run_init(tmp_path: Path, marker_exists: bool) -> subprocess.CompletedProcess:
    fake = tmp_path / "s5cmd"
    fake.write_text("#!/bin/sh\n"
                    f'if [ "$1" = ls ]; then exit {0 if marker_exists else 1}; fi\n'
                    'echo "s5cmd $*" >> "$LOG"\n')
    fake.chmod(0o755)
    script = (engines._FETCH + sync_script()).replace("/s5cmd", str(fake))
    env = {"SOURCE": S3, "MARKER": MARKER, "TARGET": str(tmp_path / "w"), "LOG": str(tmp_path / "log"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=30)


def test_init_script_refuses_an_incomplete_copy(tmp_path):
    done = _run_init(tmp_path, marker_exists=False)
    assert done.returncode == 1
    assert "copy of s3://bucket/models/glm-5-1/main/ to S3 is not complete" in done.stderr
    assert not (tmp_path / "log").exists()


def test_init_script_syncs_when_the_marker_exists(tmp_path):
    done = _run_init(tmp_path, marker_exists=True)
    assert done.returncode == 0, done.stderr
    flags = rates()["s5cmd"]
    assert (f"--numworkers {flags['numworkers']} sync --delete --concurrency {flags['concurrency']} "
            f"--part-size {flags['partSizeMiB']} {S3}* {tmp_path}/w/") in (tmp_path / "log").read_text()


def test_prestop_waits_until_no_request_is_running():
    answers = iter(['vllm:num_requests_running{model_name="m"} 2.0\nvllm:num_requests_waiting{model_name="m"} 1.0\n',
                    'vllm:num_requests_running{model_name="m"} 0.0\nvllm:num_requests_waiting{model_name="m"} 0.0\n'])
    seen = []

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = next(answers, answers_last).encode()
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    answers_last = 'vllm:num_requests_running{model_name="m"} 0.0\n'
    server = http.server.HTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = engines._DRAIN.format(budget=20, port=server.server_address[1]).replace("time.sleep(5)", "pass")
        done = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True, text=True)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert seen == ["/metrics", "/metrics"]          # polled until both gauges were zero, then stopped


def test_two_node_replica_is_a_leader_worker_set(bf16_two_nodes):
    cfg, dep = bf16_two_nodes
    assert dep.multi_node and dep.layout.nodes == 2
    spec = spec_of(dep, cfg)
    m = engines.workload(spec)
    assert m["kind"] == "LeaderWorkerSet" and m["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    lwt = m["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2 and lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = engine(m, "leaderTemplate"), engine(m, "workerTemplate")
    lead = leader["command"]
    assert lead[lead.index("--nnodes") + 1] == "$(LWS_GROUP_SIZE)"
    assert lead[lead.index("--node-rank") + 1] == "0"
    assert lead[lead.index("--master-addr") + 1] == "$(LWS_LEADER_ADDRESS)"
    assert lead[lead.index("--pipeline-parallel-size") + 1] == "2"
    work = worker["command"]
    assert "--headless" in work and work[work.index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"
    assert "ports" not in worker                                     # headless: no API
    probe = worker["startupProbe"]["exec"]["command"]                # the group's health is the leader's
    assert probe[:2] == ["python3", "-c"] and "LWS_LEADER_ADDRESS" in probe[2] and "/health" in probe[2]
    assert worker["startupProbe"]["failureThreshold"] * worker["startupProbe"]["periodSeconds"] >= (
        dep.load.probe_seconds)
    assert "startupProbe" in leader and leader["ports"][0]["containerPort"] == 8000
    for c in (leader, worker):
        assert c["resources"]["limits"]["vpc.amazonaws.com/efa"] == "16"       # p5en: 16 EFA interfaces
        assert c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
        assert {"name": "FI_PROVIDER", "value": "efa"} in c["env"]
    # the model's Service selects leaders (they serve the API), never headless workers
    sel = engines.service(dep.model, "llm-fleet")["spec"]["selector"]
    leader_labels = m["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]["labels"]
    worker_labels = m["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"]["labels"]
    assert sel.items() <= leader_labels.items() and not sel.items() <= worker_labels.items()
    # EKS multi-node: the AWS DLC image with aws-ofi-nccl, not the stock one
    assert leader["image"] == worker["image"] == cfg.engines["vllm"].efa_image
    assert "deep-learning-containers/vllm:0.28.0" in leader["image"]
    # workers stay up while the leader drains: their preStop waits on the leader's /health
    wait = worker["lifecycle"]["preStop"]["exec"]["command"]
    assert wait[:2] == ["python3", "-c"] and "LWS_LEADER_ADDRESS" in wait[2] and "/health" in wait[2]
    assert f"deadline = time.time() + {engines.drain_budget(spec)}" in wait[2]
    assert not any(e["name"] == "VLLM_API_KEY" for e in worker["env"])


def test_worker_prestop_outlives_a_draining_leader(tmp_path):
    """The worker's wait, run: it returns only once the leader's /health stops answering."""
    import http.server
    import subprocess
    import sys
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), type("H", (http.server.BaseHTTPRequestHandler,), {
        "do_GET": lambda self: (self.send_response(200), self.end_headers()), "log_message": lambda *a: None}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = engines._WORKER_WAIT.format(budget=30, port=server.server_address[1])
    proc = subprocess.Popen([sys.executable, "-c", script], env={"LWS_LEADER_ADDRESS": "127.0.0.1"})
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)                     # leader up: the worker keeps its GPUs in the group
    finally:
        server.shutdown()
        server.server_close()
    assert proc.wait(timeout=10) == 0                # leader gone: the worker may stop


def test_stack_below_the_model_minimum_engine_is_refused(stack_values):
    from infra.planning.sizing import SizingError

    values = stack_values("prod")
    values["llm-fleet:engines"] = {"vllm": {"version": "v0.19.0"}}
    with pytest.raises(SizingError, match=r"engines\.vllm\.version: v0\.19\.0 .* needs vllm >= 0\.19\.1"):
        plan_for(values)
    values["llm-fleet:engines"] = {"vllm": {"version": "v0.19.1"}}
    _, plan = plan_for(values)
    args = next(d for d in plan.deployments if d.model == "glm-5-1").engine_args
    assert "--tool-call-parser" in args and "--speculative-config.method" not in args   # MTP off before 0.20.0


def test_sglang_multi_node_and_readiness(bf16_two_nodes, stack_values):
    cfg, _ = bf16_two_nodes
    values = stack_values("prod")
    glm = values["llm-fleet:models"][0]
    glm.update(source="zai-org/GLM-5.1", precision="bf16", maxNodesPerReplica=2, maxContext=65536, engine="sglang")
    glm["placements"] = [{"pool": "h200-spot", "replicas": {"min": 0, "max": 1}}]
    from infra.planning.sizing import SizingError
    with pytest.raises(SizingError, match=r"engines\.sglang\.efaImage: .*aws-ofi-nccl"):
        plan_for(values)                     # no EFA-ready SGLang image is known for v0.5.10
    efa = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sglang-efa:0.5.10"
    values["llm-fleet:engines"] = {"sglang": {"efaImage": efa}}
    cfg, plan = plan_for(values)
    dep = next(d for d in plan.deployments if d.model == "glm-5-1")
    m = engines.workload(spec_of(dep, cfg))
    leader = engine(m, "leaderTemplate")
    assert leader["image"].endswith("sglang-efa:0.5.10")
    env = {e["name"]: e for e in leader["env"]}
    assert env["SGLANG_ENABLE_SPEC_V2"]["value"] == "1"               # EAGLE, as the GLM-5.1 cookbook runs it
    cmd = leader["command"]
    assert cmd[cmd.index("--mem-fraction-static") + 1] == "0.85"      # not gpuMemoryUtilization's 0.92
    assert cmd[cmd.index("--api-key") + 1] == "$(LLMFLEET_ENGINE_API_KEY)"
    assert env["LLMFLEET_ENGINE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "llm-engine-key"
    assert cmd[:4] == ["python3", "-m", "sglang.launch_server", "--model-path"]
    assert cmd[cmd.index("--dist-init-addr") + 1] == "$(LWS_LEADER_ADDRESS):20000"
    assert cmd[cmd.index("--tp-size") + 1] == "16"
    assert leader["readinessProbe"]["httpGet"]["path"] == "/health_generate"
    worker = engine(m, "workerTemplate")["command"]
    assert worker[worker.index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"


@pytest.mark.parametrize("method", ["runai-streamer", "fsx", "hub", "local"])
def test_other_weight_sources(prod, method):
    cfg, base = prod
    plans = {
        "runai-streamer": WeightsPlan("runai-streamer", source_uri=S3, marker_uri=MARKER, region="us-east-1",
                                      service_account="weights-reader"),
        "fsx": WeightsPlan("fsx", fsx_path="/weights/models/glm-5-1/main/"),
        "hub": WeightsPlan("hub", hf_id="zai-org/GLM-5.1-FP8", revision="abc123",
                           hf_token=("engine-hf-token", "HF_TOKEN")),
        "local": WeightsPlan("local", local_path="/models/glm"),
    }
    spec = spec_of(base.dep, cfg, plans[method])
    pod = engines.workload(spec)["spec"]["template"]["spec"]
    cmd = pod["containers"][0]["command"]
    env = pod["containers"][0]["env"]
    if method == "runai-streamer":
        assert cmd[2] == S3 and cmd[cmd.index("--load-format") + 1] == "runai_streamer"
        assert pod["initContainers"][0]["name"] == "check-weights" and pod["serviceAccountName"] == "weights-reader"
    elif method == "fsx":
        assert cmd[2] == "/weights/models/glm-5-1/main/"
        claim = next(v for v in pod["volumes"] if v["name"] == "weights")["persistentVolumeClaim"]
        assert claim == {"claimName": engines.FSX_CLAIM, "readOnly": True}
    elif method == "hub":
        assert cmd[2] == "zai-org/GLM-5.1-FP8" and cmd[cmd.index("--revision") + 1] == "abc123"
        token = {"secretKeyRef": {"name": "engine-hf-token", "key": "HF_TOKEN"}}
        assert {"name": "HF_TOKEN", "valueFrom": token} in env
        assert "initContainers" not in pod and "serviceAccountName" not in pod
    else:
        assert cmd[2] == "/models/glm"
        assert next(v for v in pod["volumes"] if v["name"] == "weights")["hostPath"]["path"] == "/models/glm"


def test_ascend_accelerator(stack_values):
    from infra.stack.config import load_stack_file

    cfg = load_stack_file(Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.onprem-ascend.yaml")
    plan = build_plan(cfg)
    dep = plan.deployments[0]
    spec = spec_of(dep, cfg, WeightsPlan("hub", hf_id=dep.source, revision="main"))
    pod = engines.workload(spec)["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "quay.io/ascend/vllm-ascend:v0.23.0"
    assert c["resources"]["limits"]["huawei.com/Ascend910"] == str(dep.layout.gpus)
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(dep.layout.gpus))
    assert env["HCCL_CONNECT_TIMEOUT"] == "600" and "HCCL_EXEC_TIMEOUT" in env
    assert {"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"accelerator": "huawei-Ascend910"}
    cmd = c["command"]
    assert cmd[cmd.index("--tool-call-parser") + 1] == "glm47"          # GLM-5.1 (w4a8) now, not GLM-4.5-Air
    assert cmd[cmd.index("--quantization") + 1] == "ascend"


def test_small_replicas_share_a_node_and_surge():
    from infra.stack.config import load_stack_file

    cfg = load_stack_file(Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.existing-cluster.yaml")
    dep = next(d for d in build_plan(cfg).deployments if d.model == "qwen2-5-7b")
    assert dep.replicas_per_node > 1                      # 1 GPU of an 8x H100 node
    spec = spec_of(dep, cfg)
    assert engines.resources(spec)["requests"]["nvidia.com/gpu"] == str(dep.layout.gpus)
    m = engines.deployment(spec)
    assert m["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = engines.pod_disruption_budget(spec)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": engines.selector(spec)}}
    assert engines.backend_url("qwen2-5-7b", "llm-fleet") == "http://qwen2-5-7b-engine.llm-fleet.svc.cluster.local:8000/v1"
    assert dep.load.method == "hub"                         # an existing cluster: weights from the hub
    assert engines.workload(spec)["spec"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
