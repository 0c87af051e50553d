"""The catalogs load, every figure cites a dated source, and the model configs add up."""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
import yaml

from infra.planning.catalog import CatalogError, _load_from, load_catalog, version_key
from infra.planning.coldstart import cited_sources

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
CATALOG_FILES = ("sources.yaml", "gpus.yaml", "models.yaml", "api_prices.yaml")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def fixture_config(hf_id: str) -> dict:
    return json.loads((FIXTURES / hf_id.replace("/", "__") / "config.json").read_text())


def param_counts(c: dict) -> tuple[int, int, int]:
    """(total without MTP, active incl. embeddings, MTP layers) from a Hugging Face config.

    Counts the projection matrices (norms, biases of norms and rotary tables are noise at this scale).
    """
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads") or heads
    if "kv_lora_rank" in c:  # MLA: q_a/q_b (or q), kv_a_with_mqa, kv_b, o
        qr, kvr = c.get("q_lora_rank"), c["kv_lora_rank"]
        nope, rope, vdim = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        q = h * qr + qr * heads * (nope + rope) if qr else h * heads * (nope + rope)
        attn = q + h * (kvr + rope) + kvr * heads * (nope + vdim) + heads * vdim * h
        if "index_n_heads" in c:  # DeepSeek Sparse Attention indexer: wq_b, wk, weights_proj
            attn += qr * c["index_n_heads"] * c["index_head_dim"] + h * c["index_head_dim"]
            attn += h * c["index_n_heads"]
    else:  # GQA: q, k, v, o (+ QKV bias)
        hd = c.get("head_dim") or h // heads
        attn = h * heads * hd + 2 * h * kv_heads * hd + heads * hd * h
        if c.get("attention_bias") or c["model_type"] == "qwen2":
            attn += (heads + 2 * kv_heads) * hd
    experts = c.get("n_routed_experts") or c.get("num_experts") or 0
    top_k, shared = c.get("num_experts_per_tok", 0), c.get("n_shared_experts") or 0
    dense_mlp = 3 * h * c["intermediate_size"]
    if experts:  # routed + shared experts (gate/up/down) + router
        mi = c["moe_intermediate_size"]
        n_dense = c.get("first_k_dense_replace", len(c.get("mlp_only_layers") or []))
        moe_total = (experts + shared) * 3 * h * mi + experts * h
        moe_active = (top_k + shared) * 3 * h * mi + experts * h
    else:
        n_dense, moe_total, moe_active = layers, 0, 0
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    common = layers * attn + n_dense * dense_mlp + embeddings
    total = common + (layers - n_dense) * moe_total
    active = common + (layers - n_dense) * moe_active
    mtp = c.get("num_nextn_predict_layers", 0) * (attn + (moe_total or dense_mlp) + 2 * h * h)  # + eh_proj
    return total, active, mtp


def _close(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= tolerance * target


# --- sources and dates -----------------------------------------------------------------------


def test_every_source_has_a_title_url_and_iso_date(catalog):
    for source in catalog.sources.values():
        assert source.title and source.url
        assert datetime.date.fromisoformat(source.retrieved) <= datetime.date(2026, 12, 31)


def test_every_figure_refers_to_a_known_source(catalog):
    cited = set()
    for shape in catalog.instances.values():
        assert shape.sources, shape.name
        cited |= set(shape.sources)
    for model in catalog.models.values():
        assert model.sources, model.key
        cited |= set(model.sources) | {f.source for f in model.engine_flags}
    cited |= {p.source for p in catalog.api_prices}
    cited |= cited_sources()          # catalog/loading.yaml: the cold-start rates
    assert cited <= set(catalog.sources)
    unused = set(catalog.sources) - cited
    assert not unused, f"sources.yaml keys nothing refers to: {sorted(unused)}"


# --- instance shapes -------------------------------------------------------------------------


REQUIRED_SHAPES = ("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p4d.24xlarge", "p4de.24xlarge",
                   "g6e.xlarge", "g6e.12xlarge", "g6e.48xlarge", "g5.xlarge", "g5.12xlarge", "g5.48xlarge",
                   "g6.xlarge", "g6.12xlarge")


@pytest.mark.parametrize("name", REQUIRED_SHAPES)
def test_required_shapes_are_present_and_sane(catalog, name):
    shape = catalog.instance(name)
    assert shape.gpu_vendor == "nvidia" and shape.gpu_count in (1, 4, 8)
    assert 20_000 < shape.gpu_memory_mib < 150_000
    assert 0 < shape.spot_discount < 1
    assert set(shape.on_demand_usd) <= {"us-east-1", "us-east-2", "us-west-2"}
    if name != "p5e.48xlarge":  # the one type no source prices
        assert shape.hourly_usd("us-east-1") > 0


def test_shapes_match_the_karpenter_figures_in_facts(catalog):
    p5, p5en = catalog.instance("p5.48xlarge"), catalog.instance("p5en.48xlarge")
    p4d = catalog.instance("p4d.24xlarge")
    assert (p5.gpu_memory_mib, p5.efa_interfaces, p5.nvme_gb, p5.network_gbps) == (81920, 32, 30400, 3200)
    assert (p5en.gpu_memory_mib, p5en.efa_interfaces) == (144384, 16)
    assert p5en.hourly_usd("us-east-1") == 63.296 and p5.hourly_usd("us-east-1") == 55.04
    assert p4d.hourly_usd("us-east-1") == pytest.approx(21.96, abs=0.01)
    assert catalog.instance("g5.48xlarge").network_gbps == 100
    assert catalog.instance("g6e.xlarge").efa_interfaces == 0
    assert p5en.gpu_memory_gb == pytest.approx(151.4, abs=0.1)
    assert p5en.total_gpu_memory_gb == pytest.approx(8 * p5en.gpu_memory_gb)


def test_hourly_usd_error_names_the_priced_regions(catalog):
    with pytest.raises(CatalogError, match=r"eu-west-1.*us-east-1, us-east-2, us-west-2"):
        catalog.instance("g5.xlarge").hourly_usd("eu-west-1")
    with pytest.raises(CatalogError, match="regions with a price: none"):
        catalog.instance("p5e.48xlarge").hourly_usd("us-east-1")


def test_unknown_names_list_what_is_known(catalog):
    with pytest.raises(CatalogError, match="p5.48xlarge"):
        catalog.instance("p6.48xlarge")
    with pytest.raises(CatalogError, match="glm-5.1"):
        catalog.model("glm-9")


def test_catalog_objects_are_immutable(catalog):
    shape = catalog.instance("p5.48xlarge")
    with pytest.raises(dataclasses.FrozenInstanceError):
        shape.spot_discount = 0.9  # type: ignore[misc]
    with pytest.raises(TypeError):
        shape.on_demand_usd["us-east-1"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        catalog.model("glm-5.1").hf_config["hidden_size"] = 1  # type: ignore[index]


# --- models ----------------------------------------------------------------------------------


MODEL_KEYS = ("glm-5", "glm-5.1", "glm-4.5", "glm-4.6", "glm-4.7", "glm-4.5-air", "deepseek-v3",
              "qwen3-235b-a22b", "qwen2.5-7b-instruct", "llama-3.1-8b-instruct")


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_config_parameter_counts_match_published_sizes(catalog, key):
    model = catalog.model(key)
    total, active, mtp = param_counts(dict(model.hf_config))
    embeddings = model.hf_config["vocab_size"] * model.hf_config["hidden_size"]
    embeddings *= 1 if model.hf_config.get("tie_word_embeddings") else 2
    published_total, published_active = model.total_params_b * 1e9, model.active_params_b * 1e9
    # Published totals sometimes include the MTP layers (GLM-5.1), sometimes not (GLM-5, DeepSeek-V3).
    assert _close(total, published_total, 0.03) or _close(total + mtp, published_total, 0.03), (
        f"{key}: config gives {total / 1e9:.1f}B ({(total + mtp) / 1e9:.1f}B with MTP), "
        f"published {model.total_params_b}B")
    # Published active counts sometimes include the embeddings (DeepSeek, Qwen), sometimes not (GLM).
    assert _close(active, published_active, 0.05) or _close(active - embeddings, published_active, 0.05), (
        f"{key}: config gives {active / 1e9:.1f}B active, published {model.active_params_b}B")
    assert model.max_context <= model.hf_config["max_position_embeddings"]


def test_glm_5_1_count_matches_the_checkpoint_exactly_enough(catalog):
    total, _, mtp = param_counts(dict(catalog.model("glm-5.1").hf_config))
    assert total + mtp == pytest.approx(753_864_139_008, rel=1e-4)  # safetensors total incl. MTP layer


def test_glm5_architecture_matches_facts(catalog):
    cfg = catalog.model("glm-5.1").hf_config
    assert (cfg["num_hidden_layers"], cfg["first_k_dense_replace"], cfg["hidden_size"]) == (78, 3, 6144)
    assert (cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["n_shared_experts"]) == (256, 8, 1)
    assert (cfg["moe_intermediate_size"], cfg["intermediate_size"]) == (2048, 12288)
    assert cfg["vocab_size"] == 154880
    assert cfg["model_type"] == "glm_moe_dsa" and cfg["kv_lora_rank"] == 512


@pytest.mark.parametrize("hf_id", ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
                                   "zai-org/GLM-4.5-Air", "zai-org/GLM-5.1"])
def test_catalog_config_agrees_with_the_real_config_json(catalog, hf_id):
    model, _ = catalog.find_checkpoint(hf_id)
    real = fixture_config(hf_id)
    for key, value in model.hf_config.items():
        assert key in real, f"{hf_id}: {key} is not in the real config.json"
        expected = real[key]
        got = json.loads(json.dumps(value, default=lambda v: dict(v) if hasattr(v, "keys") else list(v)))
        assert got == expected, f"{hf_id}: {key}: catalog {got!r} != config.json {expected!r}"


def test_a_model_outside_the_catalog_is_not_found_but_still_counts(catalog):
    assert catalog.find_checkpoint("Qwen/Qwen3-30B-A3B") is None
    total, active, _ = param_counts(fixture_config("Qwen/Qwen3-30B-A3B"))
    assert _close(total, 30.5e9, 0.02) and _close(active, 3.3e9, 0.05)  # Qwen3-30B-A3B: 30.5B / 3.3B


def test_find_checkpoint_is_case_insensitive(catalog):
    model, checkpoint = catalog.find_checkpoint("ZAI-ORG/glm-5.1-fp8")
    assert model.key == "glm-5.1" and checkpoint.hf_id == "zai-org/GLM-5.1-FP8"
    assert checkpoint.precision == "fp8" and checkpoint.quantization_config["weight_block_size"] == (128, 128)
    assert catalog.find_checkpoint("zai-org/GLM-99") is None


def test_checkpoints_have_valid_precisions_and_an_int4_exists(catalog):
    checkpoints = [c for m in catalog.models.values() for c in m.checkpoints]
    assert {c.precision for c in checkpoints} == {"bf16", "fp8", "int4", "w8a8", "w4a8"}
    int4 = [c for c in checkpoints if c.precision == "int4"]
    assert int4 and all(c.quantization in ("gptq", "awq") for c in int4)
    assert all((c.precision == "bf16") == (c.quantization is None) for c in checkpoints)


# --- engine flags ----------------------------------------------------------------------------


def test_version_key_compares_numerically():
    assert version_key("0.19.0") > version_key("0.9.2")
    assert version_key("v0.10.1.1") > version_key("0.10.1") == version_key("0.10.1.0")
    assert version_key("0.19.1rc1") == version_key("0.19.1")
    with pytest.raises(CatalogError):
        version_key("latest")


@pytest.mark.parametrize(("version", "tool_parser"), [
    ("0.9.2", None),  # older than every entry
    ("0.10.0", "glm4_moe"),
    ("0.10.1", "glm4_moe"),
    ("0.10.1.1", "glm45"),
    ("v0.11.0", "glm45"),
    ("0.19.0", "glm45"),  # "0.19" sorts after "0.9", not before it
])
def test_engine_flags_pick_the_entry_for_the_version(catalog, version, tool_parser):
    flags = catalog.engine_flags("glm-4.5", "vllm", version)
    if tool_parser is None:
        assert flags is None
    else:
        assert flags.args[flags.args.index("--tool-call-parser") + 1] == tool_parser


def test_glm_5_1_flags_follow_the_recipe(catalog):
    assert catalog.engine_flags("glm-5.1", "vllm", "0.9.0") is None
    # glm_moe_dsa needs transformers >= 5.4: vLLM 0.19.0 pins transformers < 5 and cannot load it
    assert catalog.engine_flags("glm-5.1", "vllm", "0.19.0") is None
    early = catalog.engine_flags("glm-5.1", "vllm", "0.19.1")
    assert early.min_version == "0.19.1" and "--tool-call-parser" in early.args
    assert "--speculative-config.method" not in early.args       # MTP breaks streamed tool calls before 0.20.0
    flags = catalog.engine_flags("glm-5.1", "vllm", "0.28.0")
    assert flags.min_version == "0.20.0" and flags.source in catalog.sources
    args = " ".join(flags.args)
    assert "--tool-call-parser glm47" in args and "--reasoning-parser glm45" in args
    assert "--speculative-config.num_speculative_tokens 3" in args
    assert not any(a.startswith(("--tensor-parallel", "--max-model-len", "--gpu-memory")) for a in flags.args)
    sglang = catalog.engine_flags("glm-5.1", "sglang", "0.5.10")
    assert "EAGLE" in sglang.args and catalog.engine_flags("glm-5.1", "sglang", "0.5.9") is None
    assert catalog.engine_flags("glm-4.7", "vllm", "0.13.0") is None  # glm47 parser arrived in 0.14.0
    assert catalog.engine_flags("glm-5.1", "trtllm", "1.0") is None


# --- API prices ------------------------------------------------------------------------------


def test_api_prices_sorted_cheapest_first_with_computed_blend(catalog):
    prices = catalog.api_prices_for("glm-5.1")
    blends = [p.blended_usd_per_m for p in prices]
    assert blends == sorted(blends) and prices[0].provider == "deepinfra" and blends[0] == 0.74
    zai = next(p for p in prices if p.provider == "z.ai")
    assert zai.blended_usd_per_m == pytest.approx((3 * 0.98 + 3.08) / 4)
    assert all(p.as_of[:4].isdigit() for p in catalog.api_prices)
    assert catalog.api_prices_for("llama-3.1-8b-instruct") == ()


# --- the loader rejects broken data ----------------------------------------------------------


def _broken_copy(tmp_path: Path, name: str, mutate) -> Path:
    for file in CATALOG_FILES:
        with resources.as_file(resources.files("infra.planning.catalog") / file) as src:
            shutil.copy(src, tmp_path / file)
    data = yaml.safe_load((tmp_path / name).read_text())
    mutate(data)
    (tmp_path / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path


def _set(path, value):
    def mutate(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


@pytest.mark.parametrize(("name", "mutate", "message"), [
    ("gpus.yaml", _set(["p5.48xlarge", "gpuMemoryGiB"], 80),
     r"gpus.yaml: p5.48xlarge: unknown key.*gpuMemoryGiB"),
    ("gpus.yaml", _set(["p5.48xlarge", "onDemandUSD", "us-east-1"], -1),
     r"gpus.yaml: p5.48xlarge.onDemandUSD.us-east-1: -1 is out of range"),
    ("gpus.yaml", _set(["g5.xlarge", "sources"], ["aws-website"]),
     r"g5.xlarge.sources: source 'aws-website'"),
    ("gpus.yaml", _set(["g5.xlarge", "spotDiscount"], 1.5), r"g5.xlarge.spotDiscount"),
    ("models.yaml", _set(["glm-5.1", "checkpoints", 1, "precision"], "int8"),
     r"models.yaml: glm-5.1.checkpoints\[1\].precision: 'int8' is not one of"),
    ("models.yaml", _set(["glm-5.1", "engines", "vllm", 0, "source"], "nowhere"),
     r"glm-5.1.engines.vllm\[0\].source: source 'nowhere' is not in sources.yaml"),
    ("models.yaml", _set(["glm-5.1", "sources"], []), r"glm-5.1.sources: needs at least one source"),
    ("models.yaml", _set(["glm-5", "engines", "tgi"], []), r"glm-5.engines: unknown key.*tgi"),
    ("api_prices.yaml", _set(["prices", 0, "model"], "glm-9"), r"prices\[0\].model: 'glm-9' is not a model"),
    ("api_prices.yaml", _set(["prices", 0, "blendedUSDPerM"], -0.5), r"prices\[0\].blendedUSDPerM"),
    ("sources.yaml", _set(["karpenter-pricing", "retrieved"], "July 2026"), r"karpenter-pricing.retrieved"),
])
def test_loader_rejects_broken_data_naming_file_and_key(tmp_path, name, mutate, message):
    with pytest.raises(CatalogError, match=message):
        _load_from(_broken_copy(tmp_path, name, mutate))


def test_loader_reports_a_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="sources.yaml: cannot read"):
        _load_from(tmp_path)


def test_load_catalog_is_cached():
    assert load_catalog() is load_catalog()
