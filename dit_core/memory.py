"""How much memory a generation needs, how much the device has, and the largest size that fits.

:func:`estimate_bytes` works on plain numbers (latent frames and grid,
patch size, hidden size, depth, heads, batch including the guidance copy,
output pixels and frames, the decoder's cost per pixel), so it holds for
any transformer denoiser over a latent grid. It is deliberately on the
generous side: refusing a request that would just fit is a smaller harm than
a process killed by the kernel after minutes of work. :func:`check_generation`
reads those numbers off a model and codec and refuses a request that does not
fit, naming the largest size that would.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from .errors import InvalidInputError

#: Activation tensors of ``tokens x hidden`` alive at once inside a block: the
#: residual stream, norms, q/k/v, the attention output and the MLP's
#: ``mlp_ratio``-wide hidden layer (twice: before and after the activation).
BASE_ACTIVATION_COPIES = 8
#: Working memory of a codec's decoder per output pixel and frame in flight, for a codec that says nothing
#: better: a codec may give a ``decode_bytes_per_pixel`` attribute or, better, a
#: ``decode_working_bytes(height, width, *, frames, batch)`` method (the peak of its decode besides its
#: weights and the finished video; the Open-Sora VAE's depends on its dtype and spatial tiling).
DEFAULT_DECODE_BYTES_PER_PIXEL = 48
#: Process memory besides tensors that the check keeps free (allocator slack, libraries).
HEADROOM_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Estimate:
    weights: int
    activations: int
    attention: int
    latents: int
    decode: int

    @property
    def total(self) -> int:
        """Weights and latents stay; the denoiser's activations are gone by the time the frames are decoded."""
        return self.weights + self.latents + max(self.activations + self.attention, self.decode)


def estimate_bytes(
    *,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    latent_channels: int = 4,
    patch_size: tuple[int, int, int] = (1, 2, 2),
    hidden_size: int = 1152,
    depth: int = 28,
    num_heads: int = 16,
    mlp_ratio: float = 4.0,
    batch: int = 1,
    dtype_bytes: int = 4,
    text_tokens: int = 300,
    weights_bytes: int | None = None,
    attention_scores: bool = False,
    output_pixels: int = 0,
    output_frames: int = 0,
    decode_bytes_per_pixel: float = DEFAULT_DECODE_BYTES_PER_PIXEL,
    decode_frames_at_once: int | None = None,
    decode_working_bytes: int | None = None,
) -> Estimate:
    """Peak memory (bytes) of sampling and decoding one request.

    ``batch`` counts every sample the denoiser sees at once (2 per clip with
    batched classifier-free guidance). ``weights_bytes``: the weights that
    still have to be placed on the device (0 when they already are; None
    estimates them from ``depth`` and ``hidden_size``). ``attention_scores``:
    the attention backend materialises the score matrices (plain "math"
    attention; SDPA and xformers kernels do not). ``output_pixels`` per frame
    times ``output_frames`` are decoded, ``decode_frames_at_once`` at a time, with
    ``decode_bytes_per_pixel`` of working memory per pixel in flight, or ``decode_working_bytes`` in all
    when the codec tells it (the finished frames are counted on top either way).
    """
    pt, ph, pw = (int(p) for p in patch_size)
    frames = -(-int(latent_frames) // pt)
    per_frame = (-(-int(latent_height) // ph)) * (-(-int(latent_width) // pw))
    tokens = frames * per_frame
    if weights_bytes is None:  # spatial + temporal block per layer: attention, cross-attention, MLP
        weights_bytes = int(depth) * 2 * (8 + 2 * mlp_ratio) * hidden_size**2 * dtype_bytes
    copies = BASE_ACTIVATION_COPIES + 2 * mlp_ratio
    activations = int(batch * tokens * hidden_size * dtype_bytes * copies)
    # cross-attention scores (always counted: masked kernels may fall back to them) ...
    attention = batch * num_heads * tokens * int(text_tokens) * 4
    if attention_scores:  # ... and the largest self-attention score matrix, softmax in float32
        attention += batch * num_heads * max(frames * per_frame**2, per_frame * frames**2) * 4
    latents = 6 * batch * int(latent_channels) * int(latent_frames) * int(latent_height) * int(latent_width) * 4
    video = output_pixels * output_frames * 3 * 4 * 2  # the decoded frames in float32, and their conversion
    if decode_working_bytes is not None:
        decode = int(decode_working_bytes + video) if output_pixels and output_frames else 0
    else:
        at_once = int(output_frames) if decode_frames_at_once is None else min(int(output_frames), int(decode_frames_at_once))
        decode = int(output_pixels * at_once * decode_bytes_per_pixel + video)
    return Estimate(int(weights_bytes), activations, int(attention), latents, decode)


# ---------------------------------------------------------------------------
# What the device has


def _cgroup_room() -> int | None:
    """Memory left under this process's cgroup limit (containers), if there is one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                text = fh.read().strip()
            if text == "max":
                return None
            limit = int(text)
            with open(usage_file) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit >= 2**60:  # "no limit" on cgroup v1
            return None
        return max(0, limit - usage)
    return None


def cpu_available_bytes() -> int | None:
    """RAM the system can give without swapping (MemAvailable), within a container's limit."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    room = _cgroup_room()
    return available if room is None else min(available, room)


def available_bytes(device) -> int | None:
    """Free memory of ``device`` (CPU: available RAM; CUDA: free plus PyTorch's cached blocks); None = unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return cpu_available_bytes()
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(0, cached))
    return None


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} PB"


# ---------------------------------------------------------------------------
# A request against a model, a codec and a device


def _module_bytes(module) -> int:
    try:
        return sum(t.numel() * t.element_size() for t in module.state_dict().values())
    except Exception:  # noqa: BLE001 - a stand-in without a state dict
        return 0


def _on_device(module, device) -> bool:
    import torch

    try:
        first = next(iter(module.parameters()))
    except (StopIteration, AttributeError, TypeError):
        return True
    return first.device.type == torch.device(device).type


def request_estimate(model, *, latent_frames: int, latent_height: int, latent_width: int, batch: int,
                     device, codec=None, output_pixels: int = 0, output_frames: int = 0,
                     output_size: tuple[int, int] | None = None) -> Estimate:
    """:func:`estimate_bytes` with the numbers read off ``model`` (its ``config``) and ``codec``.

    ``output_size`` ``(width, height)`` of one decoded frame, for a codec that estimates its decode from the
    frame's shape; a codec's weights that are not on ``device`` yet count in the decode.
    """
    config = getattr(model, "config", None)

    def number(name, default):
        value = getattr(config, name, None)
        return default if value is None else value

    hidden = int(number("hidden_size", 0))
    depth = int(number("depth", 0))
    dtype = getattr(model, "dtype", None)
    dtype_bytes = getattr(dtype, "itemsize", 4) or 4
    backend = getattr(model, "attention_backend", None)
    weights = 0 if _on_device(model, device) else _module_bytes(model)
    settings = _decode_settings(codec, output_size, frames=output_frames) if output_pixels else {}
    estimate = estimate_bytes(
        latent_frames=latent_frames, latent_height=latent_height, latent_width=latent_width,
        latent_channels=int(number("in_channels", 4)), patch_size=tuple(number("patch_size", (1, 2, 2))),
        hidden_size=hidden or 1152, depth=depth or 28, num_heads=int(number("num_heads", 16)),
        mlp_ratio=float(number("mlp_ratio", 4.0)), batch=batch, dtype_bytes=int(dtype_bytes),
        text_tokens=int(number("model_max_length", 300)), weights_bytes=weights,
        attention_scores=backend == "math", output_pixels=output_pixels, output_frames=output_frames,
        **settings,
    )
    if estimate.decode and codec is not None and not _on_device(codec, device):
        estimate = replace(estimate, decode=estimate.decode + _module_bytes(codec))
    return estimate


def _decode_settings(codec, size: tuple[int, int] | None, *, frames: int, batch: int = 1) -> dict:
    """How ``codec`` counts its decode of ``batch`` clips of ``frames`` frames at ``size`` ``(width, height)``."""
    working = getattr(codec, "decode_working_bytes", None)
    if callable(working) and size is not None and frames:
        width, height = size
        return dict(decode_working_bytes=int(working(int(height), int(width), frames=int(frames), batch=int(batch))))
    return dict(decode_bytes_per_pixel=float(getattr(codec, "decode_bytes_per_pixel", DEFAULT_DECODE_BYTES_PER_PIXEL)),
                decode_frames_at_once=getattr(codec, "micro_batch_size", None))


def decode_bytes(codec, *, size: tuple[int, int], frames: int, batch: int = 1) -> int:
    """What the checks count for decoding ``batch`` clips of ``frames`` frames at ``size`` ``(width, height)``
    with ``codec`` (its working memory and the finished frames; not its weights)."""
    width, height = (int(v) for v in size)
    return estimate_bytes(latent_frames=0, latent_height=0, latent_width=0, batch=0, weights_bytes=0,
                          output_pixels=batch * width * height, output_frames=frames,
                          **_decode_settings(codec, (width, height), frames=frames, batch=batch)).decode


def _tiling_advice(codec, size: tuple[int, int], *, frames: int, batch: int, need: Estimate, room: int) -> str:
    """", or decode in spatial tiles ..." when ``codec`` can tile its decode smaller than it does and that saves
    memory: the largest of its ``suggested_tiles`` with which ``need`` fits in ``room``, else the smallest."""
    working = getattr(codec, "decode_working_bytes", None)
    if not callable(working):
        return ""

    def fits(saved: int) -> bool:
        return replace(need, decode=need.decode - saved).total <= room
    current = getattr(getattr(codec, "tiling", None), "tile", None)
    tiles = sorted((t for t in getattr(codec, "suggested_tiles", ()) if current is None or t < current), reverse=True)
    width, height = (int(v) for v in size)
    now = working(height, width, frames=frames, batch=batch)
    for tile in tiles:
        saved = now - working(height, width, frames=frames, batch=batch, tile=tile)
        if saved > 0 and (fits(saved) or tile == tiles[-1]):
            where = getattr(codec, "tile_setting", "")
            result = "which would fit" if fits(saved) else f"which saves {format_bytes(saved)}"
            return f", or decode in spatial tiles of {tile} pixels{f' ({where})' if where else ''}, {result}"
    return ""


def check_generation(model, *, device, latent_frames: int, latent_height: int, latent_width: int, batch: int,
                     spatial_factor: int, num_frames: int, codec=None, decode: bool = True,
                     available: int | None = None, size: tuple[int, int] | None = None,
                     loops: int = 1, fixed_grid: bool = False) -> Estimate | None:
    """Refuse a request whose estimate exceeds the free memory of ``device``, naming the largest size that fits.

    ``available`` overrides the measured free memory (bytes); ``size`` is
    the ``(width, height)`` asked for, as the message names it; ``loops``
    chained clips are decoded into one video. ``fixed_grid``: the latent grid
    stays the same at any size and the decoder draws ``size`` (the built-in
    warp decoder), so only the decode grows with the size. Returns the
    estimate, or None when the device's free memory cannot be told.
    """
    if available is None:
        available = available_bytes(device)
    if available is None:
        return None
    width, height = size or (latent_width * spatial_factor, latent_height * spatial_factor)
    if fixed_grid and size is None:
        raise ValueError("a fixed latent grid needs the output size")

    def sizes(scale: float) -> tuple[int, int, int, int]:
        """(latent height, latent width, output height, output width) at ``scale`` of the request."""
        if fixed_grid:
            return latent_height, latent_width, max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
        lat_h, lat_w = max(1, math.floor(latent_height * scale)), max(1, math.floor(latent_width * scale))
        return lat_h, lat_w, lat_h * spatial_factor, lat_w * spatial_factor

    def estimate(scale: float) -> Estimate:
        lat_h, lat_w, out_h, out_w = sizes(scale)
        pixels = out_h * out_w if decode and codec is not None else 0
        return request_estimate(model, latent_frames=latent_frames, latent_height=lat_h, latent_width=lat_w,
                                batch=batch, device=device, codec=codec, output_pixels=pixels,
                                output_frames=num_frames * max(1, int(loops)) if pixels else 0,
                                output_size=(out_w, out_h))

    def tiling(need: Estimate, room: int) -> str:
        if not (decode and codec is not None):
            return ""
        _, _, out_h, out_w = sizes(1.0)
        return _tiling_advice(codec, (out_w, out_h), frames=num_frames * max(1, int(loops)), batch=1, need=need,
                              room=room)

    smallest = 1.0 / (max(height, width) if fixed_grid else max(latent_height, latent_width))
    return _check(estimate, smallest, lambda scale: (sizes(scale)[3], sizes(scale)[2]), available=available, device=device,
                  what=f"{width}x{height} pixels at {num_frames} frames", num_frames=num_frames,
                  fewer=f"fewer frames{' or loops' if loops > 1 else ''}", more_advice=tiling)


def check_decode(codec, *, device, num_frames: int, size: tuple[int, int], batch: int = 1,
                 available: int | None = None) -> Estimate | None:
    """Refuse decoding ``batch`` clips of ``num_frames`` frames at ``size`` ``(width, height)`` that do not fit
    (the decode after a sampler that did not decode), naming the largest size that does. A decoder whose
    weights are not on ``device`` yet counts them too."""
    if available is None:
        available = available_bytes(device)
    if available is None:
        return None
    width, height = (int(v) for v in size)
    weights = 0 if _on_device(codec, device) else _module_bytes(codec)

    def scaled(scale: float) -> tuple[int, int]:
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))

    def estimate(scale: float) -> Estimate:
        return Estimate(weights, 0, 0, 0, decode_bytes(codec, size=scaled(scale), frames=num_frames, batch=batch))

    return _check(estimate, 1.0 / max(width, height), scaled, available=available, device=device,
                  what=f"decoding {width}x{height} pixels at {num_frames} frames", num_frames=num_frames,
                  fewer="fewer frames", more_advice=lambda need, room: _tiling_advice(
                      codec, (width, height), frames=num_frames, batch=batch, need=need, room=room))


def _check(estimate, smallest: float, size_at, *, available: int, device, what: str, num_frames: int,
           fewer: str, more_advice=None) -> Estimate:
    """The estimate at the request's size, or an error naming the largest ``size_at(scale)`` (width, height)
    that fits (and ``more_advice(need, room)``, text added to the advice)."""
    need = estimate(1.0)
    room = available - HEADROOM_BYTES
    if need.total <= room:
        return need
    where = "the GPU" if str(device).startswith("cuda") else "this computer"
    fits = _largest_fitting(estimate, smallest, room)
    if fits is None:
        advice = "free memory (close other programs), or use fewer frames"
    else:
        fit_w, fit_h = size_at(fits)
        advice = f"use at most {fit_w}x{fit_h} pixels at {num_frames} frames, or {fewer}"
    if more_advice is not None:
        advice += more_advice(need, room)
    raise InvalidInputError(
        f"{what} needs about {format_bytes(need.total)} of memory but {where} has "
        f"{format_bytes(max(available, 0))} free: {advice}"
    )


def _largest_fitting(estimate, smallest: float, room: int) -> float | None:
    """The largest scale of the request, from ``smallest`` to 1, whose estimate fits in ``room`` (binary search)."""
    if estimate(smallest).total > room:
        return None
    lo, hi = smallest, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if estimate(mid).total <= room:
            lo = mid
        else:
            hi = mid
    return lo
