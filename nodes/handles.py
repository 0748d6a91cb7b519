"""The objects that travel on the pack's own socket types.

=========================  ==================  ==========================================
socket type                class               made by
=========================  ==================  ==========================================
``CHARMOTION_MODEL``       :class:`ModelHandle`      CharMotion Model Loader
``CHARMOTION_VAE``         :class:`VAEHandle`        CharMotion VAE Loader
``CHARMOTION_REFS``        :class:`ReferenceSet`     CharMotion Reference Encode
``CHARMOTION_MOTION``      :class:`MotionControl`    CharMotion Motion Control
``CHARMOTION_LOOP``        :class:`LoopControl`      CharMotion Loop Control
``CHARMOTION_CLIP_INFO``   :class:`ClipInfo`         CharMotion VAE Decode
=========================  ==================  ==========================================

ComfyUI caches node outputs and may hand one object to several nodes, so
nothing here is changed after it is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..dit_core.builtin.codec import FieldConfig, MotionFieldCodec
from ..dit_core.builtin.sprite import Sprite
from ..dit_core.codecs import VideoCodec
from ..dit_core.conditioning import TemporalLayout
from ..dit_core.errors import InvalidInputError
from ..dit_core.families import BUILTIN, OPENSORA, LoadedModel, SamplingProfile  # noqa: F401 (the family keys, for the nodes)
from ..dit_core.pipeline import LoopControl, Reference  # noqa: F401 (LoopControl travels on CHARMOTION_LOOP)
from . import host

MODEL_TYPE = "CHARMOTION_MODEL"
VAE_TYPE = "CHARMOTION_VAE"
REFS_TYPE = "CHARMOTION_REFS"
MOTION_TYPE = "CHARMOTION_MOTION"
LOOP_TYPE = "CHARMOTION_LOOP"
CLIP_INFO_TYPE = "CHARMOTION_CLIP_INFO"

LATENT_KEY = "charmotion"  # pack metadata inside a LATENT dict
SPRITE_KEY = "charmotion_sprite"  # the built-in model's reference sprite inside a LATENT dict (for decoding)
FIELDS_KEY = "charmotion_fields"  # fingerprints of the motion fields the sampler made for that sprite


def field_prints(latents: torch.Tensor) -> tuple[tuple, ...]:
    """A fingerprint of each batch entry of the built-in model's latents: its shape, its sum and a sum weighted by
    position, so another clip's fields, a flip, a rotation or a resize (core latent nodes) do not pass for them."""
    z = latents.detach().to("cpu", torch.float64).flatten(1)
    weights = torch.arange(1, z.shape[1] + 1, dtype=torch.float64) / max(z.shape[1], 1)
    return tuple((tuple(latents.shape[1:]), round(float(row.sum()), 6), round(float((row * weights).sum()), 6))
                 for row in z)


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded denoiser and what the other nodes need to know about it."""

    loaded: LoadedModel  # the denoiser and its family (dit_core.families)
    managed: host.ManagedModule
    attention: str

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def family(self) -> str:
        """BUILTIN for CharMotion built-in model files, OPENSORA for STDiT3 files."""
        return self.loaded.family.key

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def profile(self) -> SamplingProfile:
        return self.loaded.profile

    @property
    def default_size(self) -> tuple[int, int]:
        """(height, width) when neither the sampler nor a reference sets one."""
        return self.loaded.family.size

    @property
    def motion_range(self) -> tuple[float, float]:
        return self.loaded.family.motion_range

    @property
    def text_encoder(self) -> Any:
        """The built-in model (a BuiltinModel: its own text encoder), else None."""
        return self.loaded.builtin

    @property
    def caption_length(self) -> int:
        return int(self.model.y_embedder.y_embedding.shape[0])

    @property
    def caption_channels(self) -> int:
        return int(self.model.y_embedder.y_embedding.shape[1])

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.in_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def __repr__(self) -> str:
        return f"<CharMotion model {self.name!r} ({self.family}, {self.dtype}, attention {self.attention})>"


def check_field(model: ModelHandle, field: FieldConfig | None, what: str) -> None:
    """A built-in model file draws its motion on its own field (grid, pixels, scale, power, smoothing): the warp
    decoder that encodes its references and decodes its clips must be the one of the same file."""
    own = model.text_encoder.codec.config if model.family == BUILTIN and model.text_encoder is not None else None
    if own is None or field is None or field == own:
        return
    theirs, ours = field.to_dict(), own.to_dict()
    differ = ", ".join(f"{name} {theirs[name]:g} there, {ours[name]:g} in the model" for name in ours
                       if theirs[name] != ours[name])
    raise InvalidInputError(
        f"{what} draws motion on another field than the model {model.name!r} makes ({differ}): pick the model's "
        f"own file, {model.name!r}, in CharMotion VAE Loader too (it lists models/charmotion as well as models/vae)"
    )


@dataclass(frozen=True, eq=False)
class VAEHandle:
    """A video VAE (Open-Sora VAE v1.2) or the built-in model's warp decoder (its motion-field codec)."""

    name: str
    family: str
    codec: VideoCodec | MotionFieldCodec  # Open-Sora's VAE, or the built-in model's codec (bound to a sprite per clip)
    layout: TemporalLayout
    managed: host.ManagedModule | None = None  # None for codecs without weights

    @property
    def latent_channels(self) -> int:
        return int(self.codec.latent_channels)

    def load(self, memory_required: int = 0) -> None:
        if self.managed is not None:
            self.managed.load(memory_required)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``[n, 3, F, H, W]`` in [-1, 1] -> latents (float32, on the CPU); posterior means."""
        self.load()
        codec = self.codec
        z = codec.encode(x.to(device=getattr(codec, "device", x.device), dtype=getattr(codec, "dtype", x.dtype)))
        return z.float().cpu()

    @property
    def field(self) -> FieldConfig | None:
        """The motion field a built-in warp decoder draws with (None for Open-Sora's VAE)."""
        return self.codec.config if self.family == BUILTIN else None

    def check_model(self, model: ModelHandle) -> None:
        """Raise a clear error when this VAE does not fit ``model``."""
        if self.family != model.family or self.latent_channels != model.latent_channels:
            raise InvalidInputError(
                f"the VAE {self.name!r} ({self.latent_channels} latent channels) does not fit the model "
                f"{model.name!r} ({model.latent_channels} latent channels): use the built-in warp decoder with the "
                "built-in model and the Open-Sora VAE v1.2 with Open-Sora 1.2"
            )
        check_field(model, self.field, f"the VAE {self.name!r}")

    def __repr__(self) -> str:
        return f"<CharMotion VAE {self.name!r} ({self.family})>"


@dataclass(frozen=True, eq=False)
class ReferenceSet:
    """Encoded reference images, where they go in the clip, and the key colour for transparent export.

    For the built-in model also the sprite whose pixels the clip moves and what the model sees of it
    (``context``)."""

    references: tuple[Reference, ...]
    height: int
    width: int
    family: str
    latent_channels: int
    key_color: tuple[int, int, int] | None = None
    had_alpha: bool = False
    notes: tuple[str, ...] = ()
    sprite: Sprite | None = None  # the built-in model's sprite, whose pixels the clip moves
    context: torch.Tensor | None = None
    field: FieldConfig | None = None  # the built-in warp decoder's motion field the references were encoded in

    def check_model(self, model: ModelHandle) -> None:
        if self.family != model.family or self.latent_channels != model.latent_channels:
            raise InvalidInputError(
                f"the references were encoded with a VAE of {self.latent_channels} latent channels, but the model "
                f"{model.name!r} takes {model.latent_channels}: encode them with the VAE that belongs to the model"
            )
        check_field(model, self.field, "the references' VAE")


@dataclass(frozen=True)
class MotionControl:
    """Open-Sora's score phrases: ``None`` leaves a phrase out of the prompt."""

    motion: float | None = None
    aesthetic: float | None = None
    camera: str | None = None


@dataclass(frozen=True)
class ClipInfo:
    """What the export node needs to know about decoded frames."""

    fps: float
    key_color: tuple[int, int, int] | None = None
    had_alpha: bool = False
    metadata: dict = field(default_factory=dict)
    alpha: torch.Tensor | None = None  # [frames, H, W] opacity of the decoded frames, when the decoder knows it


def given_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A MASK as given, or None for core Load Image's all-zero mask of an image without alpha (64x64 whatever the
    image's size: nothing transparent)."""
    if mask is None or float(mask.detach().abs().max()) == 0.0:
        return None
    return mask
