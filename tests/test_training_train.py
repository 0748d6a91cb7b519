"""The built-in model's trainer: short runs on tiny sizes (CI never trains a real model)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal

import numpy as np
import pytest
import torch

from charmotion.dit_core.builtin.codec import FieldConfig
from charmotion.dit_core.builtin.model import load_builtin
from charmotion.dit_core.builtin.text_encoder import TextEncoderConfig, TinyTextEncoder
from charmotion.training import train

SMALL = {"model": {"depth": 1, "hidden_size": 32, "num_heads": 2}, "text_encoder": {"dim": 16, "buckets": 256,
                                                                                    "layers": 1, "heads": 2}}
COMMON = ["--batch-size", "2", "--heldout-clips", "2", "--log-every", "1", "--eval-every", "2", "--warmup", "1",
          "--seamless-every", "2", "--workers", "0", "--config", json.dumps(SMALL)]


def test_timestep_shift_moves_training_toward_high_noise():
    gen = torch.Generator().manual_seed(0)
    plain = train.sample_timesteps(4000, gen)
    shifted = train.sample_timesteps(4000, torch.Generator().manual_seed(0), shift=3.0)
    assert 0 <= float(plain.min()) and float(plain.max()) <= 1000
    assert float(shifted.median()) > float(plain.median()) + 150


def test_bfloat16_autocast_is_chosen_only_where_the_cpu_computes_it_natively():
    avx2 = "processor : 0\nflags : fpu sse2 avx avx2 fma\n"
    sapphire = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    cpu = torch.device("cpu")
    assert not train.bf16_is_native(cpu, avx2) and train.bf16_is_native(cpu, sapphire)
    assert train.build_parser().parse_args(["--out", "x"]).bf16 is None  # decided per machine
    assert train.build_parser().parse_args(["--out", "x", "--no-bf16"]).bf16 is False


def test_text_encoder_runs_under_bfloat16_autocast():
    torch.manual_seed(0)
    encoder = TinyTextEncoder(TextEncoderConfig(dim=16, buckets=256, max_length=16, layers=1, heads=2)).eval()
    prompts = ["the fox walks left. motion score: 7.5.", "jump"]  # a number goes through its own embedding
    with torch.no_grad():
        full = encoder(prompts).y
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = encoder(prompts).y
    assert half.shape == full.shape and full.shape[:2] == (2, 1) and full.shape[-1] == 16
    assert (half.float() - full).abs().max().item() < 0.1 * full.abs().max().item()


@pytest.mark.parametrize("clips", [0, 6])
def test_a_short_run_logs_resumes_and_writes_a_loadable_model_file(tmp_path, clips):
    common = ["--out", str(tmp_path), "--clips", str(clips)] + COMMON
    train.main(common + ["--steps", "2"])
    train.main(common + ["--steps", "3", "--resume"])
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in log if "loss" in entry]
    assert steps == [1, 2, 3]  # the second call went on from step 2
    assert all(0 < entry["loss"] < 20 for entry in log if "loss" in entry)
    assert [entry["step"] for entry in log if "heldout_loss" in entry] == [2, 2, 3]  # eval, end of call 1, end
    model = load_builtin(tmp_path / "charmotion_builtin.safetensors")
    assert (tmp_path / "charmotion_builtin.safetensors").stat().st_mode & 0o777 == 0o644  # readable by any user
    assert model.info["steps"] == 3 and model.info["clips"] == clips and model.config["model"]["hidden_size"] == 32
    assert model.info["bf16"] is train.bf16_is_native(torch.device("cpu"))  # the file says how it was trained
    assert model.model.config.in_channels == 3 and model.model.config.context_channels == 64  # 4x4 pixels a cell
    assert model.config["actions"]["jump"] and "hop" in model.config["actions"]["jump"]  # the prompt note's words
    assert model.prompt_note("the slime hops") is None and model.prompt_note("the slime melts")


def test_stored_clips_give_batches_with_fresh_prompts_and_seamless_loops():
    store = train.ClipStore(3, 8, FieldConfig())
    assert len(store) == 8 and store.latents.dtype == np.float16
    rng = np.random.default_rng(0)
    batch = store.batch(rng, 3, seamless=False)
    assert batch["latents"].shape == (3, 3, train.FRAMES, 32, 32) and len(batch["prompt"]) == 3
    assert [bool(b) for b in batch["loopable"]] == [train.ACTIONS[a].loopable for a in batch["action"]]
    loop = store.batch(rng, 2, seamless=True)
    assert loop["latents"].shape[2] == train.FRAMES + 1
    assert np.array_equal(loop["latents"][:, :, -1], loop["latents"][:, :, 0])  # the loop closes on frame 0
    assert all(store.action[i] in train.ACTIONS and train.ACTIONS[store.action[i]].loopable for i in store.loopable)
    again = train.ClipStore(3, 8, FieldConfig(), workers=2)  # workers draw the same clips
    assert np.array_equal(again.latents, store.latents) and again.action == store.action


def test_continue_clips_start_at_a_random_phase_with_the_carried_frames_given():
    trainer = train.Trainer.__new__(train.Trainer)  # continue_kinds needs only its random generator
    trainer.rng = np.random.default_rng(0)
    latents = np.arange(3 * 2 * 16, dtype=np.float32).reshape(3, 2, 16, 1, 1)
    batch = {"latents": latents, "loopable": np.array([True, False, True])}
    rolled, kinds = trainer.continue_kinds(batch, ["continue", "continue", "first"])
    assert kinds == ["continue", "first", "first"]  # a clip that does not loop cannot start mid-cycle
    assert np.array_equal(rolled["latents"][1:], latents[1:]) and np.array_equal(batch["latents"], latents)
    shift = int(rolled["latents"][0, 0, 0, 0, 0])  # frame 0 is now the clip's frame `shift`
    assert 1 <= shift <= 15 and np.array_equal(rolled["latents"][0], np.roll(latents[0], -shift, axis=1))
    mask = train.condition_masks(["continue", "first", "last"], 16, carried=4)
    assert mask.sum(dim=1).tolist() == [4, 1, 1] and bool(mask[0, :4].all()) and bool(mask[2, -1])


def test_each_batch_serves_repeat_steps_and_seamless_batches_come_in_turn():
    trainer = train.Trainer.__new__(train.Trainer)  # batch_jobs needs only the arguments and the step
    trainer.args = argparse.Namespace(seed=3, batch_size=2, seamless_every=3, repeat=2)
    trainer.field_config = FieldConfig()
    trainer.step = 5  # resumed mid-batch: steps 4 and 5 share batch 2
    jobs = [job[:3] + job[4:] for job in itertools.islice(trainer.batch_jobs(), 4)]
    assert jobs == [(3, 2, 2, True), (3, 3, 2, False), (3, 4, 2, False), (3, 5, 2, True)]


def test_the_learning_rate_warms_up_then_decays_to_a_tenth_at_the_last_step():
    trainer = train.Trainer.__new__(train.Trainer)  # lr_at needs only the arguments
    trainer.args = argparse.Namespace(lr=1e-3, warmup=2, steps=102, minutes=60.0)
    assert trainer.lr_at(0) == pytest.approx(5e-4) and trainer.lr_at(2) == pytest.approx(1e-3)
    assert trainer.lr_at(52) == pytest.approx(5.5e-4)
    assert trainer.lr_at(500) == pytest.approx(1e-4)


def test_the_learning_rate_reaches_its_floor_when_the_time_budget_ends_before_the_last_step():
    trainer = train.Trainer.__new__(train.Trainer)
    trainer.args = argparse.Namespace(lr=1e-3, warmup=2, steps=102, minutes=10.0)
    assert trainer.lr_at(12, seconds=30.0) == pytest.approx(trainer.lr_at(12))  # the steps lead: as without a budget
    assert trainer.lr_at(12, seconds=300.0) == pytest.approx(5.5e-4)  # half the budget spent: half-way down
    assert trainer.lr_at(12, seconds=600.0) == pytest.approx(1e-4)  # the budget spent: the floor
    assert trainer.lr_at(1, seconds=600.0) == pytest.approx(1e-3)  # warm-up counts steps only


@pytest.mark.parametrize("config, message", [
    ('{"model": {"hiden_size": 64}}', "--config has unknown setting(s) model.hiden_size"),
    ('{"model": {"depth": 2}, "feild": {"grid": 32}}', "--config has unknown setting(s) feild"),
    ("{model: 1}", "--config is not JSON"),
    ("[1]", "--config takes a JSON object of settings by section"),
    ('{"model": 5}', "--config has unknown setting(s) model = 5 (a section is a table of settings)"),
])
def test_a_mistyped_config_is_refused_before_anything_is_drawn(tmp_path, config, message):
    with pytest.raises(SystemExit) as refused:
        train.main(["--out", str(tmp_path / "run"), "--config", config])
    assert str(refused.value).startswith(message)
    assert not (tmp_path / "run").exists()


def test_init_goes_on_from_a_model_files_weights_with_a_finer_field(tmp_path):
    first = tmp_path / "coarse"
    train.main(["--out", str(first), "--clips", "0", "--steps", "2"] + COMMON)
    coarse = load_builtin(first / "charmotion_builtin.safetensors")
    finer = json.dumps({**SMALL, "field": {"grid": 32, "frame_pixels": 128}})
    # no steps: the file written is the weights it started from, now with the grid-32 field
    train.main(["--out", str(tmp_path / "fine"), "--clips", "0", "--steps", "0", "--init",
                str(first / "charmotion_builtin.safetensors")] + COMMON[:-1] + [finer])
    fine = load_builtin(tmp_path / "fine" / "charmotion_builtin.safetensors")
    assert fine.codec.config.grid == 32 and coarse.codec.config.grid == 16
    assert fine.model.config.context_channels == coarse.model.config.context_channels == 64
    started = {**fine.model.state_dict(), **fine.text_encoder.state_dict()}
    for name, value in {**coarse.model.state_dict(), **coarse.text_encoder.state_dict()}.items():
        assert torch.equal(started[name], value), name
    assert fine.info["init"] == {"file": "charmotion_builtin.safetensors", "grid": 16, "steps": 2,
                                 "train_minutes": coarse.info["train_minutes"]}
    # and it trains on from there: a step changes the weights
    train.main(["--out", str(tmp_path / "fine2"), "--clips", "0", "--steps", "1", "--init",
                str(first / "charmotion_builtin.safetensors")] + COMMON[:-1] + [finer])
    stepped = load_builtin(tmp_path / "fine2" / "charmotion_builtin.safetensors")
    assert any(not torch.equal(stepped.model.state_dict()[k], v) for k, v in coarse.model.state_dict().items())


@pytest.mark.parametrize("config, message", [
    ({**SMALL, "model": {**SMALL["model"], "depth": 2}}, "model.depth is 1 there, 2 here"),
    ({**SMALL, "field": {"grid": 32}}, "model.context_channels is 64 there, 16 here"),  # 2x2 pixels a cell
])
def test_init_refuses_a_file_with_other_network_sizes_before_anything_is_made(tmp_path, config, message):
    train.main(["--out", str(tmp_path / "a"), "--clips", "0", "--steps", "1"] + COMMON)
    init = str(tmp_path / "a" / "charmotion_builtin.safetensors")
    with pytest.raises(SystemExit) as refused:
        train.main(["--out", str(tmp_path / "b"), "--init", init, "--config", json.dumps(config)])
    assert str(refused.value).startswith(f"--init {init} has other network sizes than this run")
    assert message in str(refused.value) and "Give --config the file's sizes" in str(refused.value)
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit, match="--init: .*missing.safetensors"):
        train.main(["--out", str(tmp_path / "c"), "--init", str(tmp_path / "missing.safetensors")])
    assert not (tmp_path / "c").exists()


def test_resume_needs_a_run_and_keeps_its_settings_and_starting_point(tmp_path):
    with pytest.raises(SystemExit, match="--resume: .* holds no train_state.pt to go on from"):
        train.main(["--out", str(tmp_path / "none"), "--resume", "--clips", "0", "--steps", "1"] + COMMON)
    assert not (tmp_path / "none").exists()
    train.main(["--out", str(tmp_path / "coarse"), "--clips", "0", "--steps", "1"] + COMMON)
    finer = json.dumps({**SMALL, "field": {"grid": 32, "frame_pixels": 128}})
    run = ["--out", str(tmp_path / "fine"), "--clips", "0"] + COMMON[:-2]
    train.main(run + ["--steps", "1", "--config", finer, "--init", str(tmp_path / "coarse" / "charmotion_builtin.safetensors")])
    train.main(run + ["--steps", "2", "--resume"])  # no --config: the run keeps the one it began with
    fine = load_builtin(tmp_path / "fine" / "charmotion_builtin.safetensors")
    assert fine.info["steps"] == 2 and fine.codec.config.grid == 32 and fine.info["init"]["grid"] == 16
    with pytest.raises(SystemExit, match="--resume: this run began with --config"):
        train.main(run + ["--steps", "3", "--resume", "--config", json.dumps(SMALL)])


def test_a_stopped_run_saves_its_state_and_goes_on_with_resume(tmp_path, monkeypatch):
    step = train.Trainer.train_step

    def interrupted_at_two(self, batch):  # Ctrl-C during step 3: the run stops after it, between whole steps
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch)

    common = ["--out", str(tmp_path), "--clips", "0", "--steps", "4"] + COMMON
    with monkeypatch.context() as patched:
        patched.setattr(train.Trainer, "train_step", interrupted_at_two)
        with pytest.raises(SystemExit, match="stopped at step 3: the state is saved in .*train_state.pt; go on"):
            train.main(common)
    train.main(common + ["--resume"])
    assert load_builtin(tmp_path / "charmotion_builtin.safetensors").info["steps"] == 4
    from charmotion.dit_core.checkpoint import CheckpointError
    from charmotion.dit_core.families import family_of_file

    with pytest.raises(CheckpointError, match="train_state.pt does not hold a plain state dict"):  # not a denoiser
        family_of_file(tmp_path / "train_state.pt")


@pytest.mark.parametrize("argv, message", [
    (["--config", '{"field": {"grid": 24}}'], "--config: these settings do not make a model (field frame_pixels 64 "
                                              "must be a multiple of grid 24"),
    (["--config", '{"field": {"grid": 0}}'], "--config: these settings do not make a model (field grid must be"),
    (["--device", "gpu"], "--device 'gpu' is not a device: use cpu, cuda or cuda:N"),
    (["--device", "meta"], "--device 'meta' is not supported: use cpu or cuda"),
    (["--clips", "1", "--batch-size", "2"], "--clips 1 draws"),
])
def test_settings_that_make_no_run_are_refused_in_one_line(tmp_path, argv, message):
    with pytest.raises(SystemExit) as refused:
        train.main(["--out", str(tmp_path / "run"), "--steps", "1", "--workers", "0"] + argv)
    assert str(refused.value).startswith(message)


def test_the_commands_say_a_wrong_file_in_one_line(tmp_path, capsys):
    from charmotion.training.__main__ import main

    (tmp_path / "notes.md").write_text("not a model")
    for argv in (["benchmark", "--model", str(tmp_path / "notes.md"), "--actions", "jump", "--characters", "1"],
                 ["gallery", "--model", str(tmp_path / "notes.md"), "--out", str(tmp_path / "g")]):
        assert main(argv) == 2
        said = capsys.readouterr().err.strip().splitlines()
        assert len(said) == 1 and said[0].startswith("error: ") and "notes.md" in said[0]


def test_an_evaluation_that_fails_gives_back_the_trained_weights_and_random_state(tmp_path, monkeypatch):
    trainer = train.Trainer(train.build_parser().parse_args(["--out", str(tmp_path), "--clips", "0"] + COMMON))
    weights = [p.detach().clone() for p in trainer.params]
    with torch.no_grad():
        for e in trainer.ema:
            e.add_(1.0)  # the EMA differs from the trained weights
    state = trainer.rng.bit_generator.state
    monkeypatch.setattr(train.Trainer, "loss", lambda self, *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.heldout_loss()
    assert all(torch.equal(p, w) for p, w in zip(trainer.params, weights)) and trainer.model.training
    assert trainer.rng.bit_generator.state == state
