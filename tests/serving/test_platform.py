"""Where the engines run decides their fabric and their hub: RDMA + NCCL IB on on-prem HGX (never EFA
off AWS), HCCL and vllm-ascend's multi-node launcher on Ascend, an HF mirror or ModelScope download."""

from __future__ import annotations

import json

from infra.planning.plan import build_plan
from infra.serving import engines
from infra.serving.engines import WeightsPlan
from infra.stack.config import parse_config
from tests.conftest import STACKS
from tests.serving.test_engines import spec_of
from tests.serving.test_existing import of_type, rendered


def test_glm51_fp8_over_two_onprem_hgx_nodes_renders_with_rdma_and_no_efa_anywhere():
    records = rendered("existing-cluster")
    text = json.dumps([r["inputs"] for r in records])
    assert "vpc.amazonaws.com/efa" not in text and "FI_PROVIDER" not in text and "FI_EFA" not in text
    (lws,) = of_type(records, "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")
    spec = lws["inputs"]["spec"]
    assert spec["leaderWorkerTemplate"]["size"] == 2
    for role in ("leaderTemplate", "workerTemplate"):
        c = spec["leaderWorkerTemplate"][role]["spec"]["containers"][0]
        for part in ("requests", "limits"):
            assert c["resources"][part]["rdma/hca_shared_devices_a"] == "1"
            assert c["resources"][part]["nvidia.com/gpu"] == "8"            # 2 x 8 = the 16 GPUs
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["NCCL_IB_DISABLE"] == "0" and env["NCCL_IB_HCA"] == "mlx5"
        assert "IPC_LOCK" in c["securityContext"]["capabilities"]["add"]


def ascend_two_nodes(stack_values):
    values = stack_values("onprem-ascend")
    glm = values["llm-fleet:models"][0]
    glm.update(source="Eco-Tech/GLM-5.1-w8a8", precision="w8a8", maxNodesPerReplica=2, replicas={"min": 1, "max": 1})
    cfg = parse_config(values, "onprem-ascend", base_dir=STACKS)
    (dep,) = build_plan(cfg).deployments
    return cfg, dep


def test_ascend_multi_node_uses_hccl_and_the_vllm_ascend_launcher(stack_values):
    cfg, dep = ascend_two_nodes(stack_values)
    assert (dep.layout.nodes, dep.layout.dp, dep.interconnect) == (2, 2, "hccs-roce")
    spec = spec_of(dep, cfg, WeightsPlan("hub", hf_id=dep.source, revision="master", hub_endpoint="modelscope"))
    lws = engines.workload(spec)["spec"]["leaderWorkerTemplate"]
    leader = lws["leaderTemplate"]["spec"]["containers"][0]
    worker = lws["workerTemplate"]["spec"]["containers"][0]
    for c in (leader, worker):
        cmd = c["command"]
        assert cmd[cmd.index("--data-parallel-size") + 1] == "2" and cmd[cmd.index("--tensor-parallel-size") + 1] == "8"
        assert cmd[cmd.index("--data-parallel-address") + 1] == "$(LWS_LEADER_ADDRESS)"
        assert "--nnodes" not in cmd and "--master-addr" not in cmd        # not the CUDA multi-node launcher
        assert c["resources"]["limits"]["huawei.com/Ascend910"] == "8"
        assert not [k for k in c["resources"]["limits"] if "efa" in k or "rdma" in k]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
        assert env["HCCL_IF_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env["HCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "eth0"
        assert env["VLLM_USE_MODELSCOPE"] == "True" and "FI_PROVIDER" not in env
    assert "--headless" not in leader["command"]
    cmd = worker["command"]
    assert "--headless" in cmd and cmd[cmd.index("--data-parallel-start-rank") + 1] == "$(LWS_WORKER_INDEX)"


def test_the_engine_downloads_from_the_stacks_mirror(stack_values):
    values = stack_values("existing-cluster")
    values["llm-fleet:storage"] = {"hubEndpoint": "https://hf-mirror.com"}
    cfg = parse_config(values, "existing-cluster", base_dir=STACKS)
    dep = next(d for d in build_plan(cfg).deployments if d.model == "glm-4-5-air")
    spec = spec_of(dep, cfg, WeightsPlan("hub", hf_id=dep.source, revision="main", hub_endpoint="https://hf-mirror.com"))
    env = {e["name"]: e.get("value") for e in engines.container(spec, "single")["env"]}
    assert env["HF_ENDPOINT"] == "https://hf-mirror.com" and "VLLM_USE_MODELSCOPE" not in env


def test_the_ascend_stack_downloads_from_modelscope_on_its_master_branch():
    records = rendered("onprem-ascend")
    (engine,) = [r for r in of_type(records, "kubernetes:apps/v1:Deployment") if r["name"] != "serving-gateway"]
    c = engine["inputs"]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][2] == "Eco-Tech/GLM-5.1-w4a8"
    assert c["command"][c["command"].index("--revision") + 1] == "master"
    assert {"name": "VLLM_USE_MODELSCOPE", "value": "True"} in c["env"]


def test_an_ascend_cluster_is_monitored_through_the_npu_exporter():
    records = rendered("onprem-ascend")
    (npu,) = [r for r in of_type(records, "kubernetes:monitoring.coreos.com/v1:PodMonitor")
              if r["inputs"]["metadata"]["name"] == "npu-exporter"]
    assert npu["inputs"]["spec"]["namespaceSelector"] == {"matchNames": ["npu-exporter"]}
    (rule,) = of_type(records, "kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    exprs = [r["expr"] for g in rule["inputs"]["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert any("npu_chip_info_hbm_used_memory" in e for e in exprs) and not any("DCGM_" in e for e in exprs)
    nvidia = of_type(rendered("existing-cluster"), "kubernetes:monitoring.coreos.com/v1:PodMonitor")
    assert all(r["inputs"]["metadata"]["name"] != "npu-exporter" for r in nvidia)


def test_the_dashboard_gpu_panels_also_read_npu_metrics():
    from infra.serving.monitoring import dashboard_json
    panels = {p["title"]: p for p in json.loads(dashboard_json())["panels"]}
    util = [t["expr"] for t in panels["GPU / NPU utilization (DCGM or Ascend NPU exporter)"]["targets"]]
    mem = [t["expr"] for t in panels["GPU / NPU memory used"]["targets"]]
    assert any("DCGM_FI_DEV_GPU_UTIL" in e for e in util) and any("npu_chip_info_utilization" in e for e in util)
    assert any("npu_chip_info_hbm_total_memory" in e for e in mem)
