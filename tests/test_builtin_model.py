"""The shipped built-in model: it loads, is deterministic, animates held-out sprites, and the demo command works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from charmotion.dit_core.tiny import bundle as tiny_bundle
from charmotion.dit_core.tiny import metrics
from charmotion.dit_core.tiny.evaluate import ClipScore, animate_reference, benchmark_jobs, evaluate, summarise
from charmotion.dit_core.tiny.dataset import make_example
from charmotion.dit_core.tiny.vocabulary import no_action_note

ROOT = Path(__file__).resolve().parents[1]
QUICK_STEPS = 12


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return tiny_bundle.load_tiny()


def test_shipped_file_is_small_and_described(shipped):
    size = tiny_bundle.BUILTIN_WEIGHTS.stat().st_size
    assert size <= 25 * 2**20, f"built-in model is {size / 2**20:.1f} MB (limit 25 MB)"
    assert shipped.info.get("steps", 0) > 0 and "heldout_loss" in shipped.info
    assert shipped.model.config.in_channels == shipped.codec.latent_channels
    card = (tiny_bundle.BUILTIN_WEIGHTS.parent / "MODEL_CARD.md").read_text()
    assert "held-out" in card.lower()


def test_generation_is_deterministic_for_a_seed(shipped):
    example = make_example(5, "heldout", 8, action="jump", amplitude=0.8)
    run = lambda seed: animate_reference(shipped, example["frames"][0], example["prompt"], strength=0.8, seed=seed,  # noqa: E731
                                         frames=8, steps=3)
    a, b, c = run(1), run(1), run(2)
    assert a.shape == (8, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert metrics.frame0_psnr(a, example["frames"][0]) >= 30.0  # the reference frame comes back (through the codec)


def heldout_quality(bundle, clips: int = 4) -> dict:
    """Measured on held-out characters and phrasings (never seen in training).

    ``denoise``: mean MSE of the model's one-step clean-frame estimate at
    t = 250 and 500, relative to the MSE of the noisy input (1 = no better than
    doing nothing). ``background``: share of the generated frames' pixels far
    from the character (> 6 px from its frame-0 silhouette) that stay the
    reference's key colour.
    """
    from charmotion.dit_core.prompts import decorate_prompt
    from charmotion.dit_core.tiny.evaluate import frames_to_pixels

    ratios, backgrounds = [], []
    gen = torch.Generator().manual_seed(0)
    for i in range(clips):
        example = make_example(40 + i, "heldout", 16, amplitude=0.6)
        text = bundle.encode_text(decorate_prompt(example["prompt"], motion=6.0))
        x0 = bundle.codec.encode(frames_to_pixels(example["frames"][None]))
        clean = torch.zeros(1, 16, dtype=torch.bool)
        clean[0, 0] = True
        for t in (250.0, 500.0):
            noise = torch.randn(x0.shape, generator=gen)
            xt = torch.where(clean[:, None, :, None, None], x0, (1 - t / 1000) * x0 + t / 1000 * noise)
            v = bundle.model(xt, torch.tensor([t]), text.y, mask=text.mask, x_mask=~clean, fps=torch.tensor([8.0]),
                             height=torch.tensor([64.0]), width=torch.tensor([64.0]))
            estimate = xt + t / 1000 * v
            ratios.append(float((estimate - x0)[:, :, 1:].pow(2).mean() / (xt - x0)[:, :, 1:].pow(2).mean()))
        clip = animate_reference(bundle, example["frames"][0], example["prompt"], strength=0.6, seed=i, steps=QUICK_STEPS)
        far = ~_dilate(metrics.silhouette(example["frames"][:1], example["key_color"])[0], 6)
        key = np.asarray(example["key_color"], dtype=np.int16)
        near_key = (np.abs(clip[1:].astype(np.int16) - key).max(axis=-1) <= 48)[:, far]
        backgrounds.append(float(near_key.mean()))
    return {"denoise": float(np.mean(ratios)), "background": float(np.mean(backgrounds))}


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def test_heldout_quality_of_the_shipped_model(shipped):
    quality = heldout_quality(shipped)
    assert quality["denoise"] < 0.2, quality
    assert quality["background"] > 0.9, quality


def test_an_untrained_model_fails_the_same_check():
    untrained = tiny_bundle.build_tiny(seed=3, codec=tiny_bundle.load_tiny_codec())
    untrained.model.eval().requires_grad_(False)
    untrained.text_encoder.eval().requires_grad_(False)
    quality = heldout_quality(untrained, clips=2)
    assert quality["denoise"] > 0.9 or quality["background"] < 0.5, quality


def test_a_benchmark_over_some_actions_scores_the_same_clips_as_the_full_run():
    full = benchmark_jobs(characters=4)
    some = benchmark_jobs(["idle", "jump"], characters=4)
    assert set(some) <= set(full)
    assert [j for j in full if j[0] in ("idle", "jump")] == sorted(some, key=lambda j: j[0] != "jump")
    assert len(some) == 2 * (4 * 3 + 1)  # both loop: one seamless clip each
    assert len({(seed, strength) for _, seed, strength, _ in full}) == len(full)  # no clip twice
    seeds = {}
    for action, seed, _, _ in full:
        seeds.setdefault(action, set()).add(seed)
    assert sum(len(v) for v in seeds.values()) == len(set().union(*seeds.values()))  # no character shared
    with pytest.raises(ValueError, match="unknown action.*dance.*choose from jump"):
        benchmark_jobs(["jump", "dance"])


def test_the_summary_splits_recognition_by_phrasing():
    def clip(action, recognised, phrase_heldout, seamless=False, strength=0.4):
        return ClipScore(action=action, character=1, strength=strength, seamless=seamless, prompt="p",
                         phrase_heldout=phrase_heldout, recognised=recognised, psnr=40.0, drift=0.1, amplitude=strength,
                         seam=1.0, seconds=1.0)

    scores = [clip("jump", True, False), clip("jump", False, True, strength=0.7), clip("jump", True, True, strength=1.0),
              clip("idle", True, False), clip("idle", False, False, strength=0.7),
              clip("idle", False, True, seamless=True)]  # seamless clips do not count for recognition
    overall = summarise(scores)["overall"]
    assert overall["recognised"] == pytest.approx(3 / 5)
    assert overall["recognised_seen_phrasing"] == pytest.approx(2 / 3)
    assert overall["recognised_new_phrasing"] == pytest.approx(1 / 2)
    assert np.isnan(summarise(scores[3:5])["overall"]["recognised_new_phrasing"])


def test_drawn_clips_through_the_codec_and_palette_lock_score_as_the_true_motion(shipped):
    # the benchmark's ceiling: what a model that drew the true motion would score on held-out characters
    scores = evaluate(shipped, actions=["jump", "walk_left", "spin", "blink", "idle"], characters=2,
                      ground_truth=True)
    overall = summarise(scores)["overall"]
    loops = {s.action for s in scores if s.seamless}
    assert overall["clips"] == 2 * 3 * 5 + 4 and loops == {"jump", "spin", "blink", "idle"}
    assert [s.phrase_heldout for s in scores] == [
        make_example(s.character, "heldout", 16, action=s.action, amplitude=s.strength)["phrase_heldout"]
        for s in scores]
    assert {s.phrase_heldout for s in scores} == {True, False}
    assert overall["recognised"] == 1.0 and overall["psnr"] >= 30.0, overall
    assert overall["drift"] < 0.15 and overall["spearman"] >= 0.9 and overall["seam"] <= 1.2, overall


def test_demo_command_writes_an_animated_sprite(tmp_path):
    out = tmp_path / "slime.gif"
    base = [sys.executable, "-m", "dit_core", "animate", "--image", str(ROOT / "assets/samples/slime.png"),
            "--prompt", "the slime bounces", "--quiet"]
    done = subprocess.run(base + ["--out", str(out), "--steps", "6"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "no action word" not in done.stderr
    with Image.open(out) as gif:
        assert gif.n_frames == 16 and gif.size == (64, 64)
        assert "transparency" in gif.info  # the sample sprite is transparent, so is the GIF
    sheet = tmp_path / "frames.png"
    done = subprocess.run(base + ["--out", str(sheet), "--steps", "2", "--loop"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    atlas = json.loads(sheet.with_suffix(".json").read_text())
    assert len(atlas["frames"]) == 16 and atlas["meta"]["fps"] == 8


def test_demo_command_reports_bad_input(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dit_core", "animate", "--image", str(tmp_path / "missing.png"),
                           "--prompt", "x", "--out", str(tmp_path / "x.gif")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "image not found" in done.stderr
    assert not (tmp_path / "x.gif").exists()


def test_demo_command_notes_a_prompt_without_an_action_it_knows(tmp_path):
    out = tmp_path / "cat.gif"
    done = subprocess.run([sys.executable, "-m", "dit_core", "animate", "--image", str(ROOT / "assets/samples/cat.png"),
                           "--prompt", "|0|the cat waves|1|the cat pirouettes", "--loops", "2", "--frames", "8",
                           "--steps", "1", "--quiet", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "no action word" in line]
    assert notes == [f"note: {no_action_note('the cat pirouettes')}"]  # the loop-0 segment names an action
    assert out.exists()


def test_demo_command_locks_the_palette_by_default(tmp_path):
    from charmotion.dit_core.cli import load_image
    from charmotion.dit_core.images import prepare_reference

    image = ROOT / "assets/samples/slime.png"
    reference = prepare_reference(load_image(str(image)), height=64, width=64, fit="pad").rgb
    palette = {tuple(v) for v in reference.reshape(-1, 3).tolist()}
    base = [sys.executable, "-m", "dit_core", "animate", "--image", str(image), "--prompt", "the slime bounces",
            "--quiet", "--steps", "3", "--frames", "4", "--transparent", "no"]

    def colours(folder, *extra):
        done = subprocess.run(base + ["--out", f"{folder}/", *extra], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        files = sorted(Path(folder).glob("*.png"))
        assert len(files) == 4
        return {tuple(v) for f in files for v in np.asarray(Image.open(f).convert("RGB")).reshape(-1, 3).tolist()}

    assert colours(tmp_path / "locked") <= palette
    assert not colours(tmp_path / "free", "--palette", "0") <= palette  # the model's own colours drift off it
    done = subprocess.run(base + ["--out", str(tmp_path / "x.gif"), "--palette", "1"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "palette colours must be 2 to 256, or 0" in done.stderr
    assert not (tmp_path / "x.gif").exists()
