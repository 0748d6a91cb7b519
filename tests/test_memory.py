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


def open_sora_vae(dtype=torch.bfloat16, tile=None):
    from charmotion.dit_core.vae import OpenSoraVAE

    with torch.device("meta"):  # the published layout, no weights
        return OpenSoraVAE(tiling=tile).to(dtype)


def test_the_open_sora_vae_decode_is_counted_by_its_feature_maps():
    """Its 2-D decoder holds 256-channel maps of four frames at full resolution: a 720p x 51 decode in bfloat16
    needs about 10 GB and must not pass on 8 GB free (it passed at 1.9 GB on a flat 48 bytes per pixel)."""
    vae = open_sora_vae()
    args = dict(device="meta", num_frames=51, available=8 * 2**30)
    with pytest.raises(InvalidInputError) as info:
        memory.check_decode(vae, size=(1280, 720), **args)
    message = str(info.value)
    assert "decoding 1280x720 pixels at 51 frames needs about 1" in message and " GB of memory" in message
    # the advice: a smaller size, or tiling, which is enough here
    assert "use at most " in message and "fewer frames" in message
    assert "spatial tiles of 512 pixels (tile_size on the CharMotion VAE Loader), which would fit" in message
    need = memory.check_decode(vae, size=(640, 360), **args).decode
    widest = 4 * 640 * 360 * 256 * 2  # one 256-channel bfloat16 map of 4 frames at full resolution
    assert 4 * widest < need < 8 * widest
    # the same counts in the sampler's check, which decodes too
    model = RecordingModel(channels=4)
    model.config.hidden_size, model.config.depth, model.config.num_heads = 64, 2, 4
    generation = memory.check_generation(model, device="cpu", latent_frames=15, latent_height=90, latent_width=160,
                                         batch=2, spatial_factor=8, num_frames=51, codec=vae, available=2**40)
    alone = memory.check_decode(vae, device="cpu", num_frames=51, size=(1280, 720), available=2**40)
    assert generation.decode == alone.decode + alone.weights > alone.weights > 0  # the VAE's weights not on the CPU yet
    assert memory.check_generation(model, device="cpu", latent_frames=15, latent_height=90, latent_width=160, batch=2,
                                   spatial_factor=8, num_frames=51, codec=vae, available=2**40, decode=False).decode == 0


def test_a_tiled_open_sora_vae_decode_is_counted_by_its_tiles():
    untiled, tiled, small = open_sora_vae(), open_sora_vae(tile=512), open_sora_vae(tile=256)
    args = dict(device="meta", num_frames=51, size=(1280, 720), available=2**40)
    assert memory.check_decode(tiled, **args).decode < memory.check_decode(untiled, **args).decode / 2
    assert memory.check_decode(small, **args).decode < memory.check_decode(tiled, **args).decode
    # a smaller tile is named when the tiles are still too large, the largest that fits
    args["available"] = 4 * 2**30
    with pytest.raises(InvalidInputError, match=r"spatial tiles of 384 pixels \(tile_size on the CharMotion VAE "
                                                r"Loader\), which would fit"):
        memory.check_decode(tiled, **args)
    assert memory.check_decode(small, **args) is not None
    # too large even in the smallest tiles: the advice is a smaller size, not tiling again
    args["available"] = 2 * 2**30
    with pytest.raises(InvalidInputError) as info:
        memory.check_decode(small, **args)
    assert "use at most " in str(info.value) and "tile" not in str(info.value)


def test_the_readme_open_sora_defaults_fit_an_8_gb_gpu():
    """426x240 x 51 frames, cfg 7, the XL/2 model and the VAE in bfloat16, their weights already on the GPU."""
    from charmotion.dit_core.families import OPENSORA12_PROFILE
    from charmotion.dit_core.models import build_stdit3
    from charmotion.dit_core.pipeline import check_memory

    model = build_stdit3(dict(depth=28, hidden_size=1152, num_heads=16), device="meta").to(torch.bfloat16)
    vae = open_sora_vae()
    free = 8 * 2**30 - memory._module_bytes(model) - memory._module_bytes(vae) - 2**29  # and a CUDA context
    memory_available = memory.available_bytes
    try:
        memory.available_bytes = lambda device: free
        assert check_memory(model, OPENSORA12_PROFILE, num_frames=51, height=240, width=426, cfg_scale=7.0,
                            codec=vae) is not None
    finally:
        memory.available_bytes = memory_available
    assert memory.check_decode(vae, device="meta", num_frames=51, size=(426, 240), available=free) is not None
