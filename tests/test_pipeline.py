"""generate(): reference placement, loops, seamless loops, seeds, cancel and input errors."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from charmotion.dit_core.conditioning import (
    FRAME_BY_FRAME,
    OPENSORA_VAE_LAYOUT,
    Placement,
    apply_placements,
    snap_to_chunk,
)
from charmotion.dit_core.errors import GenerationCancelled, InvalidInputError
from charmotion.dit_core.models import load_stdit3
from charmotion.dit_core.families import OPENSORA12_PROFILE, SamplingProfile
from charmotion.dit_core.pipeline import LoopControl, Reference, generate, start_from_references
from charmotion.dit_core.sampling import TextCondition
from fake_models import PoolCodec, RecordingModel
from golden_data import case_weights_path, golden_cases, load_case_tensors

CASE = golden_cases("rf_sample")[0].values[0]


@pytest.fixture(scope="module")
def golden():
    tensors = load_case_tensors(CASE)
    model = load_stdit3(case_weights_path(CASE))
    return model, TextCondition(tensors["y"], tensors["text_mask"])


def image_latent(value: float, h: int = 8, w: int = 12) -> torch.Tensor:
    return torch.full((4, 1, h, w), value)


# -- layouts and placements ----------------------------------------------------

@pytest.mark.parametrize("frames,latents", [(1, 1), (17, 5), (22, 7), (51, 15), (102, 30), (204, 60), (408, 120)])
def test_opensora_frame_to_latent_counts(frames, latents):
    assert OPENSORA_VAE_LAYOUT.latent_frames(frames) == latents


def test_latent_index_of_pixel_frames():
    layout = OPENSORA_VAE_LAYOUT
    assert [layout.latent_index(f, 51) for f in (0, 1, 4, 5, 16, 17, 34, 50, -1)] == [0, 1, 1, 2, 4, 5, 10, 14, 14]
    assert FRAME_BY_FRAME.latent_index(-1, 16) == 15
    # a partial last chunk (40 = 17 + 17 + 6 frames -> 5 + 5 + 2 latents) is padded in front by 2 frames
    assert [layout.latent_index(f, 40) for f in (34, 35, 36, 39)] == [10, 10, 11, 11]
    for frames in (1, 17, 22, 40, 51):
        assert layout.latent_index(frames - 1, frames) == layout.latent_frames(frames) - 1
    with pytest.raises(InvalidInputError, match="outside a clip of 51 frames"):
        layout.latent_index(51, 51)


def test_align_snaps_the_last_frame_to_the_last_chunk_start():
    assert snap_to_chunk(14, 5, 15) == 10  # upstream: "0,0,0,-1,1" lands on latent 10 of 15
    assert snap_to_chunk(3, 5, 15) == 5 and snap_to_chunk(2, 5, 15) == 0


@pytest.mark.parametrize(
    "target,align,expected_index",
    [(0, None, [0]), (-1, None, [14]), (-1, 5, [10]), (7, None, [7])],
    ids=["first", "last", "last-aligned", "any"],
)
def test_single_reference_placement(target, align, expected_index):
    z = torch.zeros(1, 4, 15, 2, 2)
    mask = apply_placements(z, [torch.ones(4, 1, 2, 2)], [Placement(target=target)], align=align)
    assert torch.nonzero(mask[0] == 0).flatten().tolist() == expected_index
    assert z[0, :, expected_index].eq(1).all() and z.sum() == 16


def test_several_references_for_inbetweening_with_strengths():
    z = torch.zeros(2, 4, 16, 2, 2)
    refs = [torch.full((4, 1, 2, 2), 1.0), torch.full((4, 1, 2, 2), 2.0)]
    mask = apply_placements(z, refs, [Placement(0, target=0), Placement(1, target=-1, edit=0.25)])
    assert mask.shape == (2, 16)
    assert mask[:, 0].eq(0).all() and mask[:, 15].eq(0.25).all() and mask[:, 1:15].eq(1).all()
    assert z[:, :, 0].eq(1).all() and z[:, :, 15].eq(2).all()


def test_placement_errors_are_clear():
    z = torch.zeros(1, 4, 5, 2, 2)
    with pytest.raises(InvalidInputError, match="only 1 reference"):
        apply_placements(z, [torch.ones(4, 1, 2, 2)], [Placement(reference=1)])
    with pytest.raises(InvalidInputError, match="encode the reference at the clip's width and height"):
        apply_placements(z, [torch.ones(4, 1, 3, 2)], [Placement()])


# -- generate ------------------------------------------------------------------

def test_reference_frames_come_back_exactly(golden):
    model, cond = golden
    first, last = image_latent(0.5), image_latent(-0.5)
    result = generate(model, cond, num_frames=34, height=64, width=96, steps=3, seed=1,
                      references=[Reference(first, frame=0), Reference(last, frame=-1)],
                      profile=replace(OPENSORA12_PROFILE, align=None))
    assert result.latents.shape == (1, 4, 10, 8, 12)
    assert torch.equal(result.latents[0, :, 0], first[:, 0]) and torch.equal(result.latents[0, :, 9], last[:, 0])


def test_seed_determinism_without_touching_global_rng(golden):
    model, cond = golden
    state = torch.get_rng_state()
    a = generate(model, cond, num_frames=17, height=64, width=96, steps=2, seed=7).latents
    b = generate(model, cond, num_frames=17, height=64, width=96, steps=2, seed=7).latents
    c = generate(model, cond, num_frames=17, height=64, width=96, steps=2, seed=8).latents
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("loops,frames,cfl,total", [(1, 34, 5, 34), (3, 34, 5, 68), (2, 51, 5, 85), (2, 51, 10, 68)])
def test_loop_lengths_and_overlap(golden, loops, frames, cfl, total):
    model, cond = golden
    codec = PoolCodec()
    result = generate(model, cond, codec=codec, num_frames=frames, height=64, width=96, steps=2, seed=0,
                      loop=LoopControl(loops=loops, condition_frames=cfl), references=[Reference(image_latent(0.3))])
    assert result.num_frames == total and result.video.shape[2] == total
    latents = OPENSORA_VAE_LAYOUT.latent_frames(frames)
    assert result.latents.shape[2] == latents + (loops - 1) * (latents - cfl)
    for previous, current in zip(result.loop_latents, result.loop_latents[1:]):
        # each loop starts from the re-encoded tail of the previous one, kept exactly
        expected = codec.encode(codec.decode(previous, frames)[:, :, frames - 17 * cfl // 5:])
        assert torch.allclose(current[:, :, :cfl], expected[:, :, -cfl:])
    # joining latents equals joining decoded clips with the overlap dropped (chunks decode independently)
    assert torch.allclose(codec.decode(result.latents, total), result.video)


def test_per_loop_conditions_are_used_in_turn():
    model = RecordingModel(caption_channels=8)
    conds = [TextCondition(torch.full((1, 1, 2, 8), float(k))) for k in range(2)]
    generate(model, conds, codec=PoolCodec(), num_frames=34, height=64, width=64, steps=2, loop=LoopControl(loops=3),
             cfg_scale=1.0)
    used = [call["y"][0, 0, 0, 0].item() for call in model.calls]
    assert used == [0, 0, 1, 1, 1, 1]


def test_seamless_loop_holds_an_extra_frame_at_the_first_frame():
    model = RecordingModel()
    ref = image_latent(0.25, 2, 2)
    result = generate(model, TextCondition(torch.ones(1, 1, 2, 8)), codec=PoolCodec(), num_frames=17, height=16, width=16,
                      steps=3, references=[Reference(ref)], loop=LoopControl(seamless=True))
    for call in model.calls:
        x, active = call["x"], call["x_mask"]
        assert x.shape[2] == 6  # 5 latent frames + the loop-closing one
        assert not active[:, 0].any() and not active[:, -1].any()
        assert torch.equal(x[:, :, -1], ref[:, 0].expand_as(x[:, :, -1]))
    assert result.latents.shape[2] == 5 and result.num_frames == 17 and result.video.shape[2] == 17


def test_seamless_without_reference_ties_the_ends():
    model = RecordingModel(velocity=1.0)
    result = generate(model, TextCondition(torch.ones(1, 1, 2, 8)), num_frames=16, height=16, width=16, steps=2,
                      loop=LoopControl(seamless=True), profile=_frame_profile())
    last_input = model.calls[-1]["x"]
    assert torch.equal(last_input[:, :, 0], last_input[:, :, -1])
    assert result.latents.shape[2] == 16


def _frame_profile():
    return SamplingProfile("frames", FRAME_BY_FRAME, spatial_factor=8, use_timestep_transform=False, align=None,
                           min_video_frames=2, loop_condition_frames=2)


def test_generate_cancels_within_one_step():
    model = RecordingModel()
    calls = []
    with pytest.raises(GenerationCancelled):
        generate(model, TextCondition(torch.ones(1, 1, 2, 8)), num_frames=17, height=16, width=16, steps=10,
                 progress=lambda i, n, z: calls.append((i, n)), cancel=lambda: len(calls) == 4)
    assert calls == [(i, 10) for i in range(1, 5)] and len(model.calls) == 4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_frames=8), "^Open-Sora 1.2 cannot make a clip of 8 frames"),
        (dict(steps=0), "steps must be a whole number from 1"),
        (dict(loop=LoopControl(loops=2)), "loops > 1 need the VAE"),
        (dict(loop=LoopControl(loops=0)), "loops must be a whole number from 1"),
        (dict(cfg_scale=-1), "CFG scale"),
        (dict(height=4), "too small"),
        (dict(num_frames=1, loop=LoopControl(seamless=True)), "single frame cannot loop: use 17 frames or more"),
        (dict(num_frames=20, loop=LoopControl(seamless=True)), "whole number of 17-frame chunks"),
        (dict(denoise=0.0), "denoise must be above 0"),
        (dict(denoise=1.5), "at most 1"),
    ],
)
def test_input_errors(kwargs, message):
    args = dict(num_frames=17, height=16, width=16, steps=2)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=message):
        generate(RecordingModel(), TextCondition(torch.ones(1, 1, 2, 8)), **args)


def test_a_clip_too_short_for_its_loops_says_how_long_it_must_be():
    def refused(**kwargs) -> str:
        args = dict(codec=PoolCodec(), num_frames=17, height=16, width=16, steps=1, loop=LoopControl(loops=2))
        args.update(kwargs)
        with pytest.raises(InvalidInputError) as info:
            generate(RecordingModel(), [TextCondition(torch.ones(1, 1, 2, 8))] * 2, **args)
        return str(info.value)

    said = refused()  # Open-Sora's default carries one whole chunk, all that 17 frames have
    assert said == ("loops > 1 carry the last 5 latent frames of each clip into the next, and a clip of 17 frames has "
                    "only 5: use 18 frames or more")
    said = refused(num_frames=34, loop=LoopControl(loops=2, condition_frames=3))  # a count the user set
    assert said == "condition frames must be a multiple of 5 latent frames from 5 up to less than the clip's 10 " \
                   "latent frames; got 3"


def test_loop_advice_names_frame_counts_that_pass_every_rule():
    def refusal(num_frames, **loop) -> str | None:
        try:
            generate(RecordingModel(), [TextCondition(torch.ones(1, 1, 2, 8))] * 3, codec=PoolCodec(),
                     num_frames=num_frames, height=16, width=16, steps=1, loop=LoopControl(**loop))
        except InvalidInputError as exc:
            return str(exc)
        return None

    seamless = dict(loops=2, seamless=True)
    assert refusal(17, **seamless).endswith("has only 5: use 34 frames or more, in whole 17-frame chunks")
    assert refusal(18, **seamless) == "a seamless loop needs a whole number of 17-frame chunks; with 2 loops, use 34 " \
                                      "frames"  # not 17, which then is refused as too short to carry
    assert refusal(16, loops=2) == "Open-Sora 1.2 cannot make a clip of 16 frames: use 18 frames or more"
    assert refusal(17, loops=2, condition_frames=5) == "a clip of 17 frames (5 latent frames) is too short to carry " \
        "condition frames into the next loop (got 5): use 18 frames or more"
    for frames, loop in [(17, seamless), (18, seamless), (20, dict(seamless=True)), (1, seamless), (1, dict(loops=2)),
                         (17, dict(loops=2, condition_frames=5)), (16, dict(loops=2)), (16, seamless)]:
        advice = refusal(frames, **loop).rsplit("use ", 1)[1]
        counts = [int(n) for n in re.findall(r"\d+", advice.split(" frames")[0])]
        step = 17 if loop.get("seamless") else 1
        tried = counts + [counts[-1] + step] * ("or more" in advice)
        assert counts and all(refusal(n, **loop) is None for n in tried), (frames, loop, advice)


def test_sizes_that_do_not_divide_are_rounded_down_with_a_note():
    result = generate(RecordingModel(), TextCondition(torch.ones(1, 1, 2, 8)), num_frames=17, height=30, width=20, steps=1)
    assert (result.height, result.width) == (24, 16)
    assert result.notes and "rounded down" in result.notes[0]


def test_start_from_references_uses_the_nearest_reference_frame():
    z = torch.randn(2, 3, 6, 2, 2)
    z[0, :, 0], z[0, :, 4] = 1.0, -1.0  # sample 0: references at frames 0 and 4 (4 partly kept)
    mask = torch.tensor([[0.0, 1, 1, 1, 0.5, 1], [1, 1, 1, 1, 1, 1]])
    out = start_from_references(z, mask, 0.75)
    for frame, anchor in [(1, 1.0), (2, 1.0), (3, -1.0), (5, -1.0)]:  # frame 2 is a tie: the earlier reference
        torch.testing.assert_close(out[0, :, frame], 0.25 * anchor + 0.75 * z[0, :, frame])
    assert torch.equal(out[0, :, [0, 4]], z[0, :, [0, 4]])
    assert torch.equal(out[1], z[1])  # no reference: pure noise stays


def test_denoise_runs_the_lower_part_of_the_schedule_from_the_reference():
    model = RecordingModel()
    ref = image_latent(0.5, 2, 2)
    generate(model, TextCondition(torch.ones(1, 1, 2, 8)), num_frames=8, height=16, width=16, steps=4, cfg_scale=1.0,
             references=[Reference(ref)], denoise=0.5, profile=_frame_profile(), seed=5)
    assert [float(c["t"][0]) for c in model.calls] == [500.0, 375.0, 250.0, 125.0]
    first = model.calls[0]["x"]
    noise = generate(RecordingModel(), TextCondition(torch.ones(1, 1, 2, 8)), num_frames=8, height=16, width=16,
                     steps=1, cfg_scale=1.0, references=[Reference(ref)], profile=_frame_profile(), seed=5, decode=False)
    # velocity 0: the result is the start itself, half reference and half the seed's noise
    torch.testing.assert_close(first[:, :, 1:], 0.5 * 0.5 + 0.5 * noise.latents[:, :, 1:])


def test_denoise_without_a_reference_starts_from_noise_with_a_note():
    model = RecordingModel()
    result = generate(model, TextCondition(torch.ones(1, 1, 2, 8)), num_frames=8, height=16, width=16, steps=2,
                      cfg_scale=1.0, denoise=0.5, profile=_frame_profile())
    assert float(model.calls[0]["t"][0]) == 1000.0
    assert any("needs a reference frame" in note for note in result.notes)


@pytest.mark.parametrize("fps", [None, 8.0, 24.0])
def test_a_still_image_is_told_the_image_fps_whatever_the_clip_fps(fps):
    """Open-Sora tells the model fps 120 for a one-frame clip, whatever frame rate was asked (it is the output's)."""
    model = RecordingModel()
    result = generate(model, TextCondition(torch.ones(1, 1, 2, 8)), num_frames=1, height=16, width=16, steps=1,
                      fps=fps)
    assert {float(call["fps"].reshape(-1)[0]) for call in model.calls} == {120.0}
    assert result.fps == (120.0 if fps is None else fps)
    video = RecordingModel()
    generate(video, TextCondition(torch.ones(1, 1, 2, 8)), num_frames=17, height=16, width=16, steps=1, fps=fps)
    assert {float(call["fps"].reshape(-1)[0]) for call in video.calls} == {24.0 if fps is None else fps}
