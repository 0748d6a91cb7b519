"""Ground-truth motion fields of the drawn clips (training.fields) and the latents the built-in model learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charmotion.dit_core.builtin.codec import MotionFieldCodec
from charmotion.dit_core.builtin.sprite import frames_over_key
from charmotion.dit_core.builtin.warp import warp
from charmotion.training import dataset as D
from charmotion.training import fields as F
from charmotion.training import metrics as M
from charmotion.training import sprites as S
from charmotion.training.actions import ACTION_NAMES, get_action


def _drawn(action: str, seed: int, amplitude: float = 0.7):
    example = D.make_example(seed, "heldout", 16, 64, action=action, amplitude=amplitude)
    ch = D.make_character(example["character_id"], require=get_action(action).requires)
    pose = get_action(action).clip_pose(16, amplitude, side=example["side"])
    rgb, alpha, parts, bones = S.render_parts(ch, pose, 64, n=16)
    return example, ch, rgb, alpha, parts, bones


def test_render_parts_draws_what_render_draws_and_names_the_part_of_every_covered_pixel():
    ch = D.make_character(5)
    pose = get_action("wave").clip_pose(6, 0.8)
    rgb, alpha, parts, bones = S.render_parts(ch, pose, 64, n=6)
    plain_rgb, plain_alpha = S.render(ch, pose, 64, n=6)
    assert np.array_equal(rgb, plain_rgb) and np.array_equal(alpha, plain_alpha)
    assert not (parts >= 0)[alpha == 0].any() and (parts >= 0)[alpha > 0.01].all()  # covered pixels have a part
    assert set(np.unique(parts[parts >= 0])) <= set(range(len(bones)))


def psnr(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[keep].mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def test_frame_0_moved_by_the_true_field_redraws_the_clip():
    """Every pixel's source, from the bones: frame 0's pixels moved there (dense, where the character is) redraw
    the drawn frames of held-out clips, pixels newly uncovered excepted. Smooth art: median 35 dB; pixel art is
    redrawn at its low resolution in every pose (edges fall on other pixels than moved ones do): median 26 dB."""
    by_style = {"smooth": [], "pixel": []}
    for i, action in enumerate(ACTION_NAMES):
        example, ch, rgb, alpha, parts, bones = _drawn(action, 1000 * i + 1)
        points, uncovered = F.backward_field(parts, bones)
        assert np.array_equal(points[0], F._pixel_centres(64, 64))
        assert not uncovered[0].any() and uncovered.mean() < 0.05
        displacement = torch.from_numpy(F.dense_displacement(points)).permute(1, 0, 2, 3)[None]
        source = torch.from_numpy(np.concatenate([rgb[0], alpha[0][..., None]], axis=-1)).permute(2, 0, 1)[None]
        mode = "nearest" if ch.style == "pixel" else "bilinear"
        moved = warp(source.float(), displacement, mode=mode)[0] * torch.from_numpy(alpha > 0)[None]
        frames = frames_over_key(moved, example["key_color"])
        assert np.array_equal(frames[0], example["frames"][0])
        keep = np.broadcast_to(~uncovered[1:, ..., None], frames[1:].shape)
        by_style[ch.style].append(psnr(frames[1:], example["frames"][1:], keep))
    assert np.median(by_style["smooth"]) > 32 and np.median(by_style["pixel"]) > 24, by_style


def test_a_blink_uncovers_skin_from_around_the_eye():
    for seed in range(200):
        example, ch, rgb, alpha, parts, bones = _drawn("blink", seed, 1.0)
        if ch.style == "smooth":
            break
    points, uncovered = F.backward_field(parts, bones)
    names = sorted(bones)
    closed = int(np.argmax([((parts[t] == names.index("eye_l")) | (parts[t] == names.index("eye_r"))).sum() * -1
                            for t in range(16)]))
    assert uncovered[closed].sum() > 4  # skin the open eye hid
    ys, xs = np.nonzero(uncovered[closed])
    src = points[closed][ys, xs]
    seen = parts[0][np.floor(src[:, 1]).astype(int), np.floor(src[:, 0]).astype(int)]
    assert np.array_equal(seen, parts[closed][ys, xs])  # each shows its own part (the head), not the eye


def test_the_latents_through_the_warp_decoder_show_the_requested_actions():
    """What the built-in model learns, decoded as it decodes its own clips: the tracker recognises the action in
    nearly every held-out clip (the benchmark's ceiling, ``python -m training benchmark --ground-truth``)."""
    codec = MotionFieldCodec()
    recognised = []
    for i, action in enumerate(ACTION_NAMES):
        example = D.make_example(1000 * i, "heldout", 16, 64, action=action, amplitude=0.7, codec=codec)
        z = torch.from_numpy(example["latents"])
        assert np.array_equal(z[:, :1].numpy(), codec.identity(example["sprite"]).numpy())
        clip = frames_over_key(codec.warp(z[None], example["sprite"])[0], example["key_color"])
        assert np.array_equal(clip[0], example["frames"][0])
        recognised.append(M.recognise_action(clip, example["key_color"], action))
    assert np.mean(recognised) >= 0.94, dict(zip(ACTION_NAMES, recognised))


@pytest.mark.parametrize("action", ["jump", "walk_right", "wave", "spin"])
def test_latents_grow_with_the_motion_strength(action):
    codec = MotionFieldCodec()
    sizes = []
    for amplitude in (0.2, 0.6, 1.0):
        example = D.make_example(7, "train", 16, 64, action=action, amplitude=amplitude, codec=codec)
        sizes.append(float(np.abs(example["latents"][:2]).mean()))
    assert sizes[0] < sizes[1] < sizes[2]


def _overall_recognised(text: str) -> str:
    return next(line.split()[2] for line in text.splitlines() if line.startswith("overall"))


def test_benchmark_scores_the_targets_through_another_field(capsys):
    """``--ground-truth --field``: the ceiling a model with another field could reach, without training one. The
    shipped field's 4-pixel cells, smoothed, lose a wave; 2-pixel cells unsmoothed keep it."""
    from charmotion.training.benchmark import main

    common = ["--ground-truth", "--actions", "talk,wave", "--characters", "1", "--levels", "0.7"]
    assert main(common) == 0
    shipped = capsys.readouterr().out
    assert main([*common, "--field", '{"grid": 32, "smoothing": 0}']) == 0
    finer = capsys.readouterr().out
    assert (_overall_recognised(shipped), _overall_recognised(finer)) == ("50%", "100%")
    for argv, message in ((["--field", '{"grid": 32}'], "add --ground-truth"),
                          ([*common, "--field", '{"grd": 32}'], "--field has unknown setting(s) field.grd"),
                          ([*common, "--field", "32"], "--field takes a JSON object of field settings, e.g."),
                          ([*common, "--field", "{grid: 32}"], "--field is not JSON")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    assert torch.is_grad_enabled()  # the command left the process as it found it
