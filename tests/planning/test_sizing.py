"""The planner: fit, layout, KV budget and engine arguments on the catalog models and shipped configs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.planning.catalog import load_catalog
from infra.planning.modelarch import arch_from_config
from infra.planning.sizing import GB, SizingError, memory_for, plan_deployment, resolve_model
from infra.stack.spec import EngineImage, ModelSpec, Placement, PoolSpec
from tests.conftest import FIXTURES

CAT = load_catalog()
VLLM = EngineImage("vllm", "vllm/vllm-openai", "v0.28.0")
SGLANG = EngineImage("sglang", "lmsysorg/sglang", "v0.5.10")


def pool(itype: str, name: str = "p") -> PoolSpec:
    return PoolSpec(name=name, instance_types=(itype,), capacity="on-demand", min_size=0, max_size=4,
                    desired_size=0, schedule=None, az_ids=(), ami_type="AL2023_x86_64_NVIDIA",
                    capacity_reservation_id=None, disk_gb=200, idle_minutes=None)


def model(source: str, precision: str, engine: str = "vllm", **kw) -> ModelSpec:
    base = dict(name="m", source=source, revision="main", precision=precision, engine=engine,
                placements=(Placement("p", 1, 1),), max_context=None, gpu_memory_utilization=0.9,
                kv_cache_dtype="auto", loading="nvme", queue_target=5, max_nodes_per_replica=1,
                extra_args=(), throughput=None)
    base.update(kw)
    return ModelSpec(**base)


def plan(spec: ModelSpec, itype: str):
    resolved = resolve_model(spec, CAT, fetch=lambda *_: pytest.fail("nothing may be fetched"))
    engine = VLLM if spec.engine == "vllm" else SGLANG
    return plan_deployment(spec, spec.placements[0], pool(itype), engine, resolved, CAT)


def test_glm51_fp8_is_refused_on_p5_with_the_numbers_and_the_way_out():
    with pytest.raises(SizingError) as err:
        plan(model("zai-org/GLM-5.1-FP8", "fp8", max_context=131072), "p5.48xlarge")
    text = str(err.value)
    assert "needs ~756 GB of weights" in text
    assert "p5.48xlarge) has 8x85.9 GB = 687 GB" in text
    assert "use p5en.48xlarge" in text
    assert "maxNodesPerReplica: 2" in text
    assert "int4" not in text                      # no 4-bit GLM-5.1 checkpoint is known: not offered


def test_a_lower_precision_is_offered_with_its_checkpoint():
    with pytest.raises(SizingError, match=r"precision int4 with source Qwen/Qwen3-235B-A22B-GPTQ-Int4 \(~1"):
        plan(model("Qwen/Qwen3-235B-A22B-FP8", "fp8", max_context=32768), "g5.48xlarge")


def test_glm51_fp8_fits_one_p5en_node_with_tp8_and_ep():
    dep = plan(model("zai-org/GLM-5.1-FP8", "fp8", max_context=131072, gpu_memory_utilization=0.92), "p5en.48xlarge")
    assert (dep.layout.nodes, dep.layout.tp, dep.layout.pp, dep.layout.ep) == (1, 8, 1, True)
    assert 740 < dep.weights_gb < 780
    # MLA caches the 512-dim latent + 64 rope + the 128-dim DSA index key, per layer, replicated on every TP rank
    assert dep.kv_bytes_per_token == (512 + 64 + 128) * 2 * 78
    assert dep.memory.kv_bytes_per_token_per_gpu == dep.kv_bytes_per_token
    assert dep.max_tokens_in_flight >= 131072 and dep.max_concurrent_sequences >= 1
    args = dep.engine_args
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    assert "--enable-expert-parallel" in args and args[args.index("--max-model-len") + 1] == "131072"
    assert args[args.index("--tool-call-parser") + 1] == "glm47"
    assert args[args.index("--reasoning-parser") + 1] == "glm45"
    assert "mtp" in args


def test_glm51_bf16_needs_two_p5en_nodes_when_allowed():
    with pytest.raises(SizingError, match="maxNodesPerReplica: 2"):
        plan(model("zai-org/GLM-5.1", "bf16", max_context=65536), "p5en.48xlarge")
    dep = plan(model("zai-org/GLM-5.1", "bf16", max_context=65536, max_nodes_per_replica=2), "p5en.48xlarge")
    assert (dep.layout.nodes, dep.layout.tp, dep.layout.pp) == (2, 8, 2) and dep.multi_node
    sg = plan(model("zai-org/GLM-5.1", "bf16", engine="sglang", max_context=65536, max_nodes_per_replica=2),
              "p5en.48xlarge")
    assert (sg.layout.nodes, sg.layout.tp) == (2, 16)
    assert sg.engine_args[sg.engine_args.index("--tp-size") + 1] == "16"
    assert sg.engine_args[sg.engine_args.index("--ep-size") + 1] == "16"
    # SGLang's static fraction leaves activations and CUDA graphs out: the cookbook's 0.85, once
    assert sg.engine_args.count("--mem-fraction-static") == 1
    assert sg.engine_args[sg.engine_args.index("--mem-fraction-static") + 1] == "0.85"


def test_sglang_static_fraction_is_capped_below_the_vllm_share():
    dep = plan(model("Qwen/Qwen2.5-7B-Instruct", "bf16", engine="sglang", max_context=32768,
                     gpu_memory_utilization=0.92), "p5en.48xlarge")
    assert dep.engine_args[dep.engine_args.index("--mem-fraction-static") + 1] == "0.85"


def test_multi_node_needs_efa():
    with pytest.raises(SizingError, match="no multi-node interconnect"):
        # GLM-4.5-Air FP8 (~111 GB) needs three or four 1x L40S nodes; g6e.xlarge has no EFA
        plan(model("zai-org/GLM-4.5-Air-FP8", "fp8", max_context=8192, max_nodes_per_replica=4), "g6e.xlarge")


def test_llama_8b_bf16_fits_one_l4():
    dep = plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16", max_context=16384), "g6.xlarge")
    assert dep.layout.gpus == 1 and 15 < dep.weights_gb < 17
    assert dep.kv_bytes_per_token == 2 * 8 * 128 * 32 * 2          # GQA: K and V, 8 KV heads x 128, 32 layers
    assert dep.max_tokens_in_flight >= 16384
    with pytest.raises(SizingError, match="maxContext <="):
        plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16", max_context=131072), "g6.xlarge")


def test_unset_context_takes_the_most_that_fits():
    dep = plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16"), "g6.xlarge")
    assert 4096 <= dep.max_context <= dep.max_tokens_in_flight and dep.max_context % 1024 == 0
    assert any("maxContext not set" in n for n in dep.notes)


def test_fp8_kv_cache_doubles_tokens():
    a = plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16", max_context=8192), "g6e.xlarge")
    b = plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16", max_context=8192, kv_cache_dtype="fp8"), "g6e.xlarge")
    assert b.kv_bytes_per_token * 2 == a.kv_bytes_per_token
    assert abs(b.max_tokens_in_flight - 2 * a.max_tokens_in_flight) <= 2
    assert "--kv-cache-dtype" in b.engine_args


def test_precision_rules():
    online = plan(model("meta-llama/Llama-3.1-8B-Instruct", "fp8", max_context=8192), "g6.xlarge")
    assert online.engine_args[online.engine_args.index("--quantization") + 1] == "fp8"
    assert 0.5 < online.weights_gb / plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16", max_context=8192),
                                           "g6.xlarge").weights_gb < 0.6   # embeddings stay BF16
    with pytest.raises(SizingError, match="cannot be served as bf16; use source zai-org/GLM-5.1"):
        plan(model("zai-org/GLM-5.1-FP8", "bf16"), "p5en.48xlarge")
    with pytest.raises(SizingError, match="int4 needs a 4-bit AWQ/GPTQ checkpoint"):
        plan(model("meta-llama/Llama-3.1-8B-Instruct", "int4"), "g6.xlarge")
    int4 = plan(model("Qwen/Qwen3-235B-A22B-GPTQ-Int4", "int4", max_context=32768), "p4de.24xlarge")
    bf16 = plan(model("Qwen/Qwen3-235B-A22B", "bf16", max_context=32768), "p5en.48xlarge")
    assert 0.25 < int4.weights_gb / bf16.weights_gb < 0.30     # 4-bit experts/attention, BF16 embeddings


def test_tp_divides_attention_heads():
    # Qwen2.5-7B has 28 heads and 4 KV heads: TP 8 is never chosen, even on an 8-GPU shape
    dep = plan(model("Qwen/Qwen2.5-7B-Instruct", "bf16", max_context=32768), "g5.48xlarge")
    assert 28 % dep.layout.tp == 0


def test_model_from_a_local_config_json(tmp_path):
    src = FIXTURES / "hf" / "Qwen__Qwen3-30B-A3B"
    spec = model(str(src), "bf16", max_context=32768)
    resolved = resolve_model(spec, CAT, fetch=lambda *_: pytest.fail("local models are not fetched"))
    assert resolved.entry is None and resolved.arch.is_moe and resolved.arch.experts == 128
    dep = plan_deployment(spec, spec.placements[0], pool("g6e.12xlarge"), VLLM, resolved, CAT)
    assert dep.layout.gpus in (2, 4) and dep.layout.ep
    assert 28 < resolved.arch.params().total / 1e9 < 33


def test_hub_model_goes_through_the_fetcher():
    cfg = json.loads((FIXTURES / "hf" / "Qwen__Qwen3-30B-A3B" / "config.json").read_text())
    seen = []
    spec = model("Qwen/Qwen3-30B-A3B", "bf16", max_context=8192)
    resolved = resolve_model(spec, CAT, fetch=lambda hf_id, rev: seen.append((hf_id, rev)) or cfg)
    assert seen == [("Qwen/Qwen3-30B-A3B", "main")] and resolved.arch.experts == 128


def test_catalog_model_arch_matches_the_shipped_hub_config():
    """The catalog's copy of GLM-5.1's config sizes exactly like the real config.json."""
    shipped = arch_from_config(json.loads((FIXTURES / "hf" / "zai-org__GLM-5.1" / "config.json").read_text()))
    catalog = resolve_model(model("zai-org/GLM-5.1", "bf16"), CAT).arch
    assert catalog.params() == shipped.params()
    assert catalog.kv_bytes_per_token(2) == shipped.kv_bytes_per_token(2)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(CAT.instances)), st.sampled_from([0.6, 0.8, 0.9, 0.95]),
       st.sampled_from(["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "zai-org/GLM-4.5-Air"]))
def test_memory_is_conserved_and_monotone(itype, util, source):
    """weights + overhead + KV == utilised memory per GPU, and more GPUs never leave less KV per GPU."""
    shape = CAT.instance(itype)
    arch = resolve_model(model(source, "bf16"), CAT).arch
    weights = arch.weight_bytes("bf16")
    from infra.planning.sizing import Layout
    previous = None
    for n in (1, 2, 4, 8):
        if n > shape.gpu_count or arch.heads % n:
            continue
        mem = memory_for(arch, weights, shape, Layout(1, n, 1, False), util, 2)
        used = mem.weights_per_gpu_gb + mem.overhead_per_gpu_gb + mem.kv_per_gpu_gb
        assert abs(used - shape.gpu_memory_gb * util) < 1e-6
        assert abs(mem.weights_per_gpu_gb * n * GB - weights) < 1
        if previous is not None:
            assert mem.kv_per_gpu_gb >= previous
        previous = mem.kv_per_gpu_gb


def test_replicas_per_node_for_small_models():
    dep = plan(model("meta-llama/Llama-3.1-8B-Instruct", "bf16", max_context=8192), "g6.12xlarge")
    assert dep.layout.gpus == 1 and dep.replicas_per_node == 4          # four 1-GPU replicas share a 4x L4 node
