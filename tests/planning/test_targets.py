"""Accelerator-aware precisions (msModelSlim w8a8 / w4a8 on Ascend), the refusals between vendors,
multi-node without EFA, and GLM-5.2 planned offline."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning.catalog import load_catalog
from infra.planning.hub import read_local
from infra.planning.modelarch import arch_from_config
from infra.planning.shapes import instance_shape
from infra.planning.sizing import GB, SizingError, plan_deployment, resolve_model
from infra.stack.spec import EngineImage, ShapeSpec
from tests.conftest import FIXTURES
from tests.planning.test_sizing import model, pool

CAT = load_catalog()
ASCEND = EngineImage("vllm", "quay.io/ascend/vllm-ascend", "v0.23.0")
VLLM = EngineImage("vllm", "vllm/vllm-openai", "v0.19.0")
NO_FETCH = {"fetch": lambda *_: pytest.fail("nothing may be fetched")}
HGX = ShapeSpec(name="hgx-h100.8x", accelerator="nvidia", device="h100", count=8, device_memory_gb=80, vcpus=224,
                memory_gb=2048, network_gbps=3200, interconnect="infiniband", rdma_resource="rdma/hca_shared_devices_a",
                provider="onprem", hourly_usd=None, amortized=None, price_source=None)


def plan(spec, itype, *, engine=VLLM, catalog=CAT, on_aws=True):
    resolved = resolve_model(spec, catalog, **NO_FETCH)
    return plan_deployment(spec, spec.placements[0], pool(itype), engine, resolved, catalog,
                           existing_cluster=not on_aws)


def glm51_arch():
    return arch_from_config(dict(CAT.model("glm-5.1").hf_config))


def test_w8a8_and_w4a8_are_sized_from_the_architecture():
    arch, p = glm51_arch(), glm51_arch().params()
    routed = 3 * arch.hidden * arch.moe_intermediate * arch.experts * arch.moe_layers
    assert arch.routed_expert_params() == routed
    w8, w4 = arch.weight_bytes("w8a8"), arch.weight_bytes("w4a8")
    # every linear layer at 1 byte, BF16 embeddings / lm_head / norms / router
    assert w8 == pytest.approx(p.quantizable * 1.0 + p.high_precision * 2)
    # w4a8 halves only the routed experts; attention, dense and shared experts stay at 1 byte
    assert w8 - w4 == pytest.approx(routed * 0.5)
    assert arch.weight_bytes("fp8") > w8 > w4 and 380 < w4 / GB < 410


def test_glm51_w4a8_fits_one_atlas_a2_node_as_the_vllm_ascend_tutorial_runs_it():
    dep = plan(model("Eco-Tech/GLM-5.1-w4a8", "w4a8", max_context=32768, gpu_memory_utilization=0.95),
               "ascend-910b.8x", engine=ASCEND)
    assert (dep.layout.nodes, dep.layout.tp, dep.layout.ep) == (1, 8, True)
    args = dep.engine_args
    assert args[args.index("--quantization") + 1] == "ascend"
    assert dep.weights_gb == pytest.approx(glm51_arch().weight_bytes("w4a8") / GB)


def test_glm51_w8a8_needs_two_a2_nodes_and_says_so():
    with pytest.raises(SizingError) as err:
        plan(model("Eco-Tech/GLM-5.1-w8a8", "w8a8", max_context=32768, gpu_memory_utilization=0.95),
             "ascend-910b.8x", engine=ASCEND)
    text = str(err.value)
    assert "precision w4a8 with source Eco-Tech/GLM-5.1-w4a8" in text and "maxNodesPerReplica: 2" in text
    assert "fp8" not in text                                  # never suggested on 910B
    dep = plan(model("Eco-Tech/GLM-5.1-w8a8", "w8a8", max_context=32768, gpu_memory_utilization=0.95,
                     max_nodes_per_replica=2), "ascend-910b.8x", engine=ASCEND)
    # vllm-ascend's multi-node launcher: one data-parallel rank (TP8) per node, experts over all 16 NPUs
    assert (dep.layout.nodes, dep.layout.tp, dep.layout.dp, dep.layout.gpus) == (2, 8, 2, 16)
    assert dep.interconnect == "hccs-roce"
    routed = glm51_arch().routed_expert_params() * 1.0
    rest = glm51_arch().weight_bytes("w8a8") - routed
    assert dep.memory.weights_per_gpu_gb == pytest.approx((routed / 16 + rest / 8) / GB)


def test_fp8_on_910b_is_refused_with_the_ascend_way_out():
    with pytest.raises(SizingError, match=r"fp8 cannot run on ascend-910b.8x .*no FP8.*"
                                          r"set precision: w4a8 with source Eco-Tech/GLM-5.1-w4a8"):
        plan(model("zai-org/GLM-5.1-FP8", "fp8", max_context=32768), "ascend-910b.8x", engine=ASCEND)


def test_bf16_misfit_on_910b_offers_msmodelslim_not_fp8():
    with pytest.raises(SizingError) as err:
        plan(model("zai-org/GLM-5.1", "bf16", max_context=32768), "ascend-910b.8x", engine=ASCEND)
    assert "precision w4a8 with source Eco-Tech/GLM-5.1-w4a8" in str(err.value)
    assert "precision fp8" not in str(err.value)


def test_w4a8_on_nvidia_is_refused_with_the_fp8_way_out():
    with pytest.raises(SizingError, match=r"w4a8 cannot run on p5en.48xlarge .*Ascend.*"
                                          r"set precision: fp8 with source zai-org/GLM-5.1-FP8"):
        plan(model("Eco-Tech/GLM-5.1-w4a8", "w4a8", max_context=32768), "p5en.48xlarge")


def test_w4a8_asked_of_a_bf16_checkpoint_names_the_quantized_one():
    with pytest.raises(SizingError, match="use source Eco-Tech/GLM-5.1-w4a8"):
        plan(model("zai-org/GLM-5.1", "w4a8", max_context=32768), "ascend-910b.8x", engine=ASCEND)


def test_an_efa_shape_off_aws_is_refused_for_multi_node():
    spec = model("zai-org/GLM-5.1", "bf16", max_context=65536, max_nodes_per_replica=2)
    assert plan(spec, "p5en.48xlarge").interconnect == "efa"           # on EKS: EFA
    with pytest.raises(SizingError, match=r"over EFA.*cluster.existing.*no vpc.amazonaws.com/efa.*"
                                          r"interconnect: infiniband or roce and rdmaResource"):
        plan(spec, "p5en.48xlarge", on_aws=False)


def test_multi_node_on_declared_infiniband_needs_the_rdma_resource():
    catalog = CAT.with_shapes({"hgx-h100.8x": instance_shape(HGX)})
    spec = model("zai-org/GLM-5.1-FP8", "fp8", max_context=131072, gpu_memory_utilization=0.92,
                 max_nodes_per_replica=2)
    dep = plan(spec, "hgx-h100.8x", catalog=catalog, on_aws=False)
    assert (dep.layout.nodes, dep.layout.gpus) == (2, 16)               # the seeds' two HGX H100 servers
    assert (dep.interconnect, dep.rdma_resource) == ("infiniband", "rdma/hca_shared_devices_a")
    bare = CAT.with_shapes({"hgx-h100.8x": instance_shape(dataclasses.replace(HGX, rdma_resource=None))})
    with pytest.raises(SizingError, match=r"shapes.hgx-h100.8x.rdmaResource must name the RDMA device resource"):
        plan(spec, "hgx-h100.8x", catalog=bare, on_aws=False)


def test_a_declared_shape_may_not_shadow_a_catalog_shape():
    with pytest.raises(ValueError, match="are catalog shapes"):
        CAT.with_shapes({"p5.48xlarge": instance_shape(HGX)})


def test_glm52_fp8_plans_on_p5en_offline_with_the_recipe_flags():
    spec = model("zai-org/GLM-5.2-FP8", "fp8", max_context=131072, gpu_memory_utilization=0.92)
    dep = plan(spec, "p5en.48xlarge", engine=EngineImage("vllm", "vllm/vllm-openai", "v0.23.0"))
    assert (dep.layout.nodes, dep.layout.tp) == (1, 8) and 740 < dep.weights_gb < 780
    args = dep.engine_args
    assert args[args.index("--speculative-config.num_speculative_tokens") + 1] == "5"
    assert args[args.index("--tool-call-parser") + 1] == "glm47"
    # the 1M window is the model's; the stack's maxContext is what is served
    assert CAT.model("glm-5.2").max_context == 1048576 and dep.max_context == 131072
    old = plan(spec, "p5en.48xlarge")                                   # vLLM 0.19 predates the recipe
    assert any("no catalog flags for vllm v0.19.0" in n for n in old.notes)


def test_an_msmodelslim_directory_is_sized_from_its_quant_description(tmp_path):
    (tmp_path / "config.json").write_text((FIXTURES / "hf" / "zai-org__GLM-5.1" / "config.json").read_text())
    (tmp_path / "quant_model_description.json").write_text(json.dumps({"model_quant_type": "W4A8_DYNAMIC"}))
    arch = arch_from_config(read_local(tmp_path))
    assert (arch.checkpoint_precision, arch.quant_method) == ("w4a8", "ascend")
    (tmp_path / "quant_model_description.json").write_text(json.dumps({"model_quant_type": "W4A4_DYNAMIC"}))
    with pytest.raises(ValueError, match="W4A4_DYNAMIC.*use a W8A8 or W4A8 checkpoint"):
        arch_from_config(read_local(tmp_path))


def test_fleet_plan_sizes_glm52_fp8_on_p5en_without_the_network(tmp_path, capsys):
    """The CLI, end to end: conftest points the hub at a closed port, so a fetch would fail the plan."""
    import yaml

    from scripts.fleet import main
    from tests.conftest import STACKS

    doc = yaml.safe_load((STACKS / "Pulumi.staging.yaml").read_text())
    cfg = doc["config"]
    glm = next(m for m in cfg["llm-fleet:models"] if "GLM-5.1" in m["source"])
    glm.update(source="zai-org/GLM-5.2-FP8", revision="main")
    cfg.setdefault("llm-fleet:engines", {})["vllm"] = {"version": "v0.23.0"}
    path = tmp_path / "Pulumi.glm52.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["plan", "--stack-file", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    dep = next(d for d in out["deployments"] if d["source"] == "zai-org/GLM-5.2-FP8")
    assert dep["instanceType"] == "p5en.48xlarge" and dep["nodesPerReplica"] == 1 and dep["precision"] == "fp8"
    assert "--speculative-config.num_speculative_tokens" in dep["engineArgs"]


def test_glm52_catalog_config_is_the_published_one_with_indexshare():
    from infra.planning.sizing import _checkpoint_config

    shipped = arch_from_config(json.loads((FIXTURES / "hf" / "zai-org__GLM-5.2-FP8" / "config.json").read_text()))
    entry = CAT.model("glm-5.2")
    assert arch_from_config(_checkpoint_config(entry, "zai-org/GLM-5.2-FP8")) == shipped
    assert shipped.index_layers == 21 and shipped.max_context == 1048576
    # only the 21 "full" layers cache indexer keys; every layer caches the 512 + 64 latent
    assert shipped.kv_bytes_per_token(2) == (512 + 64) * 2 * 78 + 128 * 2 * 21
    glm51 = glm51_arch()
    assert glm51.kv_bytes_per_token(2) == (512 + 64 + 128) * 2 * 78            # unchanged without IndexShare
    p = shipped.params()
    assert abs(p.total / 1e9 - entry.total_params_b) < 1                       # ~753B with the MTP layer
    assert p.total < glm51.params().total                                      # fewer indexers than GLM-5.1


@settings(max_examples=60, deadline=None)
@given(hidden=st.sampled_from([1024, 2048, 4096, 6144]), layers=st.integers(2, 96), dense=st.integers(0, 3),
       experts=st.sampled_from([8, 64, 128, 256]), moe_inter=st.sampled_from([512, 1408, 2048]),
       shared=st.integers(0, 2))
def test_msmodelslim_sizes_follow_the_routed_experts(hidden, layers, dense, experts, moe_inter, shared):
    cfg = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 16, "num_key_value_heads": 4,
           "vocab_size": 32000, "intermediate_size": 4 * hidden, "moe_intermediate_size": moe_inter,
           "n_routed_experts": experts, "n_shared_experts": shared, "num_experts_per_tok": 4,
           "first_k_dense_replace": min(dense, layers - 1)}
    arch = arch_from_config(cfg)
    routed = arch.routed_expert_params()
    assert routed == 3 * hidden * moe_inter * experts * (layers - min(dense, layers - 1))
    assert arch.weight_bytes("w8a8") - arch.weight_bytes("w4a8") == pytest.approx(0.5 * routed)
    assert arch.weight_bytes("w4a8") < arch.weight_bytes("w8a8") < arch.weight_bytes("fp8") < arch.weight_bytes("bf16")
