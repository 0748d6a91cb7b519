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
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import checks
from .conditioning import OPENSORA_VAE_LAYOUT, Placement, TemporalLayout, apply_placements
from .codecs import VideoCodec
from .errors import InvalidInputError
from .families import OPENSORA12_PROFILE, SamplingProfile
from .memory import check_generation
from .sampling import TextCondition, rectified_flow_timesteps, sample_rectified_flow


def profile_of(model) -> SamplingProfile:
    return getattr(model, "sampling_profile", None) or OPENSORA12_PROFILE


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


def check_frames(profile: SamplingProfile, num_frames: int, loop: "LoopControl | None" = None) -> None:
    """Refuse a frame count the model cannot make; with ``loop`` settings (loops, a seamless loop) the advice
    names counts that keep their rules too."""
    if num_frames < 1 or num_frames > profile.max_frames or 1 < num_frames < profile.min_video_frames:
        plain = loop is None or (loop.loops <= 1 and not loop.seamless)
        advice = f"use {profile.frame_hint}; at most {profile.max_frames}" if plain else \
            _frames_that_work(profile, loop, num_frames, nearest=num_frames > profile.max_frames)
        raise InvalidInputError(f"{profile.name} cannot make a clip of {num_frames} frames: {advice}")


#: the smallest side a model with a fixed latent grid (the built-in warp decoder) draws a clip at
MIN_WARP_SIDE = 8


def plan_size(profile: SamplingProfile, height: int, width: int, notes: list[str]) -> tuple[int, int]:
    """Latent size for a pixel size; sizes that do not divide are rounded down (and noted)."""
    if profile.latent_grid is not None:
        if height < MIN_WARP_SIDE or width < MIN_WARP_SIDE:
            raise InvalidInputError(f"size {width}x{height} is too small to show a motion: width and height must be "
                                    f"at least {MIN_WARP_SIDE} pixels; give a larger size (the motion is the same at "
                                    "any size)")
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
                 cfg_scale: float | None = None, codec: VideoCodec | None = None, seamless: bool = False,
                 decode: bool = True, loops: int = 1, device=None, available: int | None = None):
    """Refuse a clip that does not fit in the memory of ``device`` (default: the model's; see :mod:`memory`)."""
    profile = profile or profile_of(model)
    lat_h, lat_w = plan_size(profile, height, width, [])
    cfg = profile.cfg_scale if cfg_scale is None else float(cfg_scale)
    return check_generation(
        model, device=device if device is not None else getattr(model, "device", torch.device("cpu")),
        available=available,
        latent_frames=profile.layout.latent_frames(num_frames + int(seamless)), latent_height=lat_h, latent_width=lat_w,
        batch=2 if cfg != 1.0 else 1, spatial_factor=profile.spatial_factor,
        num_frames=num_frames, codec=codec, decode=decode, size=(int(width), int(height)), loops=loops,
        fixed_grid=profile.latent_grid is not None,
    )


def memory_needed(model, profile: SamplingProfile | None = None, *, device, **request) -> int:
    """Bytes a clip needs on ``device`` beyond the model's weights (:func:`check_memory`'s request): what a host
    that manages several models makes room for before it loads this one."""
    estimate = check_memory(model, profile, device=device, available=1 << 62, **request)
    return estimate.total - estimate.weights


@dataclass(frozen=True)
class LoopControl:
    """How clips chain and how the last one ends (the settings of the CharMotion Loop Control node).

    ``loops`` > 1 extends the clip: each later clip continues from the last
    ``condition_frames`` latent frames of the one before (None: the model's
    default for the clip length, :func:`default_condition_frames`), kept
    exactly with ``condition_edit`` 0 and changed more by the model as it
    rises to 1. ``seamless`` makes the last frame flow back into the first.
    """

    loops: int = 1
    condition_frames: int | None = None
    seamless: bool = False
    condition_edit: float = 0.0


def generate(
    model,
    conditions: TextCondition | Sequence[TextCondition],
    *,
    codec: VideoCodec | None = None,
    negative: TextCondition | None = None,
    references: Sequence[Reference] = (),
    context: torch.Tensor | None = None,
    num_frames: int = 51,
    height: int,
    width: int,
    fps: float | None = None,
    seed: int = 0,
    steps: int | None = None,
    cfg_scale: float | None = None,
    denoise: float | None = None,
    loop: LoopControl = LoopControl(),
    profile: SamplingProfile | None = None,
    decode: bool = True,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Sample a clip (or ``loop.loops`` chained clips) and decode it with ``codec``.

    ``conditions``: one caption, or one per loop (the last one repeats).
    ``references``: reference latents and where they go (first frame = 0,
    last = -1, several = in-betweening). ``context``: what a model with
    context channels sees beside its latents (the built-in model: the
    reference's appearance). ``denoise`` < 1 starts the free frames from their
    nearest reference frame noised to ``denoise`` of the schedule: the
    character stays closer to the reference, with less motion. Later loops
    continue from the previous clip's end (re-encoded from its decoded pixels
    with a VAE, as upstream does); a seamless clip gets one extra latent frame
    held at its first frame's latent, dropped after sampling. Unset settings
    take the model's profile. ``progress(step, total, latents)`` runs after
    every step, ``cancel()`` before every step (True stops with
    ``GenerationCancelled``). Noise comes from a CPU generator seeded with
    ``seed``: the same seed gives the same clip on the same device and
    attention backend, and no global RNG state is touched.
    """
    profile = profile or profile_of(model)
    notes: list[str] = []
    run = _Sampling.plan(model, profile, conditions, negative, num_frames=num_frames, height=height, width=width,
                         fps=fps, seed=seed, steps=steps, cfg_scale=cfg_scale, denoise=denoise, loop=loop,
                         codec=codec, context=context, progress=progress, cancel=cancel, notes=notes)
    check_memory(model, profile, num_frames=num_frames, height=height, width=width, cfg_scale=run.cfg_scale,
                 codec=codec, seamless=loop.seamless, decode=decode or loop.loops > 1, loops=loop.loops)
    layout, carried = profile.layout, run.condition_frames
    placed = [Placement(reference=i, source=r.source, target=layout.latent_index(r.frame, num_frames),
                        length=r.length, edit=1.0 - r.strength) for i, r in enumerate(references)]
    first_frame = next((r.latents[:, :1] for r, p in zip(references, placed) if p.target == 0 and p.source == 0), None)
    clips, videos, previous_video = [], [], None
    for k in range(loop.loops):
        refs, places = [r.latents.to(run.device) for r in references], [p for p in placed if p.loop == k]
        if k > 0:
            tail = clips[-1][:, :, -carried:] if profile.continue_from_latents else \
                _encode_tail(codec, previous_video, carried, layout)
            places.append(Placement(reference=len(refs), source=-carried, target=0, length=carried,
                                    edit=loop.condition_edit, loop=k))
            refs.append(tail.to(run.device))
        seamless = loop.seamless and k == loop.loops - 1
        tie = _close_the_loop(run, refs, places, k, layout.latent_frames(num_frames + 1) - 1, first_frame, clips,
                              codec, videos) if seamless else None
        z = run.clip(k, num_frames + int(seamless), refs, places, tie)[:, :, : layout.latent_frames(num_frames)]
        clips.append(z)
        last = k == loop.loops - 1
        if codec is not None and (decode or not (last or profile.continue_from_latents)):  # later loops re-encode
            previous_video = codec.decode(z.to(getattr(codec, "dtype", z.dtype)), num_frames).float()
            videos.append(previous_video if k == 0 else previous_video[:, :, layout.chunk_frames(carried):])
    return GenerationResult(
        video=torch.cat(videos, dim=2).cpu() if videos and decode else None,
        latents=torch.cat([clips[0]] + [z[:, :, carried:] for z in clips[1:]], dim=2), loop_latents=clips,
        num_frames=clip_frames(layout, num_frames, loop.loops, carried), height=run.output_size[0],
        width=run.output_size[1], fps=run.fps, seed=int(seed), notes=notes,
    )


def _close_the_loop(run, refs, places, k, extra_frame, first_frame, clips, codec, videos):
    """Hold the seamless clip's extra latent frame at its first frame's latent; a tie when none is known yet.

    The first frame is the frame-0 reference, else the first clip's first
    frame (with loops), else whatever the clip's own first frame becomes
    (returned as the ``(0, extra_frame)`` pair the sampler ties together).
    """
    anchor = first_frame
    if anchor is None and clips:
        anchor = clips[0][:, :, :1] if run.profile.continue_from_latents else _encode_first_frame(codec, videos[0])
    if anchor is None:
        return 0, extra_frame
    refs.append(anchor.to(run.device))
    places.append(Placement(reference=len(refs) - 1, target=extra_frame, length=1, loop=k))
    return None


@dataclass
class _Sampling:
    """What every clip of one :func:`generate` call shares: checked settings, noise, the model's inputs."""

    model: object
    profile: SamplingProfile
    conditions: list[TextCondition]
    negative: TextCondition | None
    steps: int
    cfg_scale: float
    denoise: float
    fps: float
    condition_frames: int
    latent_size: tuple[int, int]
    told_size: tuple[int, int]  # the frame size the model is told (and the timestep transform uses)
    output_size: tuple[int, int]
    loops: int
    model_kwargs: dict
    generator: torch.Generator
    progress: ProgressFn | None
    cancel: Callable[[], bool] | None
    notes: list[str]

    @property
    def device(self):
        return getattr(self.model, "device", torch.device("cpu"))

    @classmethod
    def plan(cls, model, profile, conditions, negative, *, num_frames, height, width, fps, seed, steps, cfg_scale,
             denoise, loop, codec, context, progress, cancel, notes) -> "_Sampling":
        """Check every setting (one clear error for the first bad one) and fill in the profile's defaults."""
        steps = checks.whole("steps", profile.steps if steps is None else steps, 1, checks.MAX_STEPS)
        cfg_scale = checks.number("CFG scale", profile.cfg_scale if cfg_scale is None else cfg_scale, 0)
        checks.seed(seed)
        denoise = profile.denoise if denoise is None else float(denoise)
        if not 0.0 < denoise <= 1.0:
            raise InvalidInputError(f"denoise must be above 0 and at most 1 (got {denoise}); 1 starts from pure noise")
        loops = checks.whole("number of loops", loop.loops, 1, checks.MAX_LOOPS)
        check_frames(profile, num_frames, loop)
        if num_frames == 1 and (loops > 1 or loop.seamless):
            raise InvalidInputError(f"a single frame cannot loop: {_frames_that_work(profile, loop, num_frames)}")
        if loops > 1 and codec is None and not profile.continue_from_latents:
            raise InvalidInputError("loops > 1 need the VAE: each loop re-encodes the end of the previous clip")
        latent_size = plan_size(profile, height, width, notes)
        if profile.cfg_high is not None and cfg_scale > profile.cfg_high:
            notes.append(f"cfg {cfg_scale:g} is high for {profile.name}, which was made for cfg {profile.cfg_scale:g}: "
                         f"above {profile.cfg_high:g} it does the asked action less often (about half as often at 7); "
                         f"set cfg {profile.cfg_scale:g}")
        layout = profile.layout
        if loop.seamless and num_frames % layout.frames_per_chunk:
            per = layout.frames_per_chunk
            raise InvalidInputError(f"a seamless loop needs a whole number of {per}-frame chunks; "
                                    + (f"with {loops} loops, " if loops > 1 else "")
                                    + _frames_that_work(profile, loop, num_frames, nearest=True))
        carried = default_condition_frames(profile, num_frames) if loop.condition_frames is None \
            else int(loop.condition_frames)
        if loops > 1 and not _carries(layout, carried, num_frames):
            raise InvalidInputError(_condition_frames_problem(profile, loop, carried, num_frames))
        conditions = [conditions] if isinstance(conditions, TextCondition) else list(conditions)
        if not conditions:
            raise InvalidInputError("no text conditioning given: connect or encode a prompt")
        if fps is None:
            fps = profile.image_fps if num_frames == 1 else profile.fps
        fps = checks.number("fps", fps, 0, low_open=True)
        told_fps = profile.image_fps if num_frames == 1 else fps  # upstream tells a still image IMG_FPS, always
        grid = profile.latent_grid is not None
        told = (profile.model_frame, profile.model_frame) if grid else (height, width)
        output = (height, width) if grid else tuple(n * profile.spatial_factor for n in latent_size)
        dtype, device = getattr(model, "dtype", torch.float32), getattr(model, "device", torch.device("cpu"))
        kwargs = dict(fps=_conditioning_value(told_fps, dtype, device), height=_conditioning_value(told[0], dtype, device),
                      width=_conditioning_value(told[1], dtype, device))
        if context is not None:
            kwargs["context"] = context.to(device=device, dtype=dtype)
        return cls(model, profile, conditions, negative, steps, cfg_scale, denoise, fps, carried, latent_size, told,
                   output, loops, kwargs, torch.Generator(device="cpu").manual_seed(int(seed)), progress, cancel,
                   notes)

    def clip(self, k: int, frames: int, refs: list[torch.Tensor], places: list[Placement], tie) -> torch.Tensor:
        """Sample clip ``k`` (``frames`` frames) with its references in place -> latents ``[1, C, T, h, w]``."""
        profile, device = self.profile, self.device
        shape = (1, self.model.config.in_channels, profile.layout.latent_frames(frames), *self.latent_size)
        z = torch.randn(shape, generator=self.generator, dtype=torch.float32).to(device)
        frame_mask = apply_placements(z, refs, places, loop=k, align=profile.align)
        bf16 = getattr(self.model, "dtype", None) == torch.bfloat16
        timesteps = rectified_flow_timesteps(
            self.steps, num_timesteps=profile.num_timesteps, use_timestep_transform=profile.use_timestep_transform,
            height=self.told_size[0], width=self.told_size[1], num_frames=frames,
            ratio_dtype=torch.bfloat16 if bf16 else torch.float32, shift=profile.timestep_shift,
        )
        if self.denoise < 1.0:
            if frame_mask is not None and bool((frame_mask < 1).any()):
                timesteps = timesteps * self.denoise
                z = start_from_references(z, frame_mask, float(timesteps[0]) / profile.num_timesteps)
            elif k == 0:
                self.notes.append(f"denoise {self.denoise:g} needs a reference frame to start from: "
                                  "sampled from pure noise")
        total, offset, progress = self.steps * self.loops, k * self.steps, self.progress
        return sample_rectified_flow(
            self.model, z, _on(self.conditions[min(k, len(self.conditions) - 1)], device), timesteps,
            cfg_scale=self.cfg_scale, uncond=None if self.negative is None else _on(self.negative, device),
            frame_mask=frame_mask, model_kwargs=self.model_kwargs, num_timesteps=profile.num_timesteps,
            generator=self.generator, cancel=self.cancel, tie_frames=tie,
            progress=None if progress is None else (lambda i, _total, z_: progress(offset + i, total, z_)),
        )


def _conditioning_value(value: float, dtype: torch.dtype, device) -> torch.Tensor:
    """A size/fps value in the model dtype, as upstream passes it (bf16 rounds e.g. 854 to 856)."""
    emulate = dtype if dtype == torch.bfloat16 else torch.float32
    return torch.full((1,), float(value), dtype=emulate, device=device)


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


def _on(cond: TextCondition, device) -> TextCondition:
    if cond.y.shape[0] != 1:
        raise InvalidInputError(f"got {cond.y.shape[0]} captions for one clip; give one caption (one per loop as a list)")
    return TextCondition(cond.y.to(device), None if cond.mask is None else cond.mask.to(device))


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


def _carries(layout: TemporalLayout, carried: int, num_frames: int) -> bool:
    """Whether each later loop can take ``carried`` latent frames of a ``num_frames``-frame clip."""
    return 1 <= carried < layout.latent_frames(num_frames) and carried % layout.latents_per_chunk == 0


def _condition_frames_problem(profile: SamplingProfile, loop: LoopControl, carried: int, num_frames: int) -> str:
    layout = profile.layout
    latents, per = layout.latent_frames(num_frames), layout.latents_per_chunk
    if loop.condition_frames is not None:
        if latents <= per:  # no count of condition frames fits a clip this short
            return (f"a clip of {num_frames} frames ({latents} latent frames) is too short to carry condition frames "
                    f"into the next loop (got {loop.condition_frames}): {_frames_that_work(profile, loop, num_frames)}")
        unit = f"a multiple of {per} latent frames" if per > 1 else "a whole number of latent frames"
        return (f"condition frames must be {unit} from {per} up to less than the clip's {latents} latent frames; "
                f"got {loop.condition_frames}")
    return (f"loops > 1 carry the last {carried} latent frames of each clip into the next, and a clip of {num_frames} "
            f"frames has only {latents}: {_frames_that_work(profile, loop, num_frames)}"
            + (", or set fewer condition frames (in ComfyUI: condition_frames of CharMotion Loop Control)"
               if carried > per else ""))


def _frames_work(profile: SamplingProfile, loop: LoopControl, num_frames: int) -> bool:
    """Whether a clip of ``num_frames`` frames keeps every frame rule of ``profile`` with these loop settings."""
    layout = profile.layout
    if num_frames > profile.max_frames or 1 < num_frames < profile.min_video_frames:
        return False
    if num_frames == 1:
        return loop.loops <= 1 and not loop.seamless
    if loop.seamless and num_frames % layout.frames_per_chunk:
        return False
    carried = default_condition_frames(profile, num_frames) if loop.condition_frames is None \
        else int(loop.condition_frames)
    return loop.loops <= 1 or _carries(layout, carried, num_frames)


def _frames_that_work(profile: SamplingProfile, loop: LoopControl, num_frames: int, nearest: bool = False) -> str:
    """Advice naming frame counts that keep every frame rule with these loop settings: the first above
    ``num_frames`` and how the longer ones go on ("use 18 frames or more"), or with ``nearest`` the nearest count
    below and above ("use 17 or 34 frames")."""
    works = [n for n in range(1, profile.max_frames + 1) if _frames_work(profile, loop, n)]
    lower = [n for n in works if n < num_frames][-1:] if nearest else []
    higher = [n for n in works if n > num_frames]
    if not higher and not lower:
        return "no clip length works with these settings: use fewer loops or no seamless loop"
    step = profile.layout.frames_per_chunk if loop.seamless else 1
    advice = "use " + " or ".join(str(n) for n in lower + higher[:1]) + " frames"
    if not nearest and len(higher) > 1 and higher == list(range(higher[0], profile.max_frames + 1, step)):
        advice += " or more" + (f", in whole {step}-frame chunks" if step > 1 else "")
    return advice


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
