"""Rectified-flow sampling: upstream parity, schedules, per-frame masks, guidance, cancel and seeds."""

from __future__ import annotations

import pytest
import torch

from charmotion.dit_core.errors import GenerationCancelled, InvalidInputError
from charmotion.dit_core.models import load_stdit3
from charmotion.dit_core.sampling import (
    TextCondition,
    null_condition,
    rectified_flow_timesteps,
    sample_rectified_flow,
    step_sizes,
)
from fake_models import RecordingModel
from golden_data import case_weights_path, golden_cases, load_case_tensors

RF_CASES = golden_cases("rf_sample")


def case_kwargs(case):
    return dict(
        fps=torch.tensor([float(case["fps"])]),
        height=torch.tensor([float(case["height"])]),
        width=torch.tensor([float(case["width"])]),
    )


@pytest.mark.parametrize("case", RF_CASES)
def test_schedule_matches_upstream(case):
    tensors = load_case_tensors(case)
    timesteps = rectified_flow_timesteps(
        case["steps"],
        num_timesteps=case["num_timesteps"],
        use_timestep_transform=case["use_timestep_transform"],
        height=case["height"],
        width=case["width"],
        num_frames=case["num_frames"],
    )
    worst = (timesteps - tensors["timesteps"]).abs().max().item()
    assert worst <= 1e-3, f"{case['name']}: schedule differs by {worst}"


@pytest.mark.parametrize("batch_cfg", [True, False], ids=["batched-cfg", "sequential-cfg"])
@pytest.mark.parametrize("case", RF_CASES)
def test_sampler_matches_upstream(case, batch_cfg):
    tensors = load_case_tensors(case)
    model = load_stdit3(case_weights_path(case), attention="math")
    out = sample_rectified_flow(
        model,
        tensors["z_init"],
        TextCondition(tensors["y"], tensors["text_mask"]),
        tensors["timesteps"],
        cfg_scale=case["cfg_scale"],
        frame_mask=tensors.get("mask"),
        model_kwargs=case_kwargs(case),
        num_timesteps=case["num_timesteps"],
        batch_cfg=batch_cfg,
    )
    worst = (out - tensors["expected"]).abs().max().item()
    assert worst <= case["tolerance"], f"{case['name']}: max abs error {worst:.3g} > {case['tolerance']}"
    if "mask" in tensors:  # conditioned frames come back exactly as given
        kept = tensors["mask"][0] == 0
        assert torch.equal(out[:, :, kept], tensors["z_init"][:, :, kept])


@pytest.mark.parametrize(
    "size,first,last",
    [
        ((240, 426, 51), [1000.0, 985.962, 971.352, 956.134, 940.271], [212.038, 147.479, 77.076]),
        ((240, 426, 1), [1000.0, 947.712, 897.436, 849.057, 802.469], [64.935, 42.735, 21.097]),
        ((480, 854, 51), [1000.0, 992.931, 985.468, 977.575, 969.216], [349.887, 257.048, 143.121]),
        ((720, 1280, 51), [1000.0, 995.266, 990.244, 984.906, 979.221], [446.154, 341.176, 200.000]),
    ],
)
def test_bf16_schedule_reference_values(size, first, last):
    height, width, frames = size
    t = rectified_flow_timesteps(30, height=height, width=width, num_frames=frames, ratio_dtype=torch.bfloat16)
    assert t[:5].tolist() == pytest.approx(first, abs=2e-3)
    assert t[-3:].tolist() == pytest.approx(last, abs=2e-3)
    assert step_sizes(t).sum().item() == pytest.approx(1.0, abs=1e-6)  # integrates exactly to t = 0


def test_first_timestep_is_clamped_to_1000():
    # 17 frames at 64x64 gives 1000.0001 in float32 upstream; the clamp keeps every frame active at step 0
    t = rectified_flow_timesteps(30, height=64, width=64, num_frames=17)
    assert t.max().item() <= 1000.0


def test_fixed_shift_without_the_transform():
    plain = rectified_flow_timesteps(4, use_timestep_transform=False)
    assert plain.tolist() == [1000.0, 750.0, 500.0, 250.0]
    assert torch.equal(rectified_flow_timesteps(4, use_timestep_transform=False, shift=1.0), plain)
    shifted = rectified_flow_timesteps(4, use_timestep_transform=False, shift=3.0)
    # t' = 3t / (1 + 2t): 0.75 -> 0.9, 0.5 -> 0.75, 0.25 -> 0.5
    torch.testing.assert_close(shifted, torch.tensor([1000.0, 900.0, 750.0, 500.0]))


@pytest.mark.parametrize("frames", [2, 8, 16])
def test_short_videos_are_refused(frames):
    with pytest.raises(InvalidInputError, match="at least 17 frames"):
        rectified_flow_timesteps(30, height=240, width=426, num_frames=frames)


@pytest.mark.parametrize("edit,first_active,active_steps", [(0.3, 26, 4), (0.5, 22, 8), (0.8, 12, 18)])
def test_partial_edit_frames_join_at_the_upstream_step(edit, first_active, active_steps):
    model = RecordingModel()
    timesteps = rectified_flow_timesteps(30, height=240, width=426, num_frames=51, ratio_dtype=torch.bfloat16)
    z = torch.zeros(1, 4, 3, 2, 2)
    mask = torch.tensor([[0.0, edit, 1.0]])
    cond = TextCondition(torch.ones(1, 1, 4, 8), torch.tensor([[1, 1, 1, 0]]))
    out = sample_rectified_flow(model, z, cond, timesteps, cfg_scale=7.0, frame_mask=mask, generator=torch.Generator().manual_seed(0))
    active = torch.stack([c["x_mask"][0] for c in model.calls])  # [steps, frames] for the conditional half
    assert not active[:, 0].any()  # a kept frame is never denoised
    assert active[:, 2].all()  # a generated frame always is
    assert active[:, 1].nonzero()[0].item() == first_active
    assert active[:, 1].sum().item() == active_steps
    noised_input = model.calls[first_active]["x"][0, :, 1]
    assert noised_input.abs().sum() > 0  # re-noised the first time it becomes active
    assert torch.equal(out[:, :, 0], z[:, :, 0])


def test_null_caption_uses_the_prompt_token_mask():
    model = RecordingModel(max_length=6)
    model.y_embedder.y_embedding = torch.arange(48.0).view(6, 8)
    cond = TextCondition(torch.ones(2, 1, 4, 8), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]))
    null = null_condition(model, cond)
    assert torch.equal(null.y[0, 0], model.y_embedder.y_embedding[:4])
    assert torch.equal(null.mask, cond.mask)
    sample_rectified_flow(model, torch.zeros(2, 4, 2, 2, 2), cond, torch.tensor([1000.0, 500.0]), cfg_scale=5.0)
    call = model.calls[0]
    assert call["y"].shape[0] == 4 and torch.equal(call["y"][2:, 0], null.y[:, 0])
    assert torch.equal(call["mask"][2:], cond.mask)


def test_guidance_formula_and_cfg_one_skips_the_unconditional_branch():
    class Split(RecordingModel):
        def forward(self, x, t, y, **kw):
            super().forward(x, t, y, **kw)
            return y[:, 0, :1, :1, None, None].expand(-1, 8, *x.shape[2:]).clone()  # velocity = first caption value

    cond = TextCondition(torch.full((1, 1, 2, 8), 2.0))
    uncond = TextCondition(torch.full((1, 1, 2, 8), 0.5))
    for cfg, expected in [(3.0, 0.5 + 3.0 * 1.5), (1.0, 2.0), (0.0, 0.5)]:
        model = Split()
        out = sample_rectified_flow(model, torch.zeros(1, 4, 1, 1, 1), cond, torch.tensor([1000.0]), cfg_scale=cfg, uncond=uncond)
        assert out.flatten()[0].item() == pytest.approx(expected)
        assert model.calls[0]["x"].shape[0] == (1 if cfg == 1.0 else 2)


def test_cancel_stops_within_one_step():
    model = RecordingModel()
    seen = []
    cond = TextCondition(torch.ones(1, 1, 2, 8))
    with pytest.raises(GenerationCancelled, match="step 4 of 10"):
        sample_rectified_flow(
            model, torch.zeros(1, 4, 2, 2, 2), cond, torch.linspace(1000, 100, 10), cfg_scale=2.0,
            progress=lambda i, total, z: seen.append(i), cancel=lambda: len(seen) >= 3,
        )
    assert seen == [1, 2, 3] and len(model.calls) == 3


def test_progress_reports_every_step():
    seen = []
    sample_rectified_flow(
        RecordingModel(), torch.zeros(1, 4, 2, 2, 2), TextCondition(torch.ones(1, 1, 2, 8)), torch.linspace(1000, 100, 4),
        progress=lambda i, total, z: seen.append((i, total, tuple(z.shape))),
    )
    assert seen == [(i, 4, (1, 4, 2, 2, 2)) for i in range(1, 5)]
