"""Rectified-flow timestep schedules (Open-Sora 1.2 ``RFLOW`` at inference).

The base schedule is ``t_i = (1 - i/N) * 1000``. Open-Sora 1.2 shifts it
towards high noise for larger and longer videos:
``t' = r*t / (1 + (r - 1)*t)`` (``t`` in [0, 1]) with
``r = sqrt(H*W / 512^2) * sqrt(num_frames // 17 * 5)`` (``1`` for a single
image). Upstream evaluates ``r`` from bfloat16 tensors when the model runs in
bfloat16; ``ratio_dtype`` reproduces that. The transformed timesteps are
clamped to ``num_timesteps`` (in float32 the first one can come out as
1000.0001, which makes upstream skip its first step).
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError


def base_timesteps(steps: int, num_timesteps: int = 1000) -> list[float]:
    if steps < 1:
        raise InvalidInputError(f"sampling steps must be at least 1 (got {steps})")
    return [(1.0 - i / steps) * num_timesteps for i in range(steps)]


def timestep_ratio(height: float, width: float, num_frames: int, *, ratio_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Open-Sora 1.2's resolution/length shift factor, evaluated in ``ratio_dtype`` like upstream."""
    h = torch.tensor(float(height), dtype=ratio_dtype)
    w = torch.tensor(float(width), dtype=ratio_dtype)
    ratio_space = (h * w / (512 * 512)).sqrt()
    if int(num_frames) == 1:
        frames = torch.ones((), dtype=ratio_dtype)
    else:
        frames = torch.tensor(float(num_frames), dtype=ratio_dtype) // 17 * 5
    ratio_time = frames.sqrt()
    return ratio_space * ratio_time


def transform_timesteps(
    timesteps: torch.Tensor, ratio: torch.Tensor, num_timesteps: int = 1000, clamp: bool = True
) -> torch.Tensor:
    t = timesteps.float() / num_timesteps
    shifted = ratio * t / (1 + (ratio - 1) * t)
    shifted = (shifted * num_timesteps).float()
    return shifted.clamp(0, num_timesteps) if clamp else shifted


def rectified_flow_timesteps(
    steps: int,
    *,
    num_timesteps: int = 1000,
    use_timestep_transform: bool = True,
    height: float | None = None,
    width: float | None = None,
    num_frames: int | None = None,
    ratio_dtype: torch.dtype = torch.float32,
    shift: float = 1.0,
) -> torch.Tensor:
    """The ``steps`` timesteps (float32, high noise first) the sampler evaluates. Without Open-Sora's transform,
    ``shift`` > 1 applies the same transform with that fixed ratio (more of the steps at high noise)."""
    timesteps = torch.tensor(base_timesteps(steps, num_timesteps), dtype=torch.float32)
    if not use_timestep_transform:
        if shift != 1.0:
            return transform_timesteps(timesteps, torch.tensor(float(shift)), num_timesteps)
        return timesteps
    if height is None or width is None or num_frames is None:
        raise ValueError("the timestep transform needs height, width and num_frames")
    if 1 < int(num_frames) < 17:
        raise InvalidInputError(
            f"Open-Sora 1.2's timestep schedule breaks for {num_frames} frames (it needs 1, or 17 and more): "
            "use 1 frame (an image) or at least 17 frames (17, 34, 51, ... match the VAE's chunks)"
        )
    ratio = timestep_ratio(height, width, num_frames, ratio_dtype=ratio_dtype)
    return transform_timesteps(timesteps, ratio.float() if ratio_dtype == torch.float32 else ratio, num_timesteps)


def step_sizes(timesteps: torch.Tensor, num_timesteps: int = 1000) -> torch.Tensor:
    """``dt_i = (t_i - t_{i+1}) / num_timesteps``; the last step goes to 0."""
    following = torch.cat([timesteps[1:], timesteps.new_zeros(1)])
    return (timesteps - following) / num_timesteps
