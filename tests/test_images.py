"""Reference-image preprocessing (dit_core.images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from charmotion.dit_core import images
from charmotion.dit_core.errors import InvalidInputError


def upstream_resize_crop(rgb: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Open-Sora 1.2's resize_crop_to_fill, written out for the comparison (PIL in, array out)."""
    pil = Image.fromarray(rgb)
    w, h = pil.size
    rh, rw = th / h, tw / w
    if rh > rw:
        sh, sw = th, round(w * rh)
        i, j = 0, int(round((sw - tw) / 2.0))
    else:
        sh, sw = round(h * rw), tw
        i, j = int(round((sh - th) / 2.0)), 0
    arr = np.array(pil.resize((sw, sh), Image.BICUBIC))
    return arr[i : i + th, j : j + tw]


@pytest.mark.parametrize("src,dst", [((48, 40), (240, 426)), ((300, 200), (240, 426)), ((97, 131), (320, 320)),
                                     ((64, 64), (64, 64))])
def test_resize_to_fill_matches_upstream(src, dst):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    out = images.resize_to_fill(rgb, *dst)
    assert out.shape == (*dst, 3)
    np.testing.assert_array_equal(out, upstream_resize_crop(rgb, *dst))


def test_crop_is_centred():
    rgb = np.zeros((10, 40, 3), np.uint8)
    rgb[:, :5] = 255  # a white band on the far left is cropped away
    rgb[:, 18:22] = (255, 0, 0)  # the centre stays in the middle
    out = images.resize_to_fill(rgb, 20, 20)
    assert out.shape == (20, 20, 3)
    assert out[:, 0].max() < 200  # no white left over
    red = np.where((out[10, :, 0] > 200) & (out[10, :, 1] < 60))[0]
    assert red.min() >= 6 and red.max() <= 13  # centred: pixels 6..13 of 20


def test_pad_fits_inside_and_fills_with_colour():
    rgb = np.full((20, 10, 3), 200, np.uint8)
    out = images.resize_to_fit(rgb, 40, 40, (255, 0, 255))
    assert out.shape == (40, 40, 3)
    assert (out[:, :10] == (255, 0, 255)).all() and (out[:, 30:] == (255, 0, 255)).all()
    assert (out[:, 10:30] == 200).all()  # 20x10 scaled 2x = 40x20, centred


def test_pixel_art_upscale_is_nearest_by_whole_factors():
    rng = np.random.default_rng(1)
    art = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = images.resize_to_fill(art, 64, 64, pixel_art=True)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(art, 4, 0), 4, 1))
    blurred = images.resize_to_fill(art, 64, 64)
    assert not np.array_equal(blurred, out)
    # a remaining non-integer factor: 16 -> 40 is 2x nearest, then 1.25x bicubic
    out = images.resize_to_fill(art, 40, 40, pixel_art=True)
    assert out.shape == (40, 40, 3)


def test_buckets_and_budgets():
    assert images.bucket_size("240p", 240 / 426) == (240, 426)  # landscape ("9:16" upstream)
    assert images.bucket_size("240p", 1.0) == (320, 320)
    assert images.bucket_size("480p", 2.3) == (924, 444)  # beyond the table: the nearest (tallest) bucket
    assert images.bucket_size("144p", 0.8) == (166, 221)
    assert images.budget_size(64 * 64, 1.0, 8) == (64, 64)
    assert images.budget_size(64 * 64, 2.0, 8) == (88, 48)
    with pytest.raises(InvalidInputError, match="resolution"):
        images.bucket_size("1080p", 1.0)


def test_dominant_edge_colour():
    rgb = np.full((20, 30, 3), (0, 255, 0), np.uint8)
    rgb[5:15, 10:20] = (200, 30, 30)
    rgb[0, :4] = (3, 250, 4)  # noise on the edge stays in the group
    assert images.dominant_edge_color(rgb) == (0, 255, 0)
    mixed = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert images.dominant_edge_color(mixed) is None


def test_auto_key_colour_avoids_the_sprite_colours():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (250, 10, 250)  # a magenta sprite: magenta cannot be the key
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:4] = 255
    key, distance = images.auto_key_color(rgb, alpha)
    assert key == (0, 255, 0) and distance > images.SAFE_KEY_DISTANCE


def test_rgba_reference_is_composited_on_a_remembered_key():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = (30, 60, 200, 255)
    rgba[0, 0] = (1, 2, 3, 0)  # transparent pixels' RGB is ignored
    prep = images.prepare_reference(rgba, height=32, width=32, fit="crop", pixel_art=True)
    assert prep.had_alpha and prep.key_color == (255, 0, 255)
    assert prep.rgb.shape == (32, 32, 3)
    assert (prep.rgb[0, 0] == (255, 0, 255)).all() and (prep.rgb[16, 16] == (30, 60, 200)).all()
    assert prep.pixels.shape == (3, 32, 32) and prep.pixels.dtype == torch.float32
    assert prep.pixels.min() >= -1.0 and prep.pixels.max() <= 1.0
    np.testing.assert_allclose(prep.pixels[:, 0, 0].numpy(), [1.0, -1.0, 1.0], atol=1e-6)
    assert prep.video().shape == (1, 3, 1, 32, 32)
    # a chosen background wins, and an alpha from a (resized) mask replaces the image's own
    alpha = np.zeros((8, 8), np.float32)
    alpha[2:6, 2:6] = 1.0
    prep = images.prepare_reference(rgba[..., :3], height=16, width=16, alpha=alpha, background="#00ff00")
    assert prep.key_color == (0, 255, 0) and (prep.rgb[0, 0] == (0, 255, 0)).all()


def test_opaque_and_greyscale_references():
    grey = np.full((12, 12), 0.5, np.float32)
    grey[4:8, 4:8] = 1.0
    prep = images.prepare_reference(grey, height=24, width=24)
    assert not prep.had_alpha and prep.key_color == (128, 128, 128)  # the edge colour
    assert (prep.rgb[..., 0] == prep.rgb[..., 1]).all() and (prep.rgb[..., 1] == prep.rgb[..., 2]).all()
    grey_alpha = np.stack([grey, (grey > 0.75).astype(np.float32)], -1)  # grey + alpha
    prep = images.prepare_reference(grey_alpha, height=12, width=12, fit="stretch")
    assert prep.had_alpha
    with pytest.raises(InvalidInputError, match="fit"):
        images.prepare_reference(grey, height=8, width=8, fit="zoom")
    with pytest.raises(InvalidInputError, match="colour"):
        images.prepare_reference(grey_alpha, height=8, width=8, background="not-a-colour")


def test_parse_helpers():
    assert images.parse_frame_positions("0") == [0]
    assert images.parse_frame_positions("0, -1") == [0, -1]
    assert images.parse_frame_positions("0; 8 ;-1") == [0, 8, -1]
    with pytest.raises(InvalidInputError, match="whole numbers"):
        images.parse_frame_positions("first")
    with pytest.raises(InvalidInputError, match="no frame position"):
        images.parse_frame_positions(" , ")
    assert images.parse_color("magenta") == (255, 0, 255)
    assert images.parse_color("#102030") == (16, 32, 48)
    assert images.parse_color("1, 2, 3") == (1, 2, 3)
    assert images.parse_color((0.0, 255, 10)) == (0, 255, 10)


def test_unmix_key_gives_back_the_colours_that_were_composited_over_the_key():
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 5, 6, 3, generator=gen)
    alpha = torch.rand(2, 5, 6, generator=gen).clamp_min(0.05)
    alpha[0, 0, 0], alpha[0, 4, 0] = 0.0, 1.0  # nothing drawn: the pixel keeps what it shows; fully drawn
    key = (255, 0, 255)
    k = torch.tensor(key, dtype=torch.float32) / 255
    mixed = rgb * alpha[..., None] + (1 - alpha[..., None]) * k
    straight = images.unmix_key(mixed, alpha, key)
    shown = alpha > 0
    assert (straight[shown] - rgb[shown]).abs().max() < 1e-5
    assert torch.equal(straight[0, 0, 0], mixed[0, 0, 0])
    assert images.shows_key_where_clear(mixed, alpha, key)
    assert not images.shows_key_where_clear(mixed.flip(1), alpha, key)  # other frames than the opacity's


def test_read_image_keeps_the_transparency_of_every_png_kind(tmp_path):
    """Alpha channels and tRNS transparent colours (palette, grey and RGB PNGs) all become the image's alpha."""
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[2:5, 3:6] = (200, 40, 40)
    clear = np.ones((6, 8), bool)
    clear[2:5, 3:6] = False
    Image.fromarray(rgb).save(tmp_path / "rgb_trns.png", transparency=(0, 0, 0))
    palette = Image.fromarray(np.where(clear, 0, 1).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 200, 40, 40])
    palette.save(tmp_path / "p_trns.png", transparency=0)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l_trns.png", transparency=0)
    Image.fromarray(np.dstack([rgb[..., 0], np.where(clear, 0, 255).astype(np.uint8)]), "LA").save(tmp_path / "la.png")
    for name in ("rgb_trns.png", "p_trns.png", "l_trns.png", "la.png"):
        got = images.read_image(tmp_path / name)
        assert got.shape == (6, 8, 4) and np.array_equal(got[..., 3] == 0, clear), name
        assert tuple(got[3, 4, :3]) == ((200, 200, 200) if name in ("l_trns.png", "la.png") else (200, 40, 40)), name
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert images.read_image(tmp_path / "rgb.png").shape == (6, 8, 3)  # no transparency: no alpha
