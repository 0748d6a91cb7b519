"""Memory estimates: a request that does not fit is refused before any work, naming the largest size that does."""

from __future__ import annotations

import pytest
import torch
from fake_models import FrameCodec, RecordingModel

from charmotion.dit_core import memory
from charmotion.dit_core.errors import InvalidInputError


def test_memory_estimate_grows_with_the_clip_and_names_what_fits():
    small = memory.estimate_bytes(latent_frames=16, latent_height=16, latent_width=16, hidden_size=160, batch=2)
    large = memory.estimate_bytes(latent_frames=16, latent_height=64, latent_width=64, hidden_size=160, batch=2)
    assert 12 * small.activations <= large.activations <= 20 * small.activations
    model = RecordingModel(channels=4)
    model.config.hidden_size, model.config.depth, model.config.num_heads = 160, 4, 4
    args = dict(device="cpu", latent_frames=16, batch=2, spatial_factor=4, num_frames=16, codec=FrameCodec())
    assert memory.check_generation(model, latent_height=16, latent_width=16, available=2**30, **args) is not None
    with pytest.raises(InvalidInputError) as info:
        memory.check_generation(model, latent_height=512, latent_width=512, available=2**30, **args)
    message = str(info.value)
    assert "2048x2048 pixels at 16 frames" in message and "1.0 GB free" in message
    side = int(message.split("use at most ")[1].split("x")[0])
    assert 64 <= side < 2048
    fits = memory.check_generation(model, latent_height=side // 4, latent_width=side // 4, available=2**30, **args)
    assert fits is not None
    assert memory.check_generation(model, latent_height=512, latent_width=512, available=None, device="meta",
                                   latent_frames=16, batch=2, spatial_factor=4, num_frames=16) is None


def test_a_fixed_latent_grid_is_checked_by_the_image_it_draws():
    """The built-in warp decoder draws any size from one latent grid: the size, not the grid, decides the memory."""
    model = RecordingModel(channels=2)
    model.config.hidden_size, model.config.depth, model.config.num_heads = 128, 4, 4
    args = dict(device="cpu", latent_frames=16, latent_height=16, latent_width=16, batch=2, spatial_factor=1,
                num_frames=16, codec=FrameCodec(), available=2**30, fixed_grid=True)
    assert memory.check_generation(model, size=(256, 256), **args) is not None
    with pytest.raises(InvalidInputError) as info:
        memory.check_generation(model, size=(20000, 10000), **args)
    message = str(info.value)
    assert "20000x10000 pixels at 16 frames" in message
    width, height = map(int, message.split("use at most ")[1].split(" ")[0].split("x"))
    assert 256 <= width < 20000 and abs(width / height - 2.0) < 0.01  # the image's shape, scaled down
    assert memory.check_generation(model, size=(width, height), **args) is not None


def test_decoding_counts_the_decoder_weights_that_are_not_on_the_device_yet():
    class OffloadedDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(2**29, device="meta"))  # 2 GiB, not on the GPU yet

    args = dict(device="cuda", num_frames=16, size=(64, 64), available=int(1.5 * 2**30))
    assert memory.check_decode(torch.nn.Module(), **args) is not None  # the frames alone fit
    with pytest.raises(InvalidInputError, match=r"decoding 64x64 pixels at 16 frames needs about 2\.\d GB"):
        memory.check_decode(OffloadedDecoder(), **args)
