"""Samplers: rectified flow (Open-Sora 1.2) with CFG and per-frame conditioning."""

from .rectified_flow import TextCondition, add_noise, null_condition, sample_rectified_flow
from .schedule import base_timesteps, rectified_flow_timesteps, step_sizes, timestep_ratio, transform_timesteps

__all__ = [
    "TextCondition",
    "add_noise",
    "base_timesteps",
    "null_condition",
    "rectified_flow_timesteps",
    "sample_rectified_flow",
    "step_sizes",
    "timestep_ratio",
    "transform_timesteps",
]
