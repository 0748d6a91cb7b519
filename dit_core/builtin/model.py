"""The built-in model: an STDiT3 that generates motion fields, its text encoder and codec, in one file.

The shipped file (``weights/charmotion_builtin.safetensors``) holds the
denoiser under ``dit.``, the text encoder under ``text_encoder.`` and a JSON
``config`` in the safetensors metadata: model sizes, the field codec,
sampling defaults and, per action, the words its training prompts used (for
the note on a prompt that names none). It is small enough to live in the
repository, so a fresh install animates a sprite with nothing to download.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, WeightSource, describe_family, detect_family, load_weights
from ..conditioning import FRAME_BY_FRAME
from ..families import BUILTIN, ModelFamily, SamplingProfile
from ..models import STDiT3, STDiT3Config, build_stdit3, resolve_dtype
from ..models.layers import RotaryEmbedding
from ..prompts import preprocess_text
from ..sampling import TextCondition
from .codec import LATENT_CHANNELS, FieldConfig, MotionFieldCodec
from .text_encoder import TextEncoderConfig, TinyTextEncoder
from .vocabulary import no_action_note

BUILTIN_WEIGHTS = Path(__file__).resolve().parent / "weights" / "charmotion_builtin.safetensors"
BUILTIN_NAME = "CharMotion built-in"
FILE_FORMAT = "charmotion-motion-field-1"
FAMILY = "charmotion_builtin"

#: The shipped model's field: 16x16 cells over the 64x64 working frame, 4x4 cells per token (16 tokens a frame);
#: displacements companded by a square root, so blinks and nods are not drowned by runs and falls; decoded
#: smoothed over 0.8 cells, so the generated field's cell-to-cell noise neither shimmers nor tears
SHIPPED_FIELD = FieldConfig(grid=16, displacement_power=0.5, smoothing=0.8)

DEFAULT_CONFIG = {
    "model": dict(depth=4, hidden_size=128, num_heads=4, patch_size=[1, 4, 4], in_channels=LATENT_CHANNELS,
                  context_channels=SHIPPED_FIELD.appearance_channels, caption_channels=64, model_max_length=32,
                  qk_norm=True, pred_sigma=False, pooled_caption=True),
    "text_encoder": dict(dim=64, buckets=4096, max_length=32, layers=2, heads=4, prompt_features=True),
    "field": SHIPPED_FIELD.to_dict(),
    "sampling": dict(steps=20, cfg_scale=1.5, fps=8.0, num_frames=16, max_frames=64, loop_condition_frames=4,
                     motion_scale=10.0, denoise=1.0, timestep_shift=1.0),
    "actions": {},
}


def builtin_profile(config: dict) -> SamplingProfile:
    sampling, grid = config["sampling"], int(config["field"]["grid"])
    return SamplingProfile(
        name=BUILTIN_NAME,
        layout=FRAME_BY_FRAME,
        spatial_factor=1,
        steps=int(sampling["steps"]),
        cfg_scale=float(sampling["cfg_scale"]),
        fps=float(sampling["fps"]),
        image_fps=float(sampling["fps"]),
        use_timestep_transform=False,
        timestep_shift=float(sampling.get("timestep_shift", 1.0)),
        denoise=float(sampling.get("denoise", 1.0)),
        align=None,
        min_video_frames=2,
        max_frames=int(sampling["max_frames"]),
        loop_condition_frames=int(sampling["loop_condition_frames"]),
        frame_hint=f"1 (an image) or 2 and more frames (trained on {int(sampling['num_frames'])})",
        latent_grid=(grid, grid),
        model_frame=int(config["field"]["frame_pixels"]),
        continue_from_latents=True,
        # measured: the asked action is recognised in 82 % of benchmark clips at cfg 1.5, 76 % at 3, about half at 7
        cfg_high=float(sampling.get("cfg_high", 3.0)),
    )


def builtin_family(config: dict) -> ModelFamily:
    """The built-in model's family: a clip is the reference's own size by default, motion strength 0 to its scale."""
    frame = int(config["field"]["frame_pixels"])
    return ModelFamily(key=BUILTIN, name=BUILTIN_NAME, profile=builtin_profile(config),
                       num_frames=int(config["sampling"]["num_frames"]), size=(frame, frame),
                       motion_range=(0.0, float(config["sampling"]["motion_scale"])), keeps_image_size=True,
                       scores=("aesthetic", "motion"))  # trained with these phrases (aesthetic at random), not camera


@dataclass
class BuiltinModel:
    model: STDiT3
    text_encoder: TinyTextEncoder
    codec: MotionFieldCodec
    config: dict
    info: dict = field(default_factory=dict)

    @property
    def profile(self) -> SamplingProfile:
        return self.model.sampling_profile

    @property
    def name(self) -> str:
        return BUILTIN_NAME

    @property
    def motion_range(self) -> tuple[float, float]:
        return self.family.motion_range

    @cached_property
    def family(self) -> ModelFamily:
        return builtin_family(self.config)

    @torch.no_grad()
    def encode_text(self, prompts: list[str] | str, clean: bool = True) -> TextCondition:
        """Encode prompts (already decorated with scores) the way the model was trained: cleaned, then encoded."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.text_encoder([preprocess_text(p) if clean else p for p in prompts])

    def prompt_note(self, prompt: str) -> str | None:
        """A note when ``prompt`` names none of the actions the model learned (see ``vocabulary``)."""
        return no_action_note(prompt, self.config.get("actions") or {})

    def to(self, device=None, dtype=None) -> "BuiltinModel":
        self.model.to(device=device, dtype=dtype)
        self.text_encoder.to(device=device)
        self.codec = self.codec.to(device=device, dtype=dtype)
        return self

    def state_dict(self) -> dict:
        state = {f"dit.{k}": v for k, v in self.model.state_dict().items()}
        state.update({f"text_encoder.{k}": v for k, v in self.text_encoder.state_dict().items()})
        return state


def unknown_settings(config: dict) -> list[str]:
    """The settings in ``config`` that this version does not have, as ``section.key`` (or ``section``)."""
    known = {"model": {f.name for f in fields(STDiT3Config)} - {"extra"},
             "text_encoder": {f.name for f in fields(TextEncoderConfig)},
             "field": {f.name for f in fields(FieldConfig)},
             "sampling": set(DEFAULT_CONFIG["sampling"]),
             "actions": None}  # the action words: any names
    unknown = []
    for section, values in config.items():
        if section not in known:
            unknown.append(section)
        elif known[section] is not None and not isinstance(values, dict):
            unknown.append(f"{section} = {values!r} (a section is a table of settings)")
        elif known[section] is not None:
            unknown += [f"{section}.{key}" for key in values if key not in known[section]]
    return unknown


def merged_config(config: dict | None) -> dict:
    if unknown := unknown_settings(config or {}):
        raise ValueError(f"unknown built-in model setting(s): {', '.join(unknown)}")
    merged = json.loads(json.dumps(DEFAULT_CONFIG))
    for section, values in (config or {}).items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict) and section != "actions":
            merged[section].update(values)
        else:
            merged[section] = values
    field_config = FieldConfig(**merged["field"])
    merged["model"]["context_channels"] = field_config.appearance_channels
    merged["model"]["in_channels"] = LATENT_CHANNELS
    merged["model"]["caption_channels"] = merged["text_encoder"]["dim"]  # the model reads the encoder's captions
    merged["model"]["model_max_length"] = merged["text_encoder"]["max_length"]
    text = merged["text_encoder"]  # the prompt features look actions up in the table of action words
    text["prompt_features"] = bool(text.get("prompt_features")) and bool(merged["actions"])
    return merged


def _build(config: dict, device) -> tuple[STDiT3, TinyTextEncoder, MotionFieldCodec]:
    model = build_stdit3(STDiT3Config.from_dict(config["model"]), device=device)
    model.sampling_profile = builtin_profile(config)
    with torch.device(device):
        text = TinyTextEncoder(TextEncoderConfig(**config["text_encoder"]), config.get("actions") or {})
    return model, text, MotionFieldCodec(FieldConfig(**config["field"]))


def build_builtin(config: dict | None = None, seed: int = 0) -> BuiltinModel:
    """A freshly initialised model (for training)."""
    config = merged_config(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, text, codec = _build(config, "cpu")
        model.initialize_weights()
    return BuiltinModel(model, text, codec, config)


def save_builtin(bundle: BuiltinModel, path: str | os.PathLike, *, dtype: torch.dtype = torch.float16,
                 info: dict | None = None) -> Path:
    """Write the model as one safetensors file (atomically: an existing file is replaced only by a complete one)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in bundle.state_dict().items()}
    metadata = {"config": json.dumps(bundle.config), "format": FILE_FORMAT}
    if info is not None:
        metadata["info"] = json.dumps(info)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # readable by whoever runs ComfyUI, as any model file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_builtin(
    source: "str | os.PathLike | WeightSource | None" = None,
    *,
    dtype: "torch.dtype | str" = torch.float32,
    device: "torch.device | str" = "cpu",
    attention: str = "sdpa",
) -> BuiltinModel:
    """Load the built-in model (``source=None``) or another model file of the same kind."""
    weights = open_model_file(source)
    config = _file_config(weights)
    info = _json_metadata(weights, "info")
    dtype = resolve_dtype(dtype)
    model, text, codec = _build(config, "meta")
    head_dim = model.config.head_dim
    load_weights(model, weights, dtype=dtype, device=device, expected_family=FAMILY,
                 what="the built-in model's denoiser", prefix="dit.",
                 optional={"rope.freqs": lambda: RotaryEmbedding.default_freqs(head_dim)}, ignore=lambda k: False)
    load_weights(text, weights, dtype=torch.float32, device=device, expected_family=FAMILY,
                 what="the built-in model's text encoder", prefix="text_encoder.", ignore=lambda k: False)
    strays = [k for k in weights.keys() if not k.startswith(("dit.", "text_encoder."))]
    if strays:
        raise CheckpointError(f"{weights.name} has keys outside a built-in model file: {', '.join(strays[:5])}")
    model.eval().requires_grad_(False).set_attention_backend(attention)
    text.eval().requires_grad_(False)
    return BuiltinModel(model, text, codec.to(device=device, dtype=dtype), config, info)


def load_builtin_codec(source=None) -> MotionFieldCodec:
    """Only the codec of a model file (the built-in one when ``source`` is None), without the networks."""
    return MotionFieldCodec(FieldConfig(**_file_config(open_model_file(source))["field"]))


def open_model_file(source) -> WeightSource:
    if source is None:
        if not BUILTIN_WEIGHTS.is_file():
            raise CheckpointError(
                f"the built-in model file is missing ({BUILTIN_WEIGHTS}); reinstall the pack or check out the "
                "repository again (the file is part of it)"
            )
        source = BUILTIN_WEIGHTS
    weights = WeightSource.open(source)
    family = detect_family(weights.keys())
    if family != FAMILY:
        raise CheckpointError(
            f"{weights.name} is not a CharMotion built-in model file: it looks like {describe_family(family)}. "
            "Use the Open-Sora loaders for Open-Sora files."
        )
    return weights


def _json_metadata(weights: WeightSource, key: str) -> dict:
    """A JSON object from the file's metadata (broken JSON raises, and ``reading_model_file`` names the file)."""
    value = json.loads(weights.metadata.get(key) or "{}")
    if not isinstance(value, dict):
        raise CheckpointError(f"{weights.name}: its {key!r} metadata is not a JSON object; the file is damaged: "
                              "write it again with the trainer or use the built-in model")
    return value


#: What a setting meant before it existed: a file that lacks it was written without it (not with today's default)
OLDER_FILE_SETTINGS = {
    "text_encoder": {"prompt_features": False},  # files written before the prompt features
    "field": {"displacement_power": 1.0, "smoothing": 0.0},  # files written before companding, before smoothing
}


#: Settings files may still carry that no longer exist: read only at the value that did nothing
RETIRED_FILE_SETTINGS = {
    "field": {"still_below": 0.0},  # a decoder dead zone, superseded by the smoothing
}


def _file_config(weights: WeightSource) -> dict:
    config = _json_metadata(weights, "config") or {}
    for section, settings in OLDER_FILE_SETTINGS.items():
        if isinstance(config.get(section), dict):
            config[section] = {**settings, **config[section]}
    for section, settings in RETIRED_FILE_SETTINGS.items():
        part = config.get(section) if isinstance(config.get(section), dict) else {}
        for key, inert in settings.items():
            if (value := part.pop(key, inert)) != inert:
                raise CheckpointError(f"{weights.name} was written with {section} setting {key} = {value}, which this "
                                      "version no longer has: train the file again (python -m training train) or use "
                                      "the built-in model")
    if unknown := unknown_settings(config):
        raise CheckpointError(f"{weights.name} has settings this version does not know ({', '.join(unknown)}): it was "
                              "written by a newer CharMotion; update the pack to use it, or use the built-in model")
    return merged_config(config)
