"""``generate()``: the one path from conditions and references to a clip.

The ComfyUI nodes, the command line and the tests all call it. It takes an
already-encoded caption (``TextCondition``; the text encoder is the caller's
business: T5 through ComfyUI, or the built-in model's own), optional
reference latents and the controls, and runs rectified-flow sampling, loop
extension and the seamless-loop option, decoding with the codec when one is
given.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from . import checks
from .conditioning import OPENSORA_VAE_LAYOUT, Placement, TemporalLayout, apply_placements
from .errors import InvalidInputError
from .memory import check_generation
from .sampling import TextCondition, rectified_flow_timesteps, sample_rectified_flow


@dataclass(frozen=True)
class SamplingProfile:
    """What a model family expects from the sampler (defaults, timestep rules, frame geometry)."""

    name: str
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


OPENSORA12 = SamplingProfile(name="opensora12", layout=OPENSORA_VAE_LAYOUT, spatial_factor=8)


def profile_of(model) -> SamplingProfile:
    return getattr(model, "sampling_profile", None) or OPENSORA12


@dataclass
class Reference:
    """Reference latents ``[C, Tr, h, w]`` placed at output frame ``frame`` (negative: from the end).

    ``strength`` 1 keeps the frame exactly; lower values let the model change
    it (the frame is re-noised once sampling reaches ``1 - strength``).
    """

    latents: torch.Tensor
    frame: int = 0
    strength: float = 1.0
    source: int = 0
    length: int = 1

    def __post_init__(self):
        if self.latents.dim() == 5 and self.latents.shape[0] == 1:
            self.latents = self.latents[0]
        if self.latents.dim() != 4:
            raise InvalidInputError(f"reference latents must be [C, T, h, w]; got shape {list(self.latents.shape)}")
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidInputError(f"reference strength {self.strength} must be between 0 and 1")


@dataclass
class GenerationResult:
    video: torch.Tensor | None  # [n, 3, F, H, W] in about [-1, 1], float32 on the CPU (None without a codec)
    latents: torch.Tensor  # the clip's latents, loops joined with their overlaps dropped
    loop_latents: list[torch.Tensor]
    num_frames: int
    height: int
    width: int
    fps: float
    seed: int
    notes: list[str] = field(default_factory=list)


ProgressFn = Callable[[int, int, torch.Tensor], None]


def check_frames(profile: SamplingProfile, num_frames: int) -> None:
    if num_frames < 1 or num_frames > profile.max_frames or 1 < num_frames < profile.min_video_frames:
        raise InvalidInputError(
            f"{profile.name} cannot make a clip of {num_frames} frames: use {profile.frame_hint} "
            f"(at most {profile.max_frames})"
        )


def plan_size(profile: SamplingProfile, height: int, width: int, notes: list[str]) -> tuple[int, int]:
    """Latent size for a pixel size; sizes that do not divide are rounded down (and noted)."""
    if profile.latent_grid is not None:
        if height < 1 or width < 1:
            raise InvalidInputError(f"size {width}x{height} is empty: width and height must be at least 1 pixel")
        return profile.latent_grid
    factor = profile.spatial_factor
    if height < factor or width < factor:
        raise InvalidInputError(f"size {width}x{height} is too small: width and height must be at least {factor} pixels")
    h, w = height // factor, width // factor
    if (h * factor, w * factor) != (height, width):
        notes.append(
            f"size {width}x{height} is not a multiple of {factor}: the output is {w * factor}x{h * factor} "
            "(rounded down, as the model's VAE does)"
        )
    return h, w


def check_memory(model, profile: SamplingProfile | None = None, *, num_frames: int, height: int, width: int,
                 cfg_scale: float | None = None, codec=None, batch_size: int = 1, seamless: bool = False,
                 decode: bool = True, batch_cfg: bool = True, loops: int = 1):
    """Refuse a clip that does not fit in the memory of the model's device (see :mod:`memory`)."""
    profile = profile or profile_of(model)
    lat_h, lat_w = plan_size(profile, height, width, [])
    cfg = profile.cfg_scale if cfg_scale is None else float(cfg_scale)
    return check_generation(
        model, device=getattr(model, "device", torch.device("cpu")),
        latent_frames=profile.layout.latent_frames(num_frames + int(seamless)), latent_height=lat_h, latent_width=lat_w,
        batch=batch_size * (2 if cfg != 1.0 and batch_cfg else 1), spatial_factor=profile.spatial_factor,
        num_frames=num_frames, codec=codec, decode=decode, size=(int(width), int(height)), loops=loops,
    )


def _conditioning_tensor(value: float, n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Per-sample size/fps values in the model dtype, as upstream passes them (bf16 rounds e.g. 854 to 856)."""
    emulate = dtype if dtype == torch.bfloat16 else torch.float32
    return torch.full((n,), float(value), dtype=emulate, device=device)


def generate(
    model,
    conditions: TextCondition | Sequence[TextCondition],
    *,
    codec=None,
    negative: TextCondition | None = None,
    references: Sequence[Reference] = (),
    mask_strategy: Sequence[Placement] = (),
    strategy_references: Sequence[torch.Tensor] = (),
    num_frames: int = 51,
    height: int = 240,
    width: int = 426,
    fps: float | None = None,
    seed: int = 0,
    steps: int | None = None,
    cfg_scale: float | None = None,
    denoise: float | None = None,
    loops: int = 1,
    condition_frames: int | None = None,
    loop_edit: float = 0.0,
    seamless: bool = False,
    context: torch.Tensor | None = None,
    batch_size: int = 1,
    align: int | None | str = "auto",
    profile: SamplingProfile | None = None,
    batch_cfg: bool = True,
    decode: bool = True,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Sample a clip (or ``loops`` chained clips) and decode it with ``codec``.

    ``conditions``: one caption, or one per loop (the last one repeats).
    ``references``: reference latents and where they go (first frame = 0,
    last = -1, several = in-betweening). ``mask_strategy`` /
    ``strategy_references``: Open-Sora's placement groups, for experts.
    ``loops`` > 1 chains clips: each later clip is conditioned on the last
    ``condition_frames`` latent frames of the previous one (re-encoded from its
    decoded pixels, as upstream does) and the overlap is dropped when joining.
    ``context``: what a model with context channels sees beside its latents
    (the built-in model: the reference's appearance). ``seamless`` makes the
    end flow back into the first frame: one extra
    latent frame after the clip is held at the first frame's latent (the
    frame-0 reference, or the first frame generated) and dropped after
    decoding. ``denoise`` < 1 starts the free frames from their nearest
    reference frame noised to ``denoise`` of the schedule instead of from pure
    noise, and runs only that part of the schedule: the character stays closer
    to the reference, with less motion (1 = from pure noise, as Open-Sora).
    ``progress(step, total, latents)`` runs after every step;
    ``cancel()`` before every step (True stops with ``GenerationCancelled``).
    Noise comes from a CPU generator seeded with ``seed``: the same seed gives
    the same clip on the same device and attention backend, and no global RNG
    state is touched.
    """
    profile = profile or profile_of(model)
    notes: list[str] = []
    steps = profile.steps if steps is None else int(steps)
    cfg_scale = profile.cfg_scale if cfg_scale is None else float(cfg_scale)
    checks.whole("steps", steps, 1, checks.MAX_STEPS)
    checks.number("CFG scale", cfg_scale, 0)
    checks.seed(seed)
    denoise = profile.denoise if denoise is None else float(denoise)
    if not 0.0 < denoise <= 1.0:
        raise InvalidInputError(f"denoise must be above 0 and at most 1 (got {denoise}); 1 starts from pure noise")
    checks.whole("number of loops", loops, 1, checks.MAX_LOOPS)
    check_frames(profile, num_frames)
    if num_frames == 1 and (loops > 1 or seamless):
        raise InvalidInputError("a single image cannot loop: use a video length for loops or a seamless loop")
    if loops > 1 and codec is None and not profile.continue_from_latents:
        raise InvalidInputError("loops > 1 need the VAE: each loop re-encodes the end of the previous clip")
    lat_h, lat_w = plan_size(profile, height, width, notes)
    layout = profile.layout
    if seamless and num_frames % layout.frames_per_chunk:
        raise InvalidInputError(
            f"a seamless loop needs a whole number of {layout.frames_per_chunk}-frame chunks; "
            f"use {num_frames // layout.frames_per_chunk * layout.frames_per_chunk or layout.frames_per_chunk} "
            f"or {(num_frames // layout.frames_per_chunk + 1) * layout.frames_per_chunk} frames"
        )
    align = profile.align if align == "auto" else align
    cfl = profile.loop_condition_frames if condition_frames is None else int(condition_frames)
    base_latents = layout.latent_frames(num_frames)
    if loops > 1:
        if not 1 <= cfl < base_latents or cfl % layout.latents_per_chunk:
            raise InvalidInputError(
                f"condition frames must be a multiple of {layout.latents_per_chunk} latent frames and shorter than "
                f"the clip ({base_latents} latent frames); got {cfl}"
            )
    conditions = [conditions] if isinstance(conditions, TextCondition) else list(conditions)
    if not conditions:
        raise InvalidInputError("no text conditioning given: connect or encode a prompt")
    fps = (profile.image_fps if num_frames == 1 else profile.fps) if fps is None else checks.number("fps", fps, 0, low_open=True)

    dtype = getattr(model, "dtype", torch.float32)
    device = getattr(model, "device", torch.device("cpu"))
    channels = model.config.in_channels
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    ratio_dtype = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    n = int(batch_size)
    check_memory(model, profile, num_frames=num_frames, height=height, width=width, cfg_scale=cfg_scale, codec=codec,
                 batch_size=n, seamless=seamless, decode=decode or loops > 1, batch_cfg=batch_cfg, loops=loops)
    told_h, told_w = (profile.model_frame, profile.model_frame) if profile.latent_grid else (height, width)
    kwargs = dict(
        fps=_conditioning_tensor(fps, n, dtype, device),
        height=_conditioning_tensor(told_h, n, dtype, device),
        width=_conditioning_tensor(told_w, n, dtype, device),
    )
    if context is not None:
        kwargs["context"] = context.to(device=device, dtype=dtype)

    placements = [
        Placement(reference=i, source=r.source, target=layout.latent_index(r.frame, num_frames), length=r.length,
                  edit=1.0 - r.strength)
        for i, r in enumerate(references)
    ]
    ref_latents = [r.latents.to(device) for r in references]
    strategy_offset = len(ref_latents)
    ref_latents += [t.to(device) for t in strategy_references]
    placements += [replace(p, reference=p.reference + strategy_offset) for p in mask_strategy]
    first_frame_ref = next((r for r in references if layout.latent_index(r.frame, num_frames) == 0 and r.source == 0), None)

    total_steps = steps * loops
    videos, loop_latents = [], []
    previous_video = None
    for loop in range(loops):
        last = loop == loops - 1
        frames_k = num_frames + (1 if seamless and last else 0)
        latents_k = layout.latent_frames(frames_k)
        z = torch.randn((n, channels, latents_k, lat_h, lat_w), generator=generator, dtype=torch.float32).to(device)
        loop_refs = list(ref_latents)
        loop_places = [p for p in placements if p.loop == loop]
        if loop > 0:
            if profile.continue_from_latents:
                tail = loop_latents[-1][:, :, -cfl:]
            else:
                tail = _encode_tail(codec, previous_video, cfl, layout)
            loop_refs.append(tail)
            loop_places.append(Placement(reference=len(loop_refs) - 1, source=-cfl, target=0, length=cfl, edit=loop_edit, loop=loop))
        tie = None
        if seamless and last:
            anchor = None
            if first_frame_ref is not None:
                anchor = first_frame_ref.latents[:, :1].to(device)
            elif loops > 1 and profile.continue_from_latents:
                anchor = loop_latents[0][:, :, :1]
            elif loops > 1:
                anchor = _encode_first_frame(codec, videos[0])
            if anchor is not None:
                loop_refs.append(anchor)
                loop_places.append(Placement(reference=len(loop_refs) - 1, target=latents_k - 1, length=1, loop=loop))
            else:
                tie = (0, latents_k - 1)
        frame_mask = apply_placements(z, loop_refs, loop_places, loop=loop, align=align)
        timesteps = rectified_flow_timesteps(
            steps, num_timesteps=profile.num_timesteps, use_timestep_transform=profile.use_timestep_transform,
            height=told_h, width=told_w, num_frames=frames_k, ratio_dtype=ratio_dtype, shift=profile.timestep_shift,
        )
        if denoise < 1.0:
            if frame_mask is not None and bool((frame_mask < 1).any()):
                timesteps = timesteps * denoise
                z = start_from_references(z, frame_mask, float(timesteps[0]) / profile.num_timesteps)
            elif loop == 0:
                notes.append(f"denoise {denoise:g} needs a reference frame to start from: sampled from pure noise")
        cond = conditions[min(loop, len(conditions) - 1)]
        offset = loop * steps
        step_progress = None if progress is None else (lambda i, total, z_, o=offset: progress(o + i, total_steps, z_))
        z = sample_rectified_flow(
            model, z, _on(cond, device, n), timesteps, cfg_scale=cfg_scale,
            uncond=None if negative is None else _on(negative, device, n), frame_mask=frame_mask,
            model_kwargs=kwargs, num_timesteps=profile.num_timesteps, generator=generator,
            batch_cfg=batch_cfg, progress=step_progress, cancel=cancel, tie_frames=tie,
        )
        if seamless and last:
            z = z[:, :, : layout.latent_frames(num_frames)]
        loop_latents.append(z)
        if codec is not None and (decode or not (last or profile.continue_from_latents)):  # later loops may re-encode
            video = codec.decode(z.to(getattr(codec, "dtype", z.dtype)), num_frames).float()
            previous_video = video
            videos.append(video if loop == 0 else video[:, :, layout.chunk_frames(cfl):])

    joined = torch.cat([loop_latents[0]] + [z[:, :, cfl:] for z in loop_latents[1:]], dim=2)
    video = torch.cat(videos, dim=2).cpu() if videos and decode else None
    total_frames = clip_frames(layout, num_frames, loops, cfl)
    out_h, out_w = (height, width) if profile.latent_grid else (lat_h * profile.spatial_factor, lat_w * profile.spatial_factor)
    return GenerationResult(
        video=video, latents=joined, loop_latents=loop_latents, num_frames=total_frames,
        height=out_h, width=out_w, fps=fps, seed=int(seed), notes=notes,
    )


def start_from_references(z: torch.Tensor, frame_mask: torch.Tensor, level: float) -> torch.Tensor:
    """Free frames (mask 1) become their nearest reference frame (mask < 1) noised to ``level`` (0..1).

    ``z`` ``[n, C, T, h, w]`` holds pure noise in the free frames and the
    reference latents in the others; ``frame_mask`` ``[n, T]``. Ties go to
    the earlier reference. Samples without a reference keep their noise.
    """
    out = z.clone()
    frames = torch.arange(z.shape[2], device=z.device)
    for i in range(z.shape[0]):
        anchors = frames[frame_mask[i] < 1]
        if anchors.numel() == 0:
            continue
        nearest = anchors[(frames[:, None] - anchors[None]).abs().argmin(dim=1)]
        free = frame_mask[i] >= 1
        start = (1 - level) * z[i][:, nearest] + level * z[i]
        out[i][:, free] = start[:, free]
    return out


def _on(cond: TextCondition, device, n: int) -> TextCondition:
    y = cond.y.to(device)
    mask = None if cond.mask is None else cond.mask.to(device)
    if y.shape[0] != n:
        if y.shape[0] != 1:
            raise InvalidInputError(f"got {y.shape[0]} captions for a batch of {n}; give one caption or one per sample")
        y = y.expand(n, *y.shape[1:])
        mask = None if mask is None else mask.expand(n, -1)
    return TextCondition(y, mask)


def _encode_tail(codec, video: torch.Tensor, cfl: int, layout: TemporalLayout) -> torch.Tensor:
    """Per-sample latents ``[n, C, T', h, w]`` ending with the last ``cfl`` latent frames of a decoded clip."""
    frames = video.shape[2]
    if frames % layout.frames_per_chunk == 0:
        video = video[:, :, frames - layout.chunk_frames(cfl):]  # whole chunks encode independently
    return codec.encode(video.to(getattr(codec, "dtype", video.dtype))).float()


def _encode_first_frame(codec, video: torch.Tensor) -> torch.Tensor:
    return codec.encode(video[:, :, :1].to(getattr(codec, "dtype", video.dtype))).float()


def clip_frames(layout: TemporalLayout, num_frames: int, loops: int = 1, condition_frames: int = 0) -> int:
    """Frames of a clip of ``loops`` chained ``num_frames``-frame loops joined as :func:`generate` joins them."""
    if loops <= 1:
        return int(num_frames)
    return int(num_frames) + (loops - 1) * (int(num_frames) - layout.chunk_frames(condition_frames))


def infer_num_frames(layout: TemporalLayout, latent_frames: int) -> int:
    """The longest pixel clip that ``latent_frames`` latent frames decode to (for latents without a frame count).

    One latent frame is taken for an image (one frame).
    """
    if int(latent_frames) == 1:
        return 1
    whole, rest = divmod(int(latent_frames), layout.latents_per_chunk)
    return whole * layout.frames_per_chunk + rest * layout.temporal_factor


def decode_latents(
    codec,
    latents: torch.Tensor,
    num_frames: int,
    *,
    loops: int = 1,
    condition_frames: int = 0,
    layout: TemporalLayout | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Decode the joined latents of :attr:`GenerationResult.latents` -> ``[n, 3, F, H, W]`` float32 on the CPU.

    ``num_frames`` is the length of one loop. Loop 0 decodes as a whole; every
    later loop's latents (its condition frames already dropped when joining)
    decode to its frames after the condition chunks: whole chunks decode
    independently, so this gives exactly the frames :func:`generate` keeps.
    ``callback(frames_done, total_frames)`` runs after each chunk the codec
    decodes (raising from it stops decoding).
    """
    layout = layout or getattr(codec, "layout", None) or OPENSORA_VAE_LAYOUT
    segments = [(layout.latent_frames(num_frames), int(num_frames))]
    if loops > 1:
        kept = int(num_frames) - layout.chunk_frames(condition_frames)
        segments += [(layout.latent_frames(num_frames) - int(condition_frames), kept)] * (loops - 1)
    expected = sum(n for n, _ in segments)
    if latents.shape[2] != expected:
        raise InvalidInputError(
            f"the latents have {latents.shape[2]} latent frames, but {loops} loop(s) of {num_frames} frames need "
            f"{expected}: decode the LATENT made by the sampler without changing it"
        )
    total_frames = sum(f for _, f in segments)
    takes_callback = "callback" in inspect.signature(codec.decode).parameters
    videos, start, done = [], 0, 0
    dtype = getattr(codec, "dtype", latents.dtype)
    for count, frames in segments:
        z = latents[:, :, start : start + count]
        start += count

        def chunk(n, of, base=done, frames=frames):
            if callback is not None:
                callback(base + int(round(frames * n / max(of, 1))), total_frames)

        if takes_callback:
            video = codec.decode(z.to(dtype), frames, callback=chunk)
        else:
            video = codec.decode(z.to(dtype), frames)
            chunk(1, 1)
        videos.append(video.float().cpu())
        done += frames
    return torch.cat(videos, dim=2)


def default_condition_frames(profile: SamplingProfile, num_frames: int) -> int:
    """Latent frames each later loop takes from the previous one when the user does not say.

    With a chunked VAE this is Open-Sora's demo rule, a third of the clip's
    latents in whole chunks (51 frames -> 5, 102 -> 10, 204 -> 20), at least
    one chunk; otherwise the profile's ``loop_condition_frames``.
    """
    layout = profile.layout
    per_chunk = layout.latents_per_chunk
    if per_chunk > 1:
        third = int(num_frames / layout.frames_per_chunk * per_chunk / 3)
        return max(per_chunk, third // per_chunk * per_chunk)
    return int(profile.loop_condition_frames)
