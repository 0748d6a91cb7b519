"""Build an STDiT3 from a checkpoint: config from tensor shapes, weights straight to dtype/device."""

from __future__ import annotations

import math
import os
import re
from typing import Mapping

import torch

from ..checkpoint import CheckpointError, WeightSource, detect_family, describe_family, load_weights
from .layers import RotaryEmbedding
from .stdit3 import STDiT3, STDiT3Config

PUBLISHED_HEAD_DIM = 72  # STDiT3-XL/2 and 3B/2 both use 72-channel heads
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: "torch.dtype | str") -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().replace("float32", "fp32").replace("float16", "fp16").replace("bfloat16", "bf16")
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


#: Tensors the config is read from; a file without them is not a complete STDiT3.
CONFIG_KEYS = ("x_embedder.proj.weight", "y_embedder.y_embedding", "spatial_blocks.0.mlp.fc1.weight",
               "final_layer.linear.weight")


def infer_stdit3_config(shapes: Mapping[str, tuple], sidecar: Mapping | None = None, *,
                        name: str = "the weights") -> STDiT3Config:
    """Read an STDiT3 config off the tensor shapes of a checkpoint.

    Depth, hidden size, patch size, input/caption channels, caption length,
    MLP ratio, q/k norm and pred_sigma come from shapes. The head count comes
    from the q/k-norm width when present, else from ``sidecar`` (a config.json
    beside the file), else the published head size of 72.
    """
    sidecar = dict(sidecar or {})
    if "x_embedder.proj.weight" not in shapes or not any(k.startswith("spatial_blocks.") for k in shapes):
        family = detect_family(shapes)
        raise CheckpointError(
            f"not an Open-Sora 1.2 STDiT3 denoiser: it looks like {describe_family(family)}. "
            "Load an STDiT3 file (e.g. hpcai-tech/OpenSora-STDiT-v3 model.safetensors) here."
        )
    missing = [k for k in CONFIG_KEYS if k not in shapes]
    if missing:
        raise CheckpointError(
            f"{name} is missing {', '.join(missing)}, which {describe_family('stdit3')} has: the file is "
            "incomplete or another model; download hpcai-tech/OpenSora-STDiT-v3 model.safetensors again"
        )
    hidden, in_channels, *patch = shapes["x_embedder.proj.weight"]
    depth = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(r"spatial_blocks\.(\d+)\.", k)))
    max_length, caption_channels = shapes["y_embedder.y_embedding"]
    qk_norm = "spatial_blocks.0.attn.q_norm.weight" in shapes
    if qk_norm:
        num_heads = hidden // shapes["spatial_blocks.0.attn.q_norm.weight"][0]
    elif "rope.freqs" in shapes:
        num_heads = hidden // (2 * shapes["rope.freqs"][0])
    elif "num_heads" in sidecar:
        num_heads = int(sidecar["num_heads"])
    else:
        num_heads = max(1, hidden // PUBLISHED_HEAD_DIM)
    mlp_ratio = shapes["spatial_blocks.0.mlp.fc1.weight"][0] / hidden
    out_features = shapes["final_layer.linear.weight"][0]
    pred_sigma = out_features == math.prod(patch) * in_channels * 2
    config = dict(
        depth=depth,
        hidden_size=hidden,
        num_heads=num_heads,
        patch_size=tuple(patch),
        in_channels=in_channels,
        caption_channels=caption_channels,
        model_max_length=max_length,
        mlp_ratio=mlp_ratio,
        qk_norm=qk_norm,
        pred_sigma=pred_sigma,
    )
    if "input_sq_size" in sidecar:
        config["input_sq_size"] = int(sidecar["input_sq_size"])
    return STDiT3Config(**config)


def build_stdit3(config: STDiT3Config | Mapping, *, device="meta") -> STDiT3:
    if not isinstance(config, STDiT3Config):
        config = STDiT3Config.from_dict(dict(config))
    with torch.device(device):
        return STDiT3(config)


def load_stdit3(
    source: "str | os.PathLike | Mapping[str, torch.Tensor] | WeightSource",
    *,
    dtype: "torch.dtype | str" = torch.float32,
    device: "torch.device | str" = "cpu",
    config: STDiT3Config | Mapping | None = None,
    attention: str = "sdpa",
) -> STDiT3:
    """Load an STDiT3 denoiser from a file path (.safetensors, or a plain .pt/.pth/.bin) or a state dict.

    The config is inferred from the tensors unless given. Weights are
    materialised once, directly in ``dtype`` on ``device``.
    """
    dtype = resolve_dtype(dtype)
    weights = WeightSource.open(source)
    if config is None:
        config = infer_stdit3_config(weights.shapes(), weights.sidecar_config(), name=weights.name)
    elif not isinstance(config, STDiT3Config):
        config = STDiT3Config.from_dict(dict(config))
    model = build_stdit3(config)
    load_weights(
        model,
        weights,
        dtype=dtype,
        device=device,
        expected_family="stdit3",
        what=f"an STDiT3 denoiser (depth {config.depth}, hidden {config.hidden_size})",
        optional={"rope.freqs": lambda: RotaryEmbedding.default_freqs(config.head_dim)},
        ignore=lambda key: key.startswith("pos_embed") or key == "pos_embed_temporal",
    )
    model.eval().requires_grad_(False)
    model.set_attention_backend(attention)
    return model
