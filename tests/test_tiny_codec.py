"""The built-in model's codecs: shapes, round trips, the fitted PCA basis and how a bundle gets its codec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charmotion.dit_core.tiny import bundle as tiny_bundle
from charmotion.dit_core.tiny.codec import PatchPCACodec, SpaceToDepthCodec
from charmotion.dit_core.tiny.dataset import make_example
from charmotion.dit_core.tiny.evaluate import frames_to_pixels


def sprite_clip(seed: int, split: str = "heldout") -> torch.Tensor:
    return frames_to_pixels(make_example(seed, split, 8, 64)["frames"][None])  # [1, 3, 8, 64, 64]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).mean().item()
    return 10 * np.log10(1.0 / mse)


def test_space_to_depth_is_lossless_and_crops_what_does_not_divide():
    codec = SpaceToDepthCodec(factor=4, scale=0.5)
    x = torch.rand(2, 3, 5, 18, 13) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 48, 5, 4, 3) and codec.latent_channels == 48
    assert torch.equal(z[:, 0, :, 0, 0], x[:, 0, :, 0, 0] * 0.5)
    torch.testing.assert_close(codec.decode(z, 4), x[:, :, :4, :16, :12])


def test_full_rank_pca_round_trip_is_exact():
    frames = torch.cat([sprite_clip(s, "train") for s in range(3)], dim=2)
    codec = PatchPCACodec.fit(frames, components=48)
    torch.testing.assert_close(codec.decode(codec.encode(frames)), frames, atol=1e-4, rtol=0)


def test_shipped_pca_codec_keeps_heldout_sprites():
    codec = tiny_bundle.load_tiny_codec()
    assert isinstance(codec, PatchPCACodec) and codec.latent_channels == 24
    clips = [sprite_clip(900 + s) for s in range(12)]
    z = codec.encode(clips[0])
    assert z.shape == (1, 24, 8, 16, 16)
    scores = [psnr(codec.decode(codec.encode(x)), x) for x in clips]
    # measured on 40 held-out clips: median 36 dB, mean 39 dB, worst 27 dB (busy pixel art)
    assert np.median(scores) > 33.0 and min(scores) > 24.0, scores
    # the latents are roughly unit-scaled, as the sampler's noise expects
    assert 0.3 < float(torch.cat([codec.encode(x) for x in clips]).std()) < 3.0


def test_whitened_fit_gives_every_channel_unit_variance():
    frames = torch.cat([sprite_clip(s, "train") for s in range(4)], dim=2)
    shared = PatchPCACodec.fit(frames, components=8)
    whitened = PatchPCACodec.fit(frames, components=8, whiten=True)
    assert torch.unique(shared.std).numel() == 1
    torch.testing.assert_close(whitened.encode(frames).std(dim=(0, 2, 3, 4)), torch.ones(8), atol=0.02, rtol=0)


def test_a_bundle_gets_its_codec_from_the_caller_or_the_file():
    with pytest.raises(ValueError, match="needs its fitted basis"):
        tiny_bundle.build_tiny()  # the default config names a PCA codec, which must be fitted first
    lossless = tiny_bundle.build_tiny(codec=SpaceToDepthCodec(4))
    assert lossless.model.config.in_channels == 48 and lossless.config["codec"]["kind"] == "space_to_depth"
    shipped = tiny_bundle.load_tiny_codec()
    rebuilt = tiny_bundle.build_tiny(codec=shipped)
    assert rebuilt.model.config.in_channels == 24 and rebuilt.config["codec"]["components"] == 24
    assert set(k for k in rebuilt.state_dict() if k.startswith("tiny_codec.")) == {
        "tiny_codec.mean", "tiny_codec.basis", "tiny_codec.std"}
