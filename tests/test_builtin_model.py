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
from charmotion.dit_core.tiny.evaluate import animate_reference
from charmotion.dit_core.tiny.dataset import make_example

ROOT = Path(__file__).resolve().parents[1]
# Actions whose motion is large enough to judge from a short, cheap run (jumps, travel, size).
QUICK_ACTIONS = ("jump", "walk_left", "walk_right", "run_right", "grow", "shrink")
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
    assert np.array_equal(a[0], example["frames"][0])  # the reference frame comes back exactly


def heldout_recognition(bundle, seed: int = 0) -> tuple[int, list[str]]:
    hits, missed = 0, []
    for i, action in enumerate(QUICK_ACTIONS):
        example = make_example(seed + 31 * i, "heldout", 16, action=action, amplitude=0.9)
        clip = animate_reference(bundle, example["frames"][0], example["prompt"], strength=0.9, seed=seed + i,
                                 steps=QUICK_STEPS)
        if metrics.recognise_action(clip, example["key_color"], action):
            hits += 1
        else:
            missed.append(f"{action} ({example['prompt']!r})")
    return hits, missed


def test_heldout_sprites_show_the_requested_action(shipped):
    hits, missed = heldout_recognition(shipped)
    assert hits >= len(QUICK_ACTIONS) - 1, f"recognised {hits}/{len(QUICK_ACTIONS)}; missed: {', '.join(missed)}"


def test_an_untrained_model_fails_the_same_check(tmp_path):
    untrained = tiny_bundle.build_tiny(seed=3)
    untrained.model.eval().requires_grad_(False)
    untrained.text_encoder.eval().requires_grad_(False)
    hits, _ = heldout_recognition(untrained)
    assert hits <= 1


def test_demo_command_writes_an_animated_sprite(tmp_path):
    out = tmp_path / "slime.gif"
    base = [sys.executable, "-m", "dit_core", "animate", "--image", str(ROOT / "assets/samples/slime.png"),
            "--prompt", "the slime bounces", "--quiet"]
    done = subprocess.run(base + ["--out", str(out), "--steps", "6"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
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
