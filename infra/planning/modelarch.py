"""A model's architecture from its Hugging Face `config.json`: parameter counts and KV bytes per token.

Pure. One parser serves catalog entries (which keep the config.json keys verbatim), local directories
and the hub, so a model that is not in the catalog is sized by exactly the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Bytes per parameter of the quantized linear layers; the rest (embeddings, lm_head, norms, router
# gates) stays BF16 in FP8 and AWQ/GPTQ checkpoints.
FP8_BYTES = 1 + 4 / (128 * 128)          # e4m3 weights + one fp32 scale per 128x128 block (DeepSeek-style)
INT4_BYTES = 0.5 + (2 + 0.5) / 128       # 4-bit weights + fp16 scale and 4-bit zero per group of 128
BF16_BYTES = 2
# msModelSlim checkpoints for Ascend (`--quantization ascend`), sized as the quantizer lays them out:
# w8a8 stores every linear layer as int8 (1 byte, per-channel scales < 0.1%); w4a8 stores the routed
# experts as int4 (0.5 byte) and keeps attention, dense and shared-expert MLPs at w8a8 (1 byte).
# Embeddings, lm_head, norms and router gates stay BF16. Sources: vllm-ascend "Using Quantized Model
# Weights" (W8A8 / W4A8 dynamic MoE methods) and a GLM-5.1-w4a8 loader's README ("routed experts use
# ModelSlim W4A8; attention, dense/shared MLP are W8A8"), catalog/sources.yaml msmodelslim-w4a8.
W8_BYTES = 1.0
W4_BYTES = 0.5
ASCEND_SCHEMES = {"w8a8": "W8A8", "w4a8": "W4A8"}        # model_quant_type prefixes (quant_model_description.json)


class ArchError(ValueError):
    """config.json lacks what the planner needs."""


@dataclass(frozen=True)
class Params:
    """Parameter counts by part (not bytes)."""
    embedding: int
    lm_head: int
    attention: int        # all layers, quantizable projections
    dense_mlp: int        # dense layers' MLPs
    experts: int          # routed + shared experts, all MoE layers
    router: int           # MoE gates (kept in BF16)
    norms: int
    mtp: int              # multi-token-prediction layers (quantizable share)

    @property
    def total(self) -> int:
        return (self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts
                + self.router + self.norms + self.mtp)

    @property
    def quantizable(self) -> int:
        return self.attention + self.dense_mlp + self.experts + self.mtp

    @property
    def high_precision(self) -> int:
        return self.embedding + self.lm_head + self.router + self.norms


@dataclass(frozen=True)
class ModelArch:
    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    attention: str               # "mla" | "gqa"
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_dim: int
    qk_rope_dim: int
    v_head_dim: int
    index_head_dim: int          # DeepSeek Sparse Attention indexer key (0: none)
    index_heads: int
    vocab: int
    tied_embeddings: bool
    intermediate: int
    moe_intermediate: int
    experts: int                 # routed experts (0: dense model)
    experts_per_token: int
    shared_experts: int
    moe_layers: int
    mtp_layers: int
    max_context: int
    checkpoint_precision: str    # "bf16" | "fp8" | "int4" | "w8a8" | "w4a8"
    quant_method: str | None
    # DSA IndexShare (GLM-5.2 `indexer_types`): only "full" layers own an indexer and cache its keys;
    # "shared" layers reuse the previous one. None: every layer has its own (GLM-5 / 5.1, DeepSeek-V3.2).
    index_layers: int | None = None

    @property
    def indexed_layers(self) -> int:
        return self.layers if self.index_layers is None else self.index_layers

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def params(self) -> Params:
        h = self.hidden
        if self.attention == "mla":
            qk = self.qk_nope_dim + self.qk_rope_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.heads * qk) if self.q_lora_rank else h * self.heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank * self.heads * (
                self.qk_nope_dim + self.v_head_dim)
            o = self.heads * self.v_head_dim * h
            indexer = 0
            if self.index_head_dim:
                indexer = (self.q_lora_rank or h) * self.index_heads * self.index_head_dim \
                    + h * self.index_head_dim + h * self.index_heads
            attn = q + kv + o + indexer
            shared_indexers = (self.layers - self.indexed_layers) * indexer   # layers that reuse one
        else:
            attn = h * self.heads * self.head_dim * 2 + h * self.kv_heads * self.head_dim * 2
            shared_indexers = 0
        dense_layers = self.layers - self.moe_layers
        expert_block = 3 * h * self.moe_intermediate * (self.experts + self.shared_experts)
        router = h * self.experts
        mtp_block = attn + (expert_block + 2 * h * h if self.is_moe else 3 * h * self.intermediate + 2 * h * h)
        return Params(
            embedding=self.vocab * h,
            lm_head=0 if self.tied_embeddings else self.vocab * h,
            attention=attn * self.layers - shared_indexers,
            dense_mlp=3 * h * self.intermediate * dense_layers,
            experts=expert_block * self.moe_layers,
            router=router * (self.moe_layers + (self.mtp_layers if self.is_moe else 0)),
            norms=2 * h * (self.layers + self.mtp_layers) + h,
            mtp=mtp_block * self.mtp_layers)

    def active_params(self) -> int:
        """Parameters touched per token (routed experts at top-k), for the cost-per-token arithmetic."""
        p = self.params()
        if not self.is_moe:
            return p.total - p.mtp
        per_expert = 3 * self.hidden * self.moe_intermediate
        routed = per_expert * self.experts * self.moe_layers
        active_routed = per_expert * self.experts_per_token * self.moe_layers
        return p.total - p.mtp - routed + active_routed

    def routed_expert_params(self) -> int:
        """Routed experts of the MoE layers (the part w4a8 stores in 4 bits)."""
        return 3 * self.hidden * self.moe_intermediate * self.experts * self.moe_layers

    def weight_bytes(self, precision: str) -> float:
        p = self.params()
        if precision in ASCEND_SCHEMES:
            routed = self.routed_expert_params()
            per_routed = W4_BYTES if precision == "w4a8" else W8_BYTES
            return routed * per_routed + (p.quantizable - routed) * W8_BYTES + p.high_precision * BF16_BYTES
        per = {"bf16": BF16_BYTES, "fp8": FP8_BYTES, "int4": INT4_BYTES}[precision]
        return p.quantizable * per + p.high_precision * BF16_BYTES

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        """KV cache per token for the whole model (all layers, all heads), in bytes."""
        return self.kv_bytes_per_token_per_gpu(kv_dtype_bytes, tp=1, pp=1)

    def kv_bytes_per_token_per_gpu(self, kv_dtype_bytes: int, tp: int, pp: int) -> int:
        """Per GPU: MLA caches the latent on every TP rank (replicated); GQA shards KV heads over TP."""
        layers = math.ceil(self.layers / pp)
        if self.attention == "mla":
            latent = (self.kv_lora_rank + self.qk_rope_dim) * kv_dtype_bytes * layers
            return latent + self.index_head_dim * kv_dtype_bytes * math.ceil(self.indexed_layers / pp)
        per_layer = 2 * math.ceil(self.kv_heads / tp) * self.head_dim * kv_dtype_bytes
        return per_layer * layers


def _first(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def arch_from_config(cfg: Mapping[str, Any], name: str = "model") -> ModelArch:
    """Parse a Hugging Face config.json (text models; multimodal configs keep it under text_config)."""
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = {**cfg["text_config"], "quantization_config": cfg.get("quantization_config")}
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size") if k not in cfg]
    if missing:
        raise ArchError(f"{name}: config.json lacks {', '.join(missing)}; is it a decoder-only text model?")
    hidden, layers, heads = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
    mla = cfg.get("kv_lora_rank") is not None
    experts = int(_first(cfg, "n_routed_experts", "num_experts", "num_local_experts", default=0) or 0)
    if experts:
        if "first_k_dense_replace" in cfg:
            moe_layers = layers - int(cfg["first_k_dense_replace"])
        else:
            step = int(cfg.get("decoder_sparse_step", 1) or 1)
            dense = set(cfg.get("mlp_only_layers") or [])
            moe_layers = sum(1 for i in range(layers) if i not in dense and (i + 1) % step == 0)
    else:
        moe_layers = 0
    quant = cfg.get("quantization_config") or {}
    method = (quant.get("quant_method") or "").lower() or None
    bits = quant.get("bits") or quant.get("w_bit") or (quant.get("config_groups", {}).get("group_0", {})
                                                        .get("weights", {}).get("num_bits"))
    scheme = str(quant.get("model_quant_type") or "").upper()
    if method == "ascend":
        precision = next((k for k, v in ASCEND_SCHEMES.items() if scheme.startswith(v)), "")
        if not precision:
            raise ArchError(f"{name}: msModelSlim model_quant_type {scheme or '(none)'!r} is not one the planner "
                            f"sizes; use a W8A8 or W4A8 checkpoint")
    elif method == "fp8" or (method == "compressed-tensors" and bits == 8):
        precision = "fp8"
    elif method in ("awq", "gptq", "compressed-tensors", "awq_marlin", "gptq_marlin") and bits == 4:
        precision = "int4"
    elif method:
        raise ArchError(f"{name}: quantization {method!r} ({bits} bits) is not one the planner sizes; "
                        "use a BF16, FP8 or 4-bit AWQ/GPTQ checkpoint")
    else:
        precision = "bf16"
    head_dim = int(_first(cfg, "head_dim", default=hidden // heads) or hidden // heads)
    return ModelArch(
        model_type=str(cfg.get("model_type", "unknown")), layers=layers, hidden=hidden, heads=heads,
        kv_heads=int(_first(cfg, "num_key_value_heads", default=heads)), head_dim=head_dim,
        attention="mla" if mla else "gqa",
        q_lora_rank=int(cfg.get("q_lora_rank") or 0), kv_lora_rank=int(cfg.get("kv_lora_rank") or 0),
        qk_nope_dim=int(cfg.get("qk_nope_head_dim") or 0), qk_rope_dim=int(cfg.get("qk_rope_head_dim") or 0),
        v_head_dim=int(cfg.get("v_head_dim") or 0),
        index_head_dim=int(cfg.get("index_head_dim") or 0), index_heads=int(cfg.get("index_n_heads") or 0),
        vocab=int(cfg["vocab_size"]), tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        intermediate=int(cfg.get("intermediate_size") or 0),
        moe_intermediate=int(_first(cfg, "moe_intermediate_size", default=cfg.get("intermediate_size", 0)) or 0)
        if experts else 0,
        experts=experts, experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
        shared_experts=int(_first(cfg, "n_shared_experts", default=0) or 0),
        moe_layers=moe_layers, mtp_layers=int(cfg.get("num_nextn_predict_layers") or 0),
        max_context=int(_first(cfg, "max_position_embeddings", "seq_length", default=4096)),
        checkpoint_precision=precision, quant_method=method,
        index_layers=(sum(1 for t in cfg["indexer_types"] if t == "full")
                      if isinstance(cfg.get("indexer_types"), list | tuple) else None))
