"""What each model family expects, in one place, and the one loader of a denoiser by name or file.

A :class:`ModelFamily` says how to sample a family's models (its
:class:`SamplingProfile`), its default clip (frames and size) and the range
of its motion strength. :func:`load_denoiser` turns ``None`` (the built-in
model), a built-in model file or an Open-Sora 1.2 STDiT3 file into a
:class:`LoadedModel`; the ComfyUI Model Loader and the command line both
use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .conditioning import OPENSORA_VAE_LAYOUT, TemporalLayout

if TYPE_CHECKING:
    import torch

    from .models import STDiT3

BUILTIN = "builtin"
OPENSORA = "opensora12"


@dataclass(frozen=True)
class SamplingProfile:
    """What a model family expects from the sampler (defaults, timestep rules, frame geometry)."""

    name: str  # the model as users know it, for messages: "Open-Sora 1.2", "CharMotion built-in"
    layout: TemporalLayout
    spatial_factor: int
    steps: int = 30
    cfg_scale: float = 7.0
    fps: float = 24.0
    image_fps: float = 120.0
    num_timesteps: int = 1000
    use_timestep_transform: bool = True
    timestep_shift: float = 1.0  # a fixed shift toward high noise when use_timestep_transform is off
    denoise: float = 1.0
    align: int | None = 5
    min_video_frames: int = 17
    max_frames: int = 816
    loop_condition_frames: int = 5
    frame_hint: str = "1 (an image) or 17 and more; multiples of 17 (17, 34, 51, ...) match the VAE's chunks"
    latent_grid: tuple[int, int] | None = None  # one latent grid whatever the output size (the built-in model)
    model_frame: int = 0  # with a latent grid: the frame size in pixels the model is told
    continue_from_latents: bool = False  # later loops continue from the latents, not from re-encoded frames
    cfg_high: float | None = None  # guidance above which the model's clips get worse (a note says so), if known


@dataclass(frozen=True)
class ModelFamily:
    """A family of models: how to sample them and what a clip is when the user does not say."""

    key: str  # BUILTIN or OPENSORA
    name: str  # as users read it
    profile: SamplingProfile
    num_frames: int  # frames of a clip by default
    size: tuple[int, int]  # (height, width) when neither the user nor a reference sets one
    motion_range: tuple[float, float]  # motion strength, low to high
    keeps_image_size: bool = False  # True: a reference image's own size is the clip's size by default
    scores: tuple[str, ...] = ("aesthetic", "motion", "camera")  # the score phrases its prompts were trained with

    def usable_scores(self, aesthetic: float | None, camera: str | None) -> tuple[float | None, str | None, list[str]]:
        """``(aesthetic, camera, notes)``: what of an aesthetic score and a camera motion this family's prompts
        take; what it was not trained with is left out, and noted."""
        notes = []
        if aesthetic is not None and "aesthetic" not in self.scores:
            notes.append(f"{self.name} knows no aesthetic score: it is left out of the prompt")
            aesthetic = None
        if camera not in (None, "none") and "camera" not in self.scores:
            notes.append(f"{self.name} knows no camera motion: '{camera}' is left out of the prompt")
            camera = None
        return aesthetic, camera, notes


OPENSORA12_NAME = "Open-Sora 1.2"
OPENSORA12_PROFILE = SamplingProfile(name=OPENSORA12_NAME, layout=OPENSORA_VAE_LAYOUT, spatial_factor=8)
OPENSORA12 = ModelFamily(key=OPENSORA, name=OPENSORA12_NAME, profile=OPENSORA12_PROFILE, num_frames=51,
                         size=(240, 426), motion_range=(0.0, 100.0))  # 240p landscape, upstream's default


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A denoiser ready to sample, with its family and, for the built-in model, its own text encoder and codec."""

    name: str
    family: ModelFamily
    model: "STDiT3"
    builtin: Any = None  # the built-in model (builtin.model.BuiltinModel): encodes prompts, holds its codec

    @property
    def profile(self) -> SamplingProfile:
        return self.family.profile


def family_of_file(source: "str | os.PathLike | None") -> str:
    """:data:`BUILTIN`, :data:`OPENSORA` or the checkpoint's own family name for a file no loader here takes."""
    if source is None:
        return BUILTIN
    from .builtin.model import FAMILY as BUILTIN_FILE
    from .checkpoint import WeightSource, detect_family

    family = detect_family(WeightSource.open(source).keys())
    return {BUILTIN_FILE: BUILTIN, "stdit3": OPENSORA}.get(family, family)


def load_denoiser(
    source: "str | os.PathLike | None" = None,
    *,
    dtype: "torch.dtype | str" = "fp32",
    device: "torch.device | str" = "cpu",
    attention: str = "sdpa",
    name: str | None = None,
    family: str | None = None,
) -> LoadedModel:
    """The built-in model (``source=None``), a built-in model file or an Open-Sora 1.2 STDiT3 file, loaded.

    ``family``: what :func:`family_of_file` said of ``source`` when the caller already asked (read once)."""
    from .checkpoint import CheckpointError, describe_family, reading_model_file

    family = family or family_of_file(source)
    shown = name or (None if source is None else os.path.basename(os.fspath(source)))
    if family == BUILTIN:
        from .builtin.model import load_builtin

        with reading_model_file(source, "a CharMotion built-in model file"):
            bundle = load_builtin(source, dtype=dtype, device=device, attention=attention)
        return LoadedModel(name=shown or bundle.name, family=bundle.family, model=bundle.model, builtin=bundle)
    if family == OPENSORA:
        from .models import load_stdit3

        model = load_stdit3(source, dtype=dtype, device=device, attention=attention)
        return LoadedModel(name=shown or OPENSORA12.name, family=OPENSORA12, model=model)
    if family == "stdit3_part":
        raise CheckpointError(
            f"{shown} holds only part of an Open-Sora 1.2 STDiT3 (some of its blocks or parts are missing): it looks "
            "like one shard of a split file; give the whole model file (hpcai-tech/OpenSora-STDiT-v3 model.safetensors)"
        )
    raise CheckpointError(
        f"{shown} is {describe_family(family)}, not a denoiser: choose hpcai-tech/OpenSora-STDiT-v3 "
        "(model.safetensors) or a CharMotion built-in model file"
    )
