"""The built-in model's decoder: the reference's own pixels moved by a motion field (no network involved)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from charmotion.dit_core.builtin.codec import FieldConfig, MotionFieldCodec
from charmotion.dit_core.builtin.sprite import frames_over_key, prepare_sprite, working_frame
from charmotion.dit_core import images
from charmotion.dit_core.builtin.warp import warp
from charmotion.dit_core.errors import InvalidInputError


def random_sprite(height: int, width: int, seed: int = 0, *, soft: bool = False) -> np.ndarray:
    """A blob of random colours on a transparent canvas (hard or anti-aliased edges)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    r = np.hypot((ys - 0.55 * height) / (0.3 * height), (xs - 0.5 * width) / (0.25 * width))
    alpha = np.clip((1.0 - r) * 6.0, 0, 1) if soft else (r < 1.0).astype(float)
    palette = rng.integers(0, 256, size=(12, 3))
    rgb = palette[rng.integers(0, 12, size=(height, width))]
    return np.concatenate([rgb, np.rint(alpha * 255)[..., None]], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (256, 256), (80, 48), (33, 47)])
@pytest.mark.parametrize("soft", [False, True])
def test_the_identity_field_gives_the_reference_exactly(size, soft):
    codec = MotionFieldCodec()
    image = random_sprite(*size, soft=soft)
    sprite = prepare_sprite(image)
    assert sprite.mode == ("bilinear" if soft else "nearest")
    z = codec.identity(sprite)[None].expand(1, -1, 5, -1, -1)
    moved = codec.warp(z, sprite)
    torch.testing.assert_close(moved, sprite.rgba[None, :, None].expand_as(moved), atol=1e-5, rtol=0)
    frames = frames_over_key(moved[0], sprite.key_color)
    assert np.array_equal(frames[0], sprite.composited()) and np.array_equal(frames[0], frames[-1])


def test_nearest_moving_keeps_the_palette_and_hard_alpha():
    codec = MotionFieldCodec()
    image = random_sprite(64, 64, seed=1)
    sprite = prepare_sprite(image)
    g = codec.config.grid
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 6, g, g, generator=gen)  # any field at all
    rgba = codec.warp(z, sprite)
    frames = frames_over_key(rgba[0], sprite.key_color)
    allowed = {tuple(c) for c in sprite.composited().reshape(-1, 3)} | {sprite.key_color}
    assert {tuple(c) for c in frames.reshape(-1, 3)} <= allowed
    assert set(torch.unique(rgba[:, 3]).tolist()) <= {0.0, 1.0}  # pixel art stays crisp: no blended alpha


def test_transparent_stays_transparent_and_occupancy_removes_pixels():
    codec = MotionFieldCodec()
    image = random_sprite(64, 64, seed=2)
    sprite = prepare_sprite(image)
    g = codec.config.grid
    identity = codec.identity(sprite)[None]
    empty = identity.clone()
    empty[:, 2] = -1.0  # occupancy 0 everywhere: nothing drawn
    assert float(codec.warp(empty, sprite).abs().max()) == 0.0
    moved = identity.clone()
    moved[:, 0] = 0.2 / codec.config.displacement_scale  # every pixel's source 0.2 frame widths to the right
    moved[:, 2] = 1.0
    rgba = codec.warp(moved, sprite)[0, :, 0]
    assert torch.equal(rgba[:, :, :51], sprite.rgba[:, :, 13:])  # moved left by 12.8 px (nearest: 13)
    assert float(rgba[3, :, 51:].max()) == 0.0  # sources off the reference are transparent
    blank = replace(sprite, rgba=torch.zeros_like(sprite.rgba))  # (a blank image is refused before it gets here)
    out = codec.warp(torch.randn(1, 3, 2, g, g), blank)
    assert float(out.abs().max()) == 0.0  # a transparent sprite stays transparent


def test_one_field_animates_any_size_alike():
    """The field is resolution independent: the same latents move a sprite and its 4x enlargement alike."""
    codec = MotionFieldCodec()
    small = random_sprite(64, 64, seed=3)
    big = small.repeat(4, axis=0).repeat(4, axis=1)
    z = codec.identity(prepare_sprite(small))[None].repeat(1, 1, 3, 1, 1)
    z[:, 1, 1:] = 0.6  # every pixel's source 0.06 frame heights lower: the sprite moves up
    z[:, 2] = 1.0
    a = codec.warp(z, prepare_sprite(small))[0]
    b = codec.warp(z, prepare_sprite(big))[0]
    assert torch.equal(b[:, :, 1::4, 1::4], a) and not torch.equal(a[:, 1], a[:, 0])


def test_the_working_frame_matches_training_placement():
    alpha = np.zeros((64, 64), np.uint8)
    alpha[20:57, 24:40] = 255  # 37 px tall (0.58), feet at 0.89, centred: as drawn in training
    assert working_frame(alpha) == (0.0, 0.0, 64.0)
    tight = np.full((32, 20), 255, np.uint8)  # a tightly cropped sprite: the frame gives it room around
    x0, y0, size = working_frame(tight)
    assert size == pytest.approx(32 / 0.6) and y0 + 0.88 * size == pytest.approx(32) and x0 + size / 2 == 10
    codec = MotionFieldCodec()
    sprite = prepare_sprite(np.dstack([np.full((32, 20, 3), 90, np.uint8), tight]))
    context = codec.appearance(sprite)
    assert context.shape == (1, codec.config.appearance_channels, 1, 32, 32)
    assert float(context.min()) == -1.0 and float(context.max()) > -1.0  # transparent margin around the sprite


def test_a_tightly_cropped_sprite_gets_room_to_move():
    blob = random_sprite(40, 24)
    rows, cols = np.nonzero(blob[..., 3])
    tight = blob[rows.min():rows.max() + 1, cols.min():cols.max() + 1]  # cropped to the character, as games ship them
    kept = prepare_sprite(tight, canvas="keep")
    grown = prepare_sprite(tight)
    top, bottom, left, right = grown.margins
    assert kept.margins == (0, 0, 0, 0) and top > bottom > 0 and left > 0 and right > 0  # most room above
    assert (grown.height, grown.width) == (kept.height + top + bottom, kept.width + left + right)
    assert grown.image_size == (kept.height, kept.width)
    assert torch.equal(grown.rgba[:, top:top + kept.height, left:left + kept.width], kept.rgba)  # the same pixels
    assert float(grown.rgba[3].sum()) == float(kept.rgba[3].sum())  # transparent around them
    x0, y0, size = grown.frame
    assert (x0, y0, size) == pytest.approx((kept.frame[0] + left, kept.frame[1] + top, kept.frame[2]))
    assert 0 <= x0 and 0 <= y0 and x0 + size <= grown.width and y0 + size <= grown.height  # the frame is inside
    assert grown.height % 2 == 0 and grown.width % 2 == 0  # grown sides are even, as video formats want
    assert f"grew from {kept.width}x{kept.height} to {grown.width}x{grown.height}" in grown.notes[0]
    # placed as in training, asked for a size, or opaque: the canvas stays
    placed = np.zeros((64, 64, 4), np.uint8)
    placed[20:57, 24:40] = 200
    assert prepare_sprite(placed).margins == (0, 0, 0, 0) and not prepare_sprite(placed).notes
    assert prepare_sprite(tight, size=(60, 40)).rgba.shape == (4, 60, 40)
    photo = np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8)
    assert prepare_sprite(photo).margins == (0, 0, 0, 0)
    # given margins are applied exactly (a pose image joining a grown reference)
    assert prepare_sprite(placed, margins=(1, 2, 3, 4)).rgba.shape == (4, 67, 71)
    with pytest.raises(InvalidInputError, match="canvas"):
        prepare_sprite(tight, canvas="wide")


def test_opaque_images_on_a_flat_background_move_only_the_character():
    image = np.full((40, 40, 3), 30, np.uint8)
    image[10:30, 15:25] = (220, 180, 40)
    sprite = prepare_sprite(image)
    assert not sprite.had_alpha and sprite.key_color == (30, 30, 30)  # the clip stays on the image's background
    assert float(sprite.rgba[3, 0, 0]) == 0.0 and float(sprite.rgba[3, 20, 20]) == 1.0
    assert np.array_equal(sprite.composited(), image)
    padded = prepare_sprite(image, size=(40, 80))  # and so do the padding and any margins
    assert np.array_equal(padded.composited()[:, :20], np.full((40, 20, 3), 30, np.uint8))
    assert prepare_sprite(image, background="#ff00ff").key_color == (255, 0, 255)  # unless another is asked for
    photo = np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8)
    assert float(prepare_sprite(photo).rgba[3].min()) == 1.0  # no flat background: the whole picture moves


def test_an_image_with_nothing_visible_is_refused():
    sprite = random_sprite(32, 32)
    for alpha in (0, 5):  # fully transparent, or so faint that nothing shows
        with pytest.raises(InvalidInputError, match="no visible pixels .* no character to move"):
            prepare_sprite(np.concatenate([sprite[..., :3], np.full((32, 32, 1), alpha, np.uint8)], axis=-1))
    with pytest.raises(InvalidInputError, match="no visible pixels"):
        prepare_sprite(sprite[..., :3], alpha=np.zeros((32, 32), np.float32))  # a mask that hides everything
    ghost = sprite.copy()
    ghost[..., 3] = np.where(sprite[..., 3] > 0, 40, 0)  # a faint ghost still moves
    assert float(prepare_sprite(ghost).rgba[3].max()) == pytest.approx(40 / 255)


def test_sizes_fits_and_modes():
    image = random_sprite(40, 20)
    assert prepare_sprite(image, size=(80, 80), fit="pad").rgba.shape == (4, 80, 80)
    padded = prepare_sprite(image, size=(80, 80), fit="pad")
    assert float(padded.rgba[3, :, :19].max()) == 0.0  # the narrow sprite centred, transparent beside it
    assert prepare_sprite(image, size=(30, 60), fit="crop").rgba.shape == (4, 30, 60)
    assert prepare_sprite(random_sprite(40, 40, soft=True), mode="nearest").mode == "nearest"
    with pytest.raises(InvalidInputError, match="warp mode"):
        prepare_sprite(image, mode="cubic")
    with pytest.raises(InvalidInputError, match="fit"):
        prepare_sprite(image, size=(10, 10), fit="zoom")
    with pytest.raises(ValueError, match="working frame"):
        warp(torch.zeros(1, 4, 8, 6), torch.zeros(1, 2, 1, 4, 4))


def test_a_pose_image_is_reached_by_a_fitted_field():
    codec = MotionFieldCodec()
    image = random_sprite(64, 64, seed=4, soft=True)
    source = prepare_sprite(image)
    target = prepare_sprite(np.roll(image, (5, -4), axis=(0, 1)))
    z = codec.fit_pose(source, target)
    assert z.shape == (3, 1, 32, 32)
    redrawn = codec.warp(z[None], source)[0, :, 0]
    assert (redrawn - target.rgba).abs().mean() < 0.15 * (source.rgba - target.rgba).abs().mean()
    with pytest.raises(InvalidInputError, match="reference's size"):
        codec.fit_pose(source, prepare_sprite(image[:32]))
    with torch.inference_mode():  # as ComfyUI runs every node: the sprites and the codec's caches made in it too
        fresh = MotionFieldCodec()
        source, target = prepare_sprite(image), prepare_sprite(np.roll(image, (5, -4), axis=(0, 1)))
        fresh.warp(fresh.identity(source)[None], source)
        torch.testing.assert_close(fresh.fit_pose(source, target), z)


def test_the_bound_decoder_is_a_video_codec_with_one_latent_frame_per_frame():
    from charmotion.dit_core.codecs import VideoCodec

    codec = MotionFieldCodec().bind(prepare_sprite(random_sprite(48, 40)))
    assert isinstance(codec, VideoCodec)
    assert codec.latent_frames(16) == 16 and codec.layout.latent_frames(16) == 16
    z = MotionFieldCodec().identity(codec.sprite)[None].expand(1, -1, 6, -1, -1)
    assert codec.decode(z, 4).shape[2] == 4
    with pytest.raises(InvalidInputError, match="continue a clip from its latents"):
        codec.encode(torch.zeros(1, 3, 4, 48, 40))


def test_companded_latents_round_trip_and_enlarge_small_moves():
    plain, companded = MotionFieldCodec(), MotionFieldCodec(FieldConfig(displacement_power=0.5))
    displacement = torch.tensor([0.0, 0.005, -0.005, 0.02, -0.2, 0.7]).view(1, 2, 1, 1, 3)
    occupancy = torch.tensor([0.0, 1.0, 1.0]).view(1, 1, 1, 1, 3)
    z = companded.to_latents(displacement, occupancy)
    assert torch.allclose(z[:, :2], displacement.sign() * (displacement.abs() / 0.2).sqrt())
    back, occ = companded.from_latents(z)
    assert torch.allclose(back, displacement, atol=1e-7) and torch.equal(occ, occupancy)
    # a one-third-pixel move (0.005 frame heights) is 0.16 latent units instead of 0.025; a half-frame move shrinks
    assert float(z[0, 0, 0, 0, 1]) == pytest.approx(0.158, abs=1e-3)
    assert float(plain.to_latents(displacement, occupancy)[0, 0, 0, 0, 1]) == pytest.approx(0.025)
    assert float(z[0, 1, 0, 0, 2]) == pytest.approx((0.7 / 0.2) ** 0.5)


def test_the_decoder_smooths_cell_noise_but_keeps_smooth_moves():
    codec = MotionFieldCodec(FieldConfig(grid=16, smoothing=0.8))
    uniform = torch.full((1, 2, 3, 16, 16), 0.05)
    assert torch.allclose(codec.smooth(uniform), uniform, atol=1e-7)  # a move of the whole sprite stays exact
    cols = torch.arange(16, dtype=torch.float32)
    ramp = (0.01 * cols).expand(1, 2, 1, 16, 16).clone()  # a stretch: displacement grows across the frame
    assert torch.allclose(codec.smooth(ramp)[..., 3:-3], ramp[..., 3:-3], atol=1e-6)  # linear fields pass
    spike = torch.zeros(1, 2, 1, 16, 16)
    spike[..., 8, 8] = 0.1  # one cell moving on its own: the noise that shimmers and tears
    smoothed = codec.smooth(spike)
    assert float(smoothed.max()) < 0.3 * 0.1 and float(smoothed.sum()) == pytest.approx(float(spike.sum()))
    assert torch.equal(MotionFieldCodec().smooth(spike), spike)  # smoothing 0: the field as generated
    sprite = prepare_sprite(random_sprite(40, 40, soft=True))
    identity = codec.identity(sprite)[None].repeat(1, 1, 2, 1, 1)
    assert torch.equal(codec.warp(identity, sprite)[0, :, 1], sprite.rgba)  # frame 0 is still the reference exactly


def test_a_sprite_sheet_given_as_one_reference_gets_a_note():
    pose = random_sprite(40, 32)
    sheet = np.concatenate([pose, np.roll(pose, 2, axis=0), pose, pose], axis=1)  # four poses in a row
    assert images.separate_figures(sheet[..., 3]) == 4
    prepared = prepare_sprite(sheet)
    assert "4 separate figures" in " ".join(prepared.notes)
    assert prepared.margins == (0, 0, 0, 0)  # a sheet keeps its canvas (a strip would grow to a huge square)
    one = pose.copy()
    one[2:5, 2:5] = (200, 40, 40, 255)  # a small loose part (a spark, a held item) is not a second figure
    assert images.separate_figures(one[..., 3]) == 1 and not prepare_sprite(one, canvas="keep").notes
    rows, cols = np.nonzero(pose[..., 3])
    tight = pose[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    gap = np.zeros((1, tight.shape[1], 4), np.uint8)
    column = np.concatenate([tight, gap, tight, gap, tight], axis=0)  # poses one under another, 1-pixel gaps
    assert images.separate_figures(column[..., 3]) == 3
