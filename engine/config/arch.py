"""Architecture beyond the plain dense transformer: mixture-of-experts FFNs, multi-head latent
attention (MLA), sliding-window layers and an explicit ``head_dim``, plus the weight and KV-cache
dtypes a deployment chooses.

``parse_arch`` reads these facts from a HuggingFace ``config.json`` (merged with its
``text_config``) into an ``Arch``; ``ModelConfig`` keeps it and counts parameters and bytes with
it. A config the cost model cannot represent is a ``ConfigError`` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infersweep.errors import ConfigError

#: weight dtypes: bytes per parameter of the linear layers (int4: group-128 fp16 scales;
#: mxfp4: 4-bit values with one 8-bit scale per 32)
WEIGHT_DTYPES = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int4": 0.5 + 2.0 / 128.0,
    "mxfp4": 0.5 + 1.0 / 32.0,
}
#: KV-cache dtypes: bytes per element
KV_DTYPES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}
_DTYPE_ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "float8_e4m3fn": "fp8",
    "w4a16": "int4",
    "awq": "int4",
    "gptq": "int4",
}

#: config keys of architectures the cost model does not represent (key -> what it means)
UNSUPPORTED_KEYS = {
    "index_topk": "DeepSeek sparse attention (DSA)",
    "layers_block_type": "hybrid Mamba/attention layers",
    "attn_layer_period": "hybrid Mamba/attention layers",
    "linear_attn_config": "linear attention layers",
    "attention_chunk_size": "chunked local attention",
    "interleave_moe_layer_step": "interleaved MoE layers (Llama-4 style)",
}
LAYER_TYPES = ("full_attention", "sliding_attention")


def canonical_dtype(value: object, table: dict, field: str) -> str:
    """A dtype name of ``table`` ('auto' passes through); a ConfigError naming the field."""
    if isinstance(value, str):
        low = value.strip().lower()
        low = _DTYPE_ALIASES.get(low, low)
        if low == "auto" or low in table:
            return low
    raise ConfigError(
        "unknown dtype", field=field, value=value, hint="one of: auto, " + ", ".join(table)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Arch:
    """The facts of a config that a plain dense transformer does not have (0 = absent)."""

    head_dim: int = 0  # explicit head_dim (0: hidden / heads)
    # mixture of experts
    n_experts: int = 0
    top_k: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0  # summed width of the always-active shared experts
    n_moe_layers: int = 0
    # multi-head latent attention
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # sliding-window attention
    sliding_window: int = 0
    n_sliding_layers: int = 0
    # checkpoint dtype of the expert weights when it differs from the rest (gpt-oss: mxfp4)
    expert_dtype: str = ""
    checkpoint_weight_dtype: str = ""  # quantization_config of the checkpoint ("" = torch_dtype)
    tie_embeddings: bool = False

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0


def _int(cfg: dict, key: str, source: str, *, allow_zero: bool = True) -> int:
    v = cfg.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError("must be a non-negative integer", file=source, field=key, value=v)
    if not allow_zero and int(v) == 0:
        raise ConfigError("must be a positive integer", file=source, field=key, value=v)
    return int(v)


def _first(cfg: dict, keys: tuple[str, ...], source: str) -> tuple[str, int]:
    for k in keys:
        if cfg.get(k) is not None:
            return k, _int(cfg, k, source)
    return keys[0], 0


def parse_arch(cfg: dict, *, n_layers: int, hidden: int, heads: int, source: str) -> Arch | None:
    """The extras of a (merged) HF config; ``None`` for a plain dense transformer."""
    for key, what in UNSUPPORTED_KEYS.items():
        if cfg.get(key) not in (None, 0, 1, False) or (key == "index_topk" and key in cfg):
            raise ConfigError(f"the cost model cannot represent {what} yet", file=source, field=key)
    kw: dict = {}
    hd = _int(cfg, "head_dim", source)
    if hd and hd * heads != hidden:
        kw["head_dim"] = hd
    # -- mixture of experts -------------------------------------------------------------
    e_key, n_exp = _first(cfg, ("num_local_experts", "num_experts", "n_routed_experts"), source)
    if n_exp:
        k_key, top_k = _first(cfg, ("num_experts_per_tok", "experts_per_token", "moe_topk"), source)
        if top_k < 1 or top_k > n_exp:
            raise ConfigError(
                f"an MoE config needs 1 <= experts per token <= {e_key} ({n_exp})",
                file=source,
                field=k_key,
                value=cfg.get(k_key),
            )
        moe_inter = _int(cfg, "moe_intermediate_size", source) or _int(
            cfg, "intermediate_size", source
        )
        if moe_inter < 1:
            raise ConfigError(
                "an MoE config needs the expert width", file=source, field="moe_intermediate_size"
            )
        shared = _int(cfg, "shared_expert_intermediate_size", source)
        if not shared and _int(cfg, "n_shared_experts", source):
            shared = _int(cfg, "n_shared_experts", source) * moe_inter
        moe_layers = set(range(n_layers))
        first_dense = _int(cfg, "first_k_dense_replace", source)
        moe_layers -= set(range(min(first_dense, n_layers)))
        freq = _int(cfg, "moe_layer_freq", source) or 1
        step = _int(cfg, "decoder_sparse_step", source) or 1
        moe_layers = {i for i in moe_layers if i % freq == 0 and (i + 1) % step == 0}
        only = cfg.get("mlp_only_layers") or []
        if not isinstance(only, list) or not all(isinstance(i, int) for i in only):
            raise ConfigError(
                "must be a list of layer indices", file=source, field="mlp_only_layers", value=only
            )
        moe_layers -= set(only)
        kw.update(
            n_experts=n_exp,
            top_k=top_k,
            moe_intermediate=moe_inter,
            shared_intermediate=shared,
            n_moe_layers=len(moe_layers),
        )
        if len(moe_layers) < n_layers and _int(cfg, "intermediate_size", source) < 1:
            raise ConfigError(
                "dense layers of an MoE model need intermediate_size",
                file=source,
                field="intermediate_size",
            )
    # -- multi-head latent attention ----------------------------------------------------
    if cfg.get("kv_lora_rank"):
        kw["kv_lora_rank"] = _int(cfg, "kv_lora_rank", source)
        kw["q_lora_rank"] = _int(cfg, "q_lora_rank", source)
        for key in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
            kw[key] = _int(cfg, key, source, allow_zero=False)
    # -- sliding window -----------------------------------------------------------------
    window = cfg.get("sliding_window")
    if window is not None and cfg.get("use_sliding_window", True) is not False:
        window = _int(cfg, "sliding_window", source)
        types = cfg.get("layer_types")
        if types is not None:
            if not isinstance(types, list) or len(types) != n_layers:
                raise ConfigError(
                    f"must list one type per layer ({n_layers})",
                    file=source,
                    field="layer_types",
                    value=types,
                )
            bad = sorted({t for t in types if t not in LAYER_TYPES}, key=str)
            if bad:
                raise ConfigError(
                    "the cost model cannot represent this layer type yet",
                    file=source,
                    field="layer_types",
                    value=bad[0],
                    hint="known: " + ", ".join(LAYER_TYPES),
                )
            n_slide = sum(t == "sliding_attention" for t in types)
        elif cfg.get("sliding_window_pattern") or cfg.get("model_type") == "gemma3_text":
            pattern = _int(cfg, "sliding_window_pattern", source) or 6  # Gemma-3's default
            n_slide = sum((i + 1) % pattern != 0 for i in range(n_layers))
        else:
            n_slide = n_layers  # Mistral-style: every layer slides
        if window and n_slide:
            kw.update(sliding_window=window, n_sliding_layers=n_slide)
    # -- checkpoint quantisation --------------------------------------------------------
    qc = cfg.get("quantization_config")
    if isinstance(qc, dict):
        method = str(qc.get("quant_method", "")).lower()
        if method == "mxfp4":
            kw["expert_dtype"] = "mxfp4"
        elif method == "fp8":
            kw["checkpoint_weight_dtype"] = "fp8"
        elif method in ("awq", "gptq"):
            kw["checkpoint_weight_dtype"] = "int4"
        else:
            raise ConfigError(
                "unknown checkpoint quantisation",
                file=source,
                field="quantization_config.quant_method",
                value=qc.get("quant_method"),
                hint="known: fp8, mxfp4, awq, gptq",
            )
    gemma = cfg.get("model_type") in ("gemma3", "gemma3_text")  # ties by default
    kw["tie_embeddings"] = bool(cfg.get("tie_word_embeddings", gemma))
    plain = {k: v for k, v in kw.items() if k != "tie_embeddings"}
    if not plain:
        return None
    return Arch(**kw)


def expected_active_experts(n_tokens, n_experts: int, top_k: int, skew: float = 0.0):
    """Expected number of distinct experts that ``n_tokens`` tokens route to.

    Uniform routing (``skew`` 0): E·(1 − (1 − k/E)^n). With ``skew`` s > 0 the experts'
    popularity follows a Zipf law p_i ∝ i^−s (a measured imbalance), each token choosing expert
    i with probability min(1, k·p_i): Σ_i 1 − (1 − min(1, k·p_i))^n. Works on numpy arrays."""
    import numpy as np

    n = np.asarray(n_tokens, dtype=np.float64)
    if skew == 0.0:
        return n_experts * (1.0 - (1.0 - top_k / n_experts) ** n)
    p = np.arange(1, n_experts + 1, dtype=np.float64) ** (-float(skew))
    q = np.minimum(1.0, top_k * p / p.sum())
    return (1.0 - (1.0 - q[:, None]) ** n.ravel()[None, :]).sum(axis=0).reshape(n.shape)


# --------------------------------------------------------------------------------------------
# Parameters and bytes (``model`` is a ModelConfig)
# --------------------------------------------------------------------------------------------


def weight_bpp(model) -> float:
    """Bytes per parameter of the non-expert linear layers."""
    if model.weight_dtype != "auto":
        return WEIGHT_DTYPES[model.weight_dtype]
    a = model.arch
    if a is not None and a.checkpoint_weight_dtype:
        return WEIGHT_DTYPES[a.checkpoint_weight_dtype]
    return float(model.bytes_per_param)


def expert_bpp(model) -> float:
    """Bytes per parameter of the routed experts (gpt-oss ships them in mxfp4)."""
    a = model.arch
    if model.weight_dtype == "auto" and a is not None and a.expert_dtype:
        return WEIGHT_DTYPES[a.expert_dtype]
    return weight_bpp(model)


def attention_shapes(model) -> list[tuple[int, int]]:
    """(K, N) of the attention projections of one layer (full size, before TP)."""
    d = model.hidden
    a = model.arch
    if a is not None and a.is_mla:
        h = model.n_heads
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        q = [(d, a.q_lora_rank), (a.q_lora_rank, h * qk)] if a.q_lora_rank else [(d, h * qk)]
        return q + [
            (d, a.kv_lora_rank + a.qk_rope_head_dim),
            (a.kv_lora_rank, h * (a.qk_nope_head_dim + a.v_head_dim)),
            (h * a.v_head_dim, d),
        ]
    hd = model.head_dim if a is not None else model.hidden // model.n_heads
    return [
        (d, model.n_heads * hd),
        (d, model.n_kv_heads * hd),
        (d, model.n_kv_heads * hd),
        (model.n_heads * hd, d),
    ]


def ffn_shapes(d: int, width: int) -> list[tuple[int, int]]:
    """gate, up, down of a SwiGLU FFN of the given width."""
    return [(d, width), (d, width), (width, d)] if width > 0 else []


def param_counts(model) -> dict[str, float]:
    """Parameter counts: attention, dense FFN, routed experts (all / active), shared experts,
    router, embeddings; ``total`` and ``active`` (per token) sums. A plain dense model counts
    as the reference does (no embeddings)."""
    a = model.arch
    L = model.n_layers
    d = model.hidden
    attn = L * sum(k * n for k, n in attention_shapes(model))
    if a is None or not a.is_moe:
        dense_ffn = L * 3 * d * model.d_ff
        routed = active_routed = shared = router = 0
    else:
        n_moe = a.n_moe_layers
        dense_ffn = (L - n_moe) * 3 * d * model.intermediate
        one = 3 * d * a.moe_intermediate
        routed = n_moe * a.n_experts * one
        active_routed = n_moe * a.top_k * one
        shared = n_moe * 3 * d * a.shared_intermediate
        router = n_moe * d * a.n_experts
    embed = 0 if a is None else model.vocab * d * (1 if a.tie_embeddings else 2)
    common = attn + dense_ffn + shared + router + embed
    return {
        "attention": float(attn),
        "dense_ffn": float(dense_ffn),
        "routed_experts": float(routed),
        "active_routed_experts": float(active_routed),
        "shared_experts": float(shared),
        "router": float(router),
        "embeddings": float(embed),
        "total": float(common + routed),
        "active": float(common + active_routed),
    }


def weight_bytes(model) -> float:
    """All weight bytes: linear layers at the weight dtype, experts at theirs, embeddings at the
    config dtype."""
    c = param_counts(model)
    linear = c["attention"] + c["dense_ffn"] + c["shared_experts"] + c["router"]
    return (
        linear * weight_bpp(model)
        + c["routed_experts"] * expert_bpp(model)
        + c["embeddings"] * float(model.bytes_per_param)
    )


def deployed(model, weight_dtype, kv_cache_dtype, ep, moe_skew, dp=1):
    """``ModelConfig.deployed``: checked copy with the deployment's choices."""
    import dataclasses

    wd = canonical_dtype(weight_dtype, WEIGHT_DTYPES, "weight_dtype")
    kd = canonical_dtype(kv_cache_dtype, KV_DTYPES, "kv_cache_dtype")
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise ConfigError("must be an integer >= 1", field="ep", value=ep)
    a = model.arch
    if ep > 1 and (a is None or not a.is_moe):
        raise ConfigError(
            f"expert parallelism needs an MoE model; {model.name} has no experts",
            field="ep",
            value=ep,
        )
    if ep > 1 and a.n_experts % ep:
        raise ConfigError(
            f"must divide the {a.n_experts} experts of {model.name}", field="ep", value=ep
        )
    if isinstance(dp, bool) or not isinstance(dp, int) or dp < 1:
        raise ConfigError("must be an integer >= 1", field="dp", value=dp)
    if dp > 1 and (a is None or not a.is_moe):
        raise ConfigError(
            f"attention data parallelism is modelled for MoE models; {model.name} has no "
            "experts (serve dense replicas as separate instances)",
            field="dp",
            value=dp,
        )
    if isinstance(moe_skew, bool) or not isinstance(moe_skew, (int, float)):
        raise ConfigError("must be a number >= 0", field="moe_skew", value=moe_skew)
    if not (math.isfinite(moe_skew) and moe_skew >= 0):
        raise ConfigError("must be a number >= 0", field="moe_skew", value=moe_skew)
    return dataclasses.replace(
        model, weight_dtype=wd, kv_cache_dtype=kd, ep=int(ep), dp=int(dp), moe_skew=float(moe_skew)
    )
