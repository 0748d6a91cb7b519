"""Building blocks shared by the spatial and temporal VAEs.

Every layer here computes in the dtype of its *input*: when the activations
and the weights differ (a float16 model re-run in float32 after an overflow),
the weights are cast on the fly, one layer at a time, so no second copy of the
model is ever kept. Group normalisation always computes its statistics in
float32, which is what keeps bfloat16/float16 activations from overflowing or
losing the variance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOW_PRECISION = (torch.float16, torch.bfloat16)


def _as(param: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if param is None or param.dtype == like.dtype:
        return param
    return param.to(like.dtype)


class Conv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _as(self.weight, x), _as(self.bias, x))


class Conv3d(nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _as(self.weight, x), _as(self.bias, x))


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _as(self.weight, x), _as(self.bias, x))


class GroupNorm(nn.GroupNorm):
    """GroupNorm with float32 statistics; returns the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in LOW_PRECISION:
            out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
            return out.to(x.dtype)
        return F.group_norm(x, self.num_groups, _as(self.weight, x), _as(self.bias, x), self.eps)


def check_groups(channels: int, groups: int, where: str) -> None:
    if groups <= 0 or channels % groups:
        raise ValueError(
            f"{where}: {channels} channels cannot be split into {groups} normalisation groups"
        )


def diagonal_gaussian(
    moments: torch.Tensor, *, sample: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """Mean (default) or a sample of the diagonal Gaussian whose mean ‖ log-variance are ``moments`` (dim 1).

    The noise is drawn in float32 on the generator's device (CPU without one)
    and then moved, so a seed gives the same latents on every device.
    """
    mean, logvar = moments.chunk(2, dim=1)
    if not sample:
        return mean
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    noise_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(mean.shape, generator=generator, device=noise_device, dtype=torch.float32)
    return mean + std * noise.to(device=mean.device, dtype=mean.dtype)
