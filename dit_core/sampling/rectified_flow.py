"""Rectified-flow sampling with classifier-free guidance and per-frame conditioning.

The model predicts the velocity ``v = x0 - noise`` of the straight path
``x_t = (1 - t/1000) * x0 + (t/1000) * noise``; sampling integrates it with
Euler steps from pure noise (t = 1000) to t = 0, exactly as Open-Sora 1.2's
``RFLOW.sample``:

* guidance: ``v = v_uncond + cfg * (v_cond - v_uncond)``, the unconditional
  branch being the model's learned null caption (``y_embedding``, cut by the
  conditional prompt's text mask) or an encoded negative prompt;
* a per-frame ``frame_mask`` (1 = generate, 0 = keep the reference latent,
  values in between = partial edit) decides which frames are denoised at each
  step; frames not being denoised are reset to their reference values after
  every step and are shown to the model as clean (timestep-0 modulation);
* a partial-edit frame is noised to the current level the first time it
  becomes active.

Progress and cancellation are plain callables so that any host (ComfyUI, the
command line, tests) can plug in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import GenerationCancelled, NonFiniteError
from .schedule import step_sizes


@dataclass
class TextCondition:
    """Caption features ``y`` ``[n, 1, L, C]`` (or ``[n, L, C]``) and valid-token ``mask`` ``[n, L]`` (None = all)."""

    y: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self):
        if self.y.dim() == 3:
            self.y = self.y[:, None]
        if self.y.dim() != 4:
            raise ValueError(f"caption features must be [n, 1, L, C]; got shape {list(self.y.shape)}")
        if self.mask is not None:
            if self.mask.shape != (self.y.shape[0], self.y.shape[2]):
                raise ValueError(
                    f"text mask shape {list(self.mask.shape)} does not match caption features {list(self.y.shape)}"
                )
            if (self.mask.sum(dim=1) == 0).any():
                raise ValueError("a caption has no valid tokens (its mask is all zeros); encode a non-empty prompt")

    @property
    def batch(self) -> int:
        return self.y.shape[0]

    @property
    def full_mask(self) -> torch.Tensor:
        if self.mask is not None:
            return self.mask.long()
        return torch.ones(self.y.shape[0], self.y.shape[2], dtype=torch.long, device=self.y.device)


def null_condition(model, cond: TextCondition) -> TextCondition:
    """The learned empty caption, cut to the conditional prompt's tokens (upstream's CFG branch)."""
    table = model.y_embedder.y_embedding  # [max_length, C]
    length = cond.y.shape[2]
    if length > table.shape[0]:
        raise ValueError(
            f"the prompt has {length} token slots but the model's null caption has only {table.shape[0]}; "
            f"shorten or truncate the prompt to {table.shape[0]} tokens"
        )
    y = table[:length][None, None].expand(cond.batch, 1, length, table.shape[1])
    return TextCondition(y=y, mask=cond.full_mask)


def _cat_text(a: TextCondition, b: TextCondition) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack two conditions into one batch, padding the shorter token axis (padding is masked out)."""
    length = max(a.y.shape[2], b.y.shape[2])
    ys, masks = [], []
    for cond in (a, b):
        y, mask = cond.y, cond.full_mask.to(cond.y.device)
        pad = length - y.shape[2]
        if pad:
            y = torch.nn.functional.pad(y, (0, 0, 0, pad))
            mask = torch.nn.functional.pad(mask, (0, pad))
        ys.append(y)
        masks.append(mask)
    return torch.cat(ys), torch.cat(masks)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, num_timesteps: int = 1000) -> torch.Tensor:
    """``(1 - t/T) * x0 + (t/T) * noise``, ``t`` per sample."""
    weight = (t.float() / num_timesteps).view(-1, *([1] * (x0.dim() - 1)))
    return (1 - weight) * x0 + weight * noise


ProgressFn = Callable[[int, int, torch.Tensor], None]
CancelFn = Callable[[], bool]


def sample_rectified_flow(
    model,
    z: torch.Tensor,
    cond: TextCondition,
    timesteps: torch.Tensor,
    *,
    cfg_scale: float = 7.0,
    uncond: TextCondition | None = None,
    frame_mask: torch.Tensor | None = None,
    model_kwargs: dict | None = None,
    num_timesteps: int = 1000,
    generator: torch.Generator | None = None,
    batch_cfg: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    tie_frames: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Integrate the flow from ``z`` (noise with reference latents in the kept frames) to t = 0.

    ``z`` ``[n, C, T, H, W]``; ``timesteps`` ``[steps]`` (see ``schedule``);
    ``frame_mask`` ``[n, T]`` or None; ``model_kwargs``: ``fps``, ``height``,
    ``width`` per sample. ``batch_cfg`` runs the conditional and unconditional
    branches in one batch (upstream) instead of one after the other (less
    memory). ``cfg_scale == 1`` skips the unconditional branch. ``progress``
    is called after every step with ``(step, total, z)``; ``cancel`` is
    called before every step and stops the run (raising
    ``GenerationCancelled``) when it returns True; it may also raise its own
    exception. ``tie_frames=(src, dst)`` copies latent frame ``src`` onto
    ``dst`` after every step (used for seamless loops without a reference).
    Returns the final latent in float32.
    """
    model_kwargs = dict(model_kwargs or {})
    n, channels = z.shape[0], z.shape[1]
    device = z.device
    z = z.float().clone()
    timesteps = timesteps.float().to(device)
    dts = step_sizes(timesteps, num_timesteps)
    guided = cfg_scale != 1.0
    if guided:
        uncond = uncond if uncond is not None else null_condition(model, cond)
        if uncond.batch != n:
            uncond = TextCondition(uncond.y.expand(n, *uncond.y.shape[1:]), uncond.full_mask.expand(n, -1))
    if frame_mask is not None:
        frame_mask = frame_mask.float().to(device)
        noise_added = frame_mask == 1

    if guided and batch_cfg:
        y_all, mask_all = _cat_text(cond, uncond)
        kwargs_all = {k: _repeat(v, 2) for k, v in model_kwargs.items()}

    total = len(timesteps)
    for i in range(total):
        if cancel is not None and cancel():
            raise GenerationCancelled(f"generation cancelled at step {i + 1} of {total}")
        t = timesteps[i].expand(n)
        x_mask = None
        if frame_mask is not None:
            x0 = z.clone()
            active = frame_mask * num_timesteps >= t[:, None]
            fresh = active & ~noise_added
            if fresh.any():
                noise = torch.randn(z.shape, generator=generator, dtype=torch.float32, device="cpu").to(device)
                z = torch.where(fresh[:, None, :, None, None], add_noise(x0, noise, t, num_timesteps), x0)
            noise_added = active
            x_mask = active

        if not guided:
            v = _velocity(model, z, t, cond.y, cond.mask, x_mask, model_kwargs, channels)
        elif batch_cfg:
            both = _velocity(
                model, torch.cat([z, z]), torch.cat([t, t]), y_all, mask_all,
                None if x_mask is None else torch.cat([x_mask, x_mask]), kwargs_all, channels,
            )
            v_cond, v_uncond = both.chunk(2)
            v = v_uncond + cfg_scale * (v_cond - v_uncond)
        else:
            v_cond = _velocity(model, z, t, cond.y, cond.full_mask, x_mask, model_kwargs, channels)
            v_uncond = _velocity(model, z, t, uncond.y, uncond.full_mask, x_mask, model_kwargs, channels)
            v = v_uncond + cfg_scale * (v_cond - v_uncond)

        z = z + v * dts[i]
        if not bool(torch.isfinite(z).all()):
            raise NonFiniteError(
                f"the model produced NaN or infinite values at step {i + 1} of {total}: its weights may be damaged "
                "(load or download the file again), or the guidance scale (cfg) is too high for it"
            )
        if frame_mask is not None:
            z = torch.where(active[:, None, :, None, None], z, x0)
        if tie_frames is not None:
            z[:, :, tie_frames[1]] = z[:, :, tie_frames[0]]
        if progress is not None:
            progress(i + 1, total, z)
    return z


def _repeat(value, times: int):
    if torch.is_tensor(value) and value.dim() > 0:
        return value.repeat(times, *([1] * (value.dim() - 1)))
    return value


def _velocity(model, z, t, y, mask, x_mask, kwargs, channels) -> torch.Tensor:
    out = model(z, t, y, mask=mask, x_mask=x_mask, **kwargs)
    return out[:, :channels].float()
