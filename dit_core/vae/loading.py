"""Loading ``hpcai-tech/OpenSora-VAE-v1.2`` (one safetensors file) into :class:`OpenSoraVAE`.

The architecture is read from the tensor shapes (level widths, block counts,
latent channels, which levels compress time); only the GroupNorm group count
is invisible in shapes: it comes from an explicit ``config``, a sidecar
``config.json`` describing this model, or the published default (32).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Mapping

import torch

from ..checkpoint import CheckpointError, WeightSource, describe_family, detect_family, load_weights
from .pipeline import DEFAULT_MICRO_BATCH_SIZE, OpenSoraVAE, VideoVAEConfig
from .spatial import SpatialVAEConfig
from .temporal import TemporalVAEConfig
from .tiling import SpatialTiling

FAMILY = "opensora_vae_v1_2"
WHAT = "the Open-Sora VAE v1.2 video VAE"
SPATIAL = "spatial_vae.module."
TEMPORAL = "temporal_vae."
DEFAULT_GROUPS = 32
HINT = (
    "The video VAE loader needs hpcai-tech/OpenSora-VAE-v1.2 (its model.safetensors, with spatial_vae.* and "
    "temporal_vae.* tensors)."
)


def _indices(keys: list[str], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def _section(cfg: Mapping, *names: str) -> dict:
    for name in names:
        value = cfg.get(name)
        if isinstance(value, Mapping):
            return dict(value)
    return {}


def _describes_this_model(cfg: Mapping) -> bool:
    return cfg.get("model_type") == "VideoAutoencoderPipeline" or any(
        k in cfg for k in ("spatial_config", "temporal_config", "vae_2d", "vae_temporal")
    )


def infer_config(source: WeightSource, config: Mapping | None = None) -> tuple[VideoVAEConfig, dict]:
    """Architecture from the file's tensor shapes, checked against ``config`` where it says something.

    Returns the config and the pipeline settings found in ``config``
    (``micro_frame_size``/``micro_batch_size``/``shift``/``scale``).
    """
    config = dict(config or {})
    shapes = source.shapes()
    keys = list(shapes)

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointError(
                f"{source.name} is missing {key!r}, so it is not a complete Open-Sora VAE v1.2 file. "
                "Download it again (compare the size with the source)."
            )
        return shapes[key]

    # -- 2-D VAE
    n_levels = len(_indices(keys, SPATIAL + "encoder.down_blocks."))
    spatial = dict(
        in_channels=shape(SPATIAL + "encoder.conv_in.weight")[1],
        out_channels=shape(SPATIAL + "decoder.conv_out.weight")[0],
        latent_channels=shape(SPATIAL + "decoder.conv_in.weight")[1],
        block_out_channels=tuple(
            shape(f"{SPATIAL}encoder.down_blocks.{i}.resnets.0.conv1.weight")[0] for i in range(n_levels)
        ),
        layers_per_block=len(_indices(keys, SPATIAL + "encoder.down_blocks.0.resnets.")),
        mid_block_attention=any(k.startswith(SPATIAL + "encoder.mid_block.attentions.0.") for k in keys),
        use_quant_conv=SPATIAL + "quant_conv.weight" in shapes,
    )
    # -- temporal VAE
    filters = shape(TEMPORAL + "encoder.conv_in.conv.weight")[0]
    n_blocks = len(_indices(keys, TEMPORAL + "encoder.block_res_blocks."))
    widths = [shape(f"{TEMPORAL}encoder.block_res_blocks.{i}.0.conv1.conv.weight")[0] for i in range(n_blocks)]
    if any(w % filters for w in widths):
        raise CheckpointError(f"{source.name}: temporal VAE level widths {widths} are not multiples of {filters}")
    temporal = dict(
        in_out_channels=shape(TEMPORAL + "encoder.conv_in.conv.weight")[1],
        latent_embed_dim=shape(TEMPORAL + "decoder.conv1.conv.weight")[1],
        embed_dim=shape(TEMPORAL + "post_quant_conv.conv.weight")[1],
        filters=filters,
        num_res_blocks=len(_indices(keys, TEMPORAL + "encoder.block_res_blocks.0.")),
        channel_multipliers=tuple(w // filters for w in widths),
        temporal_downsample=tuple(
            f"{TEMPORAL}encoder.conv_blocks.{i}.conv.weight" in shapes for i in range(n_blocks - 1)
        ),
    )

    given_spatial = _section(config, "spatial_config", "vae_2d")
    given_temporal = _section(config, "temporal_config", "vae_temporal")
    _check_agrees(source, "spatial", spatial, given_spatial)
    _check_agrees(source, "temporal", temporal, given_temporal)
    spatial["norm_num_groups"] = int(given_spatial.get("norm_num_groups", DEFAULT_GROUPS))
    temporal["num_groups"] = int(given_temporal.get("num_groups", DEFAULT_GROUPS))

    settings = {}
    for name in ("micro_frame_size", "shift", "scale"):
        if config.get(name) is not None:
            settings[name] = config[name]
    mbs = config.get("micro_batch_size", given_spatial.get("micro_batch_size"))
    if mbs is not None:
        settings["micro_batch_size"] = int(mbs)

    try:
        cfg = VideoVAEConfig(
            spatial=SpatialVAEConfig(**spatial),
            temporal=TemporalVAEConfig(**temporal),
            **{k: v for k, v in settings.items() if k in ("micro_frame_size", "shift", "scale")},
        )
    except ValueError as exc:
        raise CheckpointError(
            f"{source.name}: cannot build the video VAE it describes ({exc}). The group count of GroupNorm "
            f"is not stored in the weights (default {DEFAULT_GROUPS}); pass config={{'spatial_config': "
            "{'norm_num_groups': …}, 'temporal_config': {'num_groups': …}}, or put the model's config.json "
            "beside the file."
        ) from exc
    return cfg, settings


def _check_agrees(source: WeightSource, part: str, inferred: dict, given: dict) -> None:
    for name, value in inferred.items():
        if name not in given:
            continue
        want = given[name]
        want = tuple(want) if isinstance(want, (list, tuple)) else want
        have = tuple(value) if isinstance(value, tuple) else value
        if isinstance(have, tuple) and isinstance(want, tuple):
            want = tuple(type(h)(w) for h, w in zip(have, want)) if len(want) == len(have) else want
        if want != have:
            raise CheckpointError(
                f"{source.name} does not match its config: the {part} VAE's {name} is {list(want) if isinstance(want, tuple) else want} "
                f"in the config but {list(have) if isinstance(have, tuple) else have} in the weights. "
                "Remove or fix the wrong config (config.json beside the file or the config argument)."
            )


def load_opensora_vae(
    source: "str | os.PathLike | Mapping[str, torch.Tensor] | WeightSource",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    config: Mapping | None = None,
    micro_batch_size: int | None = None,
    micro_frame_size: int | None = None,
    tile: SpatialTiling | int | None = None,
) -> OpenSoraVAE:
    """Load the published video VAE (or one of the same family) from a file or state dict.

    ``config``: optional dict with ``spatial_config``/``vae_2d`` (diffusers
    AutoencoderKL fields) and ``temporal_config``/``vae_temporal``
    (VAE_Temporal fields) plus ``micro_frame_size``, ``shift``, ``scale``; it
    is checked against the tensor shapes. Without it, a sidecar
    ``config.json`` of this model is used when present.
    ``micro_batch_size`` (frames per 2-D VAE call, default 4) and ``tile``
    (spatial tiling: a pixel tile size or a :class:`SpatialTiling`) only trade
    memory for speed; ``micro_frame_size`` (default 17) must be the one the
    latents are meant for.
    """
    source = WeightSource.open(source)
    family = detect_family(source.keys())
    if family != FAMILY:
        raise CheckpointError(
            f"{source.name} looks like {describe_family(family)}, not {describe_family(FAMILY)}. {HINT}"
            + (" An SD/SDXL image VAE cannot encode or decode Open-Sora 1.2 latents; it belongs in an image VAE "
               "loader." if family == "image_vae" else "")
        )
    if config is None:
        sidecar = source.sidecar_config()
        config = sidecar if _describes_this_model(sidecar) else None
    cfg, settings = infer_config(source, config)
    if micro_frame_size is not None:
        cfg = replace(cfg, micro_frame_size=int(micro_frame_size))
    mbs = micro_batch_size if micro_batch_size is not None else settings.get("micro_batch_size", DEFAULT_MICRO_BATCH_SIZE)

    with torch.device("meta"):
        model = OpenSoraVAE(cfg, micro_batch_size=mbs, tiling=tile)
    constants = {
        "scale": lambda: torch.tensor(cfg.scale, dtype=torch.float32).view(1, -1, 1, 1, 1),
        "shift": lambda: torch.tensor(cfg.shift, dtype=torch.float32).view(1, -1, 1, 1, 1),
    }
    load_weights(
        model, source, dtype=dtype, device=device, expected_family=FAMILY, what=WHAT,
        optional=constants, keep_dtype=lambda k: k in constants,
    )
    model.scale = model.scale.float()
    model.shift = model.shift.float()
    return model.eval().requires_grad_(False)


__all__ = ["load_opensora_vae", "infer_config"]
