"""The built-in tiny model: an STDiT3, its text encoder, its codec and sampling profile in one file.

The shipped file (``weights/charmotion_tiny.safetensors``) holds the
denoiser under ``dit.``, the text encoder under ``tiny_text.``, the codec's
fitted basis under ``tiny_codec.`` and a JSON ``config`` in the safetensors
metadata (model sizes, codec, sampling
defaults, training summary). It is small enough to live in the repository,
so a fresh install animates a sprite with nothing to download.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, WeightSource, detect_family, describe_family, load_weights
from ..conditioning import FRAME_BY_FRAME
from ..models import STDiT3, STDiT3Config, build_stdit3, resolve_dtype
from ..models.layers import RotaryEmbedding
from ..pipeline import SamplingProfile
from ..prompts import preprocess_text
from ..sampling import TextCondition
from .codec import PatchPCACodec, SpaceToDepthCodec
from .text_encoder import TextEncoderConfig, TinyTextEncoder

BUILTIN_WEIGHTS = Path(__file__).resolve().parent / "weights" / "charmotion_tiny.safetensors"
BUILTIN_NAME = "CharMotion tiny (built-in)"

DEFAULT_CONFIG = {
    "model": dict(depth=4, hidden_size=160, num_heads=4, patch_size=[1, 2, 2], in_channels=24, caption_channels=64,
                  model_max_length=32, qk_norm=True, pred_sigma=False),
    "text_encoder": dict(dim=64, buckets=4096, max_length=32, layers=2, heads=4),
    "codec": dict(kind="patch_pca", factor=4, components=24, scale=1.0),
    "sampling": dict(steps=20, cfg_scale=1.5, fps=8.0, use_timestep_transform=False, num_frames=16, size=64,
                     max_frames=64, loop_condition_frames=4, motion_scale=10.0, denoise=1.0,
                     palette=256),
}


def tiny_profile(sampling: dict, factor: int) -> SamplingProfile:
    return SamplingProfile(
        name="CharMotion tiny",
        layout=FRAME_BY_FRAME,
        spatial_factor=factor,
        steps=int(sampling["steps"]),
        cfg_scale=float(sampling["cfg_scale"]),
        fps=float(sampling["fps"]),
        image_fps=float(sampling["fps"]),
        use_timestep_transform=bool(sampling["use_timestep_transform"]),
        timestep_shift=float(sampling.get("timestep_shift", 1.0)),
        denoise=float(sampling.get("denoise", 1.0)),
        palette_colors=int(sampling.get("palette", 0)),
        align=None,
        min_video_frames=2,
        max_frames=int(sampling["max_frames"]),
        loop_condition_frames=int(sampling["loop_condition_frames"]),
        frame_hint=f"2 to {int(sampling['max_frames'])} frames (trained on {int(sampling['num_frames'])})",
    )


@dataclass
class TinyBundle:
    model: STDiT3
    text_encoder: TinyTextEncoder
    codec: SpaceToDepthCodec  # or its PatchPCACodec subclass
    config: dict
    info: dict = field(default_factory=dict)

    @property
    def profile(self) -> SamplingProfile:
        return self.model.sampling_profile

    @property
    def name(self) -> str:
        return BUILTIN_NAME

    @torch.no_grad()
    def encode_text(self, prompts: list[str] | str, clean: bool = True) -> TextCondition:
        """Encode prompts (already decorated with scores) the way the model was trained: cleaned, then encoded."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        texts = [preprocess_text(p) if clean else p for p in prompts]
        return self.text_encoder(texts)

    def to(self, device=None, dtype=None) -> "TinyBundle":
        self.model.to(device=device, dtype=dtype)
        self.text_encoder.to(device=device)
        self.codec = self.codec.to(device=device, dtype=dtype)
        return self

    def state_dict(self) -> dict:
        state = {f"dit.{k}": v for k, v in self.model.state_dict().items()}
        state.update({f"tiny_text.{k}": v for k, v in self.text_encoder.state_dict().items()})
        if isinstance(self.codec, PatchPCACodec):
            state.update({f"tiny_codec.{k}": v for k, v in self.codec.state_dict().items()})
        return state


def merged_config(config: dict | None) -> dict:
    merged = json.loads(json.dumps(DEFAULT_CONFIG))
    for section, values in (config or {}).items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def _build(config: dict, device) -> tuple[STDiT3, TinyTextEncoder]:
    model = build_stdit3(STDiT3Config.from_dict(config["model"]), device=device)
    model.sampling_profile = tiny_profile(config["sampling"], int(config["codec"]["factor"]))
    with torch.device(device):
        text = TinyTextEncoder(TextEncoderConfig(**config["text_encoder"]))
    return model, text


def make_codec(config: dict, weights: WeightSource | None = None) -> SpaceToDepthCodec:
    """The codec a bundle config describes (a PCA codec reads its basis from ``weights``)."""
    codec = config["codec"]
    factor, scale = int(codec["factor"]), float(codec["scale"])
    if codec["kind"] == "space_to_depth":
        return SpaceToDepthCodec(factor=factor, scale=scale)
    if codec["kind"] == "patch_pca":
        if weights is None:
            raise ValueError("a PCA codec needs its fitted basis: pass codec=PatchPCACodec.fit(...) (or a "
                             "SpaceToDepthCodec) to build_tiny")
        return PatchPCACodec(weights.tensor("tiny_codec.mean"), weights.tensor("tiny_codec.basis"),
                             weights.tensor("tiny_codec.std"), factor=factor)
    raise CheckpointError(f"unknown codec kind {codec['kind']!r} in the model config")


def build_tiny(config: dict | None = None, seed: int = 0, codec: SpaceToDepthCodec | None = None) -> TinyBundle:
    """A freshly initialised bundle (for training); a fitted ``codec`` sets the latent channels."""
    config = merged_config(config)
    if codec is not None:
        config["model"]["in_channels"] = codec.latent_channels
        config["codec"].update(factor=codec.factor, scale=codec.scale)  # a PCA codec keeps its scale per channel
        if isinstance(codec, PatchPCACodec):
            config["codec"].update(kind="patch_pca", components=codec.latent_channels)
        else:
            config["codec"].update(kind="space_to_depth")
    else:
        codec = make_codec(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, text = _build(config, "cpu")
        model.initialize_weights()
    return TinyBundle(model, text, codec, config)


def save_tiny(bundle: TinyBundle, path: str | os.PathLike, *, dtype: torch.dtype = torch.float16, info: dict | None = None) -> Path:
    """Write the bundle as one safetensors file (atomically; an existing file is replaced only by a complete one)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in bundle.state_dict().items()}
    metadata = {"config": json.dumps(bundle.config), "format": "charmotion-tiny-1"}
    if info is not None:
        metadata["info"] = json.dumps(info)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def builtin_available() -> bool:
    return BUILTIN_WEIGHTS.is_file()


def load_tiny(
    source: "str | os.PathLike | WeightSource | None" = None,
    *,
    dtype: "torch.dtype | str" = torch.float32,
    device: "torch.device | str" = "cpu",
    attention: str = "sdpa",
) -> TinyBundle:
    """Load the built-in model (``source=None``) or another bundle file in the same format."""
    weights = _open_bundle(source)
    config = _bundle_config(weights)
    info = json.loads(weights.metadata.get("info", "{}"))
    dtype = resolve_dtype(dtype)
    model, text = _build(config, "meta")
    codec = make_codec(config, weights)
    head_dim = model.config.head_dim
    load_weights(model, weights, dtype=dtype, device=device, expected_family="charmotion_tiny",
                 what="the tiny model's denoiser", prefix="dit.",
                 optional={"rope.freqs": lambda: RotaryEmbedding.default_freqs(head_dim)},
                 ignore=lambda k: False)
    load_weights(text, weights, dtype=torch.float32, device=device, expected_family="charmotion_tiny",
                 what="the tiny model's text encoder", prefix="tiny_text.", ignore=lambda k: False)
    _check_no_strays(weights)
    model.eval().requires_grad_(False).set_attention_backend(attention)
    text.eval().requires_grad_(False)
    return TinyBundle(model, text, codec.to(device=device, dtype=dtype), config, info)


def _open_bundle(source) -> WeightSource:
    if source is None:
        if not builtin_available():
            raise CheckpointError(
                f"the built-in model file is missing ({BUILTIN_WEIGHTS}); reinstall the pack or check out the "
                "repository again (the file is part of it)"
            )
        source = BUILTIN_WEIGHTS
    weights = WeightSource.open(source)
    family = detect_family(weights.keys())
    if family != "charmotion_tiny":
        raise CheckpointError(
            f"{weights.name} is not a CharMotion tiny model bundle: it looks like {describe_family(family)}. "
            "Use the Open-Sora loaders for Open-Sora files."
        )
    return weights


def load_tiny_codec(source=None, *, dtype: "torch.dtype | str" = torch.float32, device="cpu") -> SpaceToDepthCodec:
    """Only the codec of a bundle (the built-in one when ``source`` is None), without the networks."""
    weights = _open_bundle(source)
    return make_codec(_bundle_config(weights), weights).to(device=device, dtype=resolve_dtype(dtype))


def _bundle_config(weights: WeightSource) -> dict:
    return merged_config(json.loads(weights.metadata.get("config", "{}")))


def _check_no_strays(weights: WeightSource) -> None:
    strays = [k for k in weights.keys() if not k.startswith(("dit.", "tiny_text.", "tiny_codec."))]
    if strays:
        raise CheckpointError(f"{weights.name} has keys outside the tiny model bundle: {', '.join(strays[:5])}")
