"""The built-in model's training script: timestep sampling, bfloat16 autocast, a short run that resumes and saves."""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pytest
import torch

from charmotion.dit_core.tiny import train
from charmotion.dit_core.tiny.bundle import load_tiny
from charmotion.dit_core.tiny import text_encoder
from charmotion.dit_core.tiny.text_encoder import TextEncoderConfig, TinyTextEncoder

SMALL = {
    "model": {"depth": 1, "hidden_size": 32, "num_heads": 2, "caption_channels": 16, "model_max_length": 16},
    "text_encoder": {"dim": 16, "buckets": 256, "max_length": 16, "layers": 1, "heads": 2},
}


def test_timestep_shift_moves_training_toward_high_noise():
    plain = train.sample_timesteps(20000, torch.Generator().manual_seed(0))
    shifted = train.sample_timesteps(20000, torch.Generator().manual_seed(0), shift=3.0)
    assert abs(plain.median().item() - 500) < 15
    assert abs(shifted.median().item() - 750) < 15  # 3 * 0.5 / (1 + 2 * 0.5)
    assert (shifted > 850).float().mean().item() > 0.2 > (plain > 850).float().mean().item()
    assert 0 <= shifted.min().item() and shifted.max().item() <= 1000
    mixed = train.sample_timesteps(20000, torch.Generator().manual_seed(0), shift=3.0, uniform=1.0)
    assert abs(mixed.median().item() - 500) < 15  # all drawn uniformly


def test_motion_map_marks_what_moved_away_from_frame_0():
    x0 = torch.zeros(2, 3, 4, 4, 4)
    x0[0, :, 2:, 1, 1] = 2.0  # clip 0: one token changes from frame 2 on
    x0[0, :, 3, 2, 2] = -1.0  # and another, half as much, in the last frame
    moved = train.motion_map(x0)
    assert moved.shape == (2, 4, 4, 4)
    assert moved[0, 2:, 1, 1].tolist() == [1.0, 1.0] and moved[0, 3, 2, 2] == 0.5
    assert moved[0].sum() == 2.5 and moved[1].abs().sum() == 0  # a still clip weighs nothing extra


def test_motion_weight_changes_the_loss_of_moving_clips_only(tmp_path):
    trainer = train.Trainer(argparse.Namespace(
        out=str(tmp_path), seed=0, device="cpu", init=None, config=json.dumps(SMALL), codec_components=0, whiten=False,
        bf16=False, lr=1e-3, heldout_clips=2))
    moving = train.heldout_set(2, seed=11)
    still = {**moving, "frames": np.repeat(moving["frames"][:, :1], train.FRAMES, axis=1)}
    shape = (2, trainer.bundle.codec.latent_channels, train.FRAMES, 16, 16)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t, drop = torch.full((2,), 600.0), torch.zeros(2, dtype=torch.bool)

    def loss(batch, weight):
        trainer.rng = np.random.default_rng(0)  # the same captions every time
        with torch.no_grad():
            return float(trainer.loss(batch, ["first"] * 2, t, noise, drop, motion_weight=weight))

    assert loss(moving, 4.0) != pytest.approx(loss(moving, 0.0), rel=1e-4)
    assert loss(still, 4.0) == pytest.approx(loss(still, 0.0), rel=1e-6)


def test_text_encoder_runs_under_bfloat16_autocast():
    torch.manual_seed(0)
    encoder = TinyTextEncoder(TextEncoderConfig(dim=16, buckets=256, max_length=16, layers=1, heads=2)).eval()
    prompts = ["the fox walks left. motion score: 7.5.", "jump"]  # a number goes through its own embedding
    assert text_encoder.word_buckets("jump", 256) == tuple(text_encoder.stable_bucket(g, 256)
                                                            for g in text_encoder.word_ngrams("jump"))
    with torch.no_grad():
        full = encoder(prompts).y
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = encoder(prompts).y
    assert half.shape == full.shape and full.shape[:2] == (2, 1) and full.shape[-1] == 16
    assert (half.float() - full).abs().max().item() < 0.1 * full.abs().max().item()


@pytest.mark.parametrize("bf16", [False, True])
def test_a_short_run_logs_resumes_and_writes_a_loadable_bundle(tmp_path, bf16):
    common = ["--out", str(tmp_path), "--batch-size", "2", "--codec-components", "0", "--heldout-clips", "2",
              "--log-every", "1", "--eval-every", "2", "--warmup", "1", "--seamless-every", "2",
              "--t-shift", "3", "--config", json.dumps(SMALL)] + (["--bf16"] if bf16 else [])
    train.main(common + ["--steps", "2"])
    train.main(common + ["--steps", "3", "--resume"])
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in log if "loss" in entry]
    assert steps == [1, 2, 3]  # the second call went on from step 2
    assert all(0 < entry["loss"] < 10 for entry in log if "loss" in entry)
    assert [entry["step"] for entry in log if "heldout_loss" in entry] == [2, 2, 3]  # eval, end of call 1, end
    bundle = load_tiny(tmp_path / "charmotion_tiny.safetensors")
    assert bundle.info["steps"] == 3 and bundle.config["model"]["hidden_size"] == 32
    assert bundle.config["codec"]["kind"] == "space_to_depth" and bundle.model.config.in_channels == 48


def test_init_starts_from_a_bundle_and_trains_with_repeat_and_workers(tmp_path):
    small = ["--batch-size", "2", "--codec-components", "0", "--heldout-clips", "2", "--log-every", "1",
             "--eval-every", "100", "--warmup", "1", "--seamless-every", "2"]
    train.main(["--out", str(tmp_path / "a"), "--steps", "2", "--config", json.dumps(SMALL)] + small)
    source = tmp_path / "a" / "charmotion_tiny.safetensors"
    train.main(["--out", str(tmp_path / "b"), "--steps", "0", "--init", str(source)] + small)
    a, b = load_tiny(source), load_tiny(tmp_path / "b" / "charmotion_tiny.safetensors")
    assert b.info["init"]["steps"] == 2 and b.info["steps"] == 0
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name  # no step taken: the same weights come out
    train.main(["--out", str(tmp_path / "c"), "--steps", "4", "--init", str(source), "--repeat", "2",
                "--workers", "2"] + small)
    c = load_tiny(tmp_path / "c" / "charmotion_tiny.safetensors")
    assert c.info["steps"] == 4 and c.info["repeat"] == 2 and c.config == a.config
    assert not torch.equal(c.model.final_layer.linear.weight, a.model.final_layer.linear.weight)
    with pytest.raises(SystemExit, match="drop --config"):
        train.main(["--out", str(tmp_path / "d"), "--init", str(source), "--config", json.dumps(SMALL)] + small)


def test_each_batch_serves_repeat_steps_and_seamless_batches_come_in_turn():
    trainer = train.Trainer.__new__(train.Trainer)  # batch_jobs needs only the arguments and the step
    trainer.args = argparse.Namespace(seed=3, batch_size=2, seamless_every=3, repeat=2)
    trainer.step = 5  # resumed mid-batch: steps 4 and 5 share batch 2
    jobs = list(itertools.islice(trainer.batch_jobs(), 4))
    assert jobs == [(3, 2, 2, True), (3, 3, 2, False), (3, 4, 2, False), (3, 5, 2, True)]
    batch = train.training_batch(jobs[0])
    assert batch["seamless"] and batch["frames"].shape == (2, train.FRAMES + 1, train.SIZE, train.SIZE, 3)
    assert not train.training_batch(jobs[1])["seamless"]


def test_the_learning_rate_decays_over_steps_or_over_the_time_budget():
    trainer = train.Trainer.__new__(train.Trainer)  # lr_at needs only the arguments
    trainer.args = argparse.Namespace(lr=1e-3, warmup=2, decay_steps=102, minutes=1.0, decay_over_budget=False)
    assert trainer.lr_at(0) == pytest.approx(5e-4) and trainer.lr_at(2) == pytest.approx(1e-3)
    assert trainer.lr_at(52, seconds=59.0) == pytest.approx(5.5e-4)  # half way through the steps; time ignored
    assert trainer.lr_at(500) == pytest.approx(1e-4)
    trainer.args.decay_over_budget = True
    assert trainer.lr_at(0, seconds=50.0) == pytest.approx(5e-4)  # warm-up still counts steps
    assert trainer.lr_at(500, seconds=0.0) == pytest.approx(1e-3)
    assert trainer.lr_at(3, seconds=30.0) == pytest.approx(5.5e-4)  # half the 1-minute budget
    assert trainer.lr_at(3, seconds=90.0) == pytest.approx(1e-4)


def test_a_run_decaying_over_its_budget_records_it(tmp_path):
    train.main(["--out", str(tmp_path), "--steps", "2", "--minutes", "5", "--decay-over-budget", "--batch-size", "2",
                "--codec-components", "0", "--heldout-clips", "2", "--warmup", "1", "--log-every", "1",
                "--config", json.dumps(SMALL)])
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if "lr" in line]
    assert [entry["step"] for entry in log] == [1, 2]  # the schedule itself: the test above
    assert load_tiny(tmp_path / "charmotion_tiny.safetensors").info["decay_minutes"] == 5.0
