"""Measure the built-in model on held-out sprites: does the clip show the requested action?

``evaluate()`` animates held-out characters (never seen in training) with
held-out and seen phrasings, at several motion strengths, through the same
path as the command line (``prepare_sprite`` -> ``generate`` -> the warp
decoder), and scores every clip with the analytic tracker in ``metrics``:
action recognised, frame-0 PSNR against the reference, identity drift,
motion amplitude (for a Spearman correlation with the requested strength),
the seamless-loop seam ratio for loopable actions, tearing (the share of the
character in loose pieces) and seconds per clip.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..dit_core.builtin.sprite import frames_over_key, prepare_sprite
from ..dit_core.pipeline import LoopControl, Reference, generate
from ..dit_core.prompts import decorate_prompt
from . import metrics
from .actions import ACTION_NAMES, ACTIONS
from .dataset import make_example


@dataclass
class ClipScore:
    action: str
    character: int
    strength: float
    seamless: bool
    prompt: str
    phrase_heldout: bool  # the prompt's phrasing is one training never used
    recognised: bool
    psnr: float
    drift: float
    amplitude: float
    seam: float
    torn: float  # share of the character in loose pieces, worst frame (metrics.fragmentation)
    seconds: float


def reference_rgba(example: dict) -> np.ndarray:
    """Frame 0 of a drawn example as a straight RGBA uint8 image (what a user would load)."""
    alpha = example["alpha"][0]
    a = alpha[..., None].astype(np.float32) / 255.0
    key = np.asarray(example["key_color"], np.float32)
    straight = np.where(a > 0, (example["frames"][0].astype(np.float32) - key * (1 - a)) / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([np.clip(np.rint(straight), 0, 255).astype(np.uint8), alpha[..., None]], axis=-1)


def crop_to_character(image: np.ndarray) -> np.ndarray:
    """An RGBA image cut to the box of its visible pixels."""
    rows, cols = np.nonzero(image[..., 3])
    return image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def animate(bundle, image: np.ndarray, prompt: str, *, strength: float | None, seed: int, key_color=None,
            frames: int = 16, size: tuple[int, int] | None = None, steps: int | None = None,
            cfg_scale: float | None = None, seamless: bool = False, canvas: str = "grow") -> np.ndarray:
    """Animate an RGBA (or RGB) uint8 image with the built-in model -> uint8 frames ``[T, H, W, 3]`` over the
    key colour (``key_color``, else the one the sprite preparation picks), on the canvas the command line gives
    it (``canvas``: see ``prepare_sprite``)."""
    background = "auto" if key_color is None else ",".join(map(str, key_color))
    sprite = prepare_sprite(image, size=size, background=background, canvas=canvas)
    return animate_sprite(bundle, sprite, prompt, strength=strength, seed=seed, frames=frames, steps=steps,
                          cfg_scale=cfg_scale, seamless=seamless)


def animate_sprite(bundle, sprite, prompt: str, *, strength: float | None, seed: int, frames: int = 16,
                   steps: int | None = None, cfg_scale: float | None = None, seamless: bool = False) -> np.ndarray:
    """Animate a prepared :class:`Sprite` -> uint8 frames ``[T, H, W, 3]`` over its key colour."""
    scale = float(bundle.config["sampling"]["motion_scale"])
    cond = bundle.encode_text(decorate_prompt(prompt, motion=None if strength is None else round(strength * scale, 1)))
    codec = bundle.codec
    result = generate(bundle.model, cond, codec=codec.bind(sprite), references=[Reference(codec.identity(sprite))],
                      context=codec.appearance(sprite), num_frames=frames, height=sprite.height, width=sprite.width,
                      seed=seed, steps=steps, cfg_scale=cfg_scale, loop=LoopControl(seamless=seamless), decode=False)
    return frames_over_key(codec.warp(result.latents, sprite)[0], sprite.key_color)


def benchmark_jobs(actions=None, *, characters: int = 2, levels=(0.4, 0.7, 1.0), seamless_characters: int = 1,
                   seed: int = 0) -> list[tuple[str, int, float, bool]]:
    """``(action, example seed, strength, seamless)`` per clip. The seeds follow the action's place among all
    actions, so a run over some actions scores the same clips as the full run does for them."""
    actions = list(actions or ACTION_NAMES)
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise ValueError(f"unknown action(s) {', '.join(unknown)}: choose from {', '.join(ACTION_NAMES)}")
    jobs = []
    for action in actions:
        base = seed + 1000 * ACTION_NAMES.index(action)
        for c in range(characters):
            for strength in levels:
                jobs.append((action, base + c, strength, False))
        if ACTIONS[action].loopable:
            for c in range(seamless_characters):
                jobs.append((action, base + 500 + c, float(levels[len(levels) // 2]), True))
    return jobs


def evaluate(bundle, *, actions=None, characters: int = 2, levels=(0.4, 0.7, 1.0), seamless_characters: int = 1,
             seed: int = 0, steps: int | None = None, cfg_scale: float | None = None, frames: int = 16,
             size: int = 64, ground_truth: bool = False, cropped: bool = False, canvas: str = "grow",
             progress=None) -> list[ClipScore]:
    """Score clips of held-out characters: ``characters`` x ``levels`` per action, plus seamless clips of loopable
    ones, drawn on a ``size`` canvas.

    ``ground_truth`` scores the training targets instead of generated clips: the drawn clips' motion-field
    latents through the bundle's warp decoder (the ceiling of the scores for this codec and tracker).
    ``cropped`` gives the model each reference cropped to its character, as game sprites usually come, animated
    on the ``canvas`` the command line gives it (``grow``: with room around it; ``keep``: the cropped size)."""
    if cropped and ground_truth:
        raise ValueError("the training targets are fields of the drawn canvas: score them uncropped")
    jobs = benchmark_jobs(actions, characters=characters, levels=levels, seamless_characters=seamless_characters,
                          seed=seed)
    field_codec = bundle.codec
    scores = []
    for i, (action, example_seed, strength, seamless) in enumerate(jobs):
        example = make_example(example_seed, "heldout", frames, size, action=action, amplitude=strength,
                               codec=field_codec if ground_truth else None)
        reference, key = example["frames"][0], example["key_color"]
        start = time.perf_counter()
        if ground_truth:
            sprite = example["sprite"]
            clip = frames_over_key(field_codec.warp(torch.from_numpy(example["latents"])[None], sprite)[0], key)
        else:
            image = crop_to_character(reference_rgba(example)) if cropped else reference_rgba(example)
            sprite = prepare_sprite(image, background=",".join(map(str, key)), canvas=canvas)
            if cropped:
                reference = sprite.composited()  # the grown canvas, when it grew
            clip = animate_sprite(bundle, sprite, example["prompt"], strength=strength, seed=example_seed,
                                  frames=frames, steps=steps, cfg_scale=cfg_scale, seamless=seamless)
        seconds = time.perf_counter() - start
        scores.append(ClipScore(
            action=action, character=example_seed, strength=strength, seamless=seamless, prompt=example["prompt"],
            phrase_heldout=bool(example["phrase_heldout"]), recognised=metrics.recognise_action(clip, key, action),
            psnr=min(metrics.frame0_psnr(clip, reference), 100.0),
            drift=metrics.identity_drift(clip, key),
            amplitude=metrics.motion_amplitude(clip, key, action=action),
            seam=metrics.seam_ratio(clip),
            torn=metrics.fragmentation(clip, key),
            seconds=seconds,
        ))
        if progress is not None:
            progress(i + 1, len(jobs), scores[-1])
    return scores


def recognition_rate(scores: list[ClipScore]) -> float:
    """Share of the non-seamless clips whose action the tracker recognised (nan without any)."""
    plain = [s.recognised for s in scores if not s.seamless]
    return float(np.mean(plain)) if plain else float("nan")


def summarise(scores: list[ClipScore]) -> dict:
    """Per-action and overall figures: recognition rate, PSNR, drift, Spearman (strength vs amplitude), seam ratio,
    tearing (mean over clips of the worst frame's share of the character in loose pieces).

    The overall figures also split the recognition rate by phrasing: ``recognised_seen_phrasing`` over clips
    prompted with a training phrasing, ``recognised_new_phrasing`` over those with a held-out one."""
    table = {}
    for action in dict.fromkeys(s.action for s in scores):
        rows = [s for s in scores if s.action == action]
        plain = [s for s in rows if not s.seamless]
        loops = [s for s in rows if s.seamless]
        rhos = []
        for character in dict.fromkeys(s.character for s in plain):
            series = [s for s in plain if s.character == character]
            if len({s.strength for s in series}) > 1:
                rho = metrics.spearman([s.strength for s in series], [s.amplitude for s in series])
                rhos.append(0.0 if np.isnan(rho) else rho)
        table[action] = dict(
            clips=len(rows),
            recognised=recognition_rate(rows),
            psnr=float(np.mean([s.psnr for s in rows])),
            drift=float(np.mean([s.drift for s in rows])),
            spearman=float(np.mean(rhos)) if rhos else float("nan"),
            seam=float(np.median([s.seam for s in loops])) if loops else float("nan"),
            torn=float(np.mean([s.torn for s in rows])),
            seconds=float(np.mean([s.seconds for s in rows])),
        )
    rhos = [v["spearman"] for v in table.values() if np.isfinite(v["spearman"])]  # NaN: one strength only
    overall = dict(
        clips=len(scores),
        recognised=recognition_rate(scores),
        recognised_seen_phrasing=recognition_rate([s for s in scores if not s.phrase_heldout]),
        recognised_new_phrasing=recognition_rate([s for s in scores if s.phrase_heldout]),
        psnr=float(np.mean([s.psnr for s in scores])),
        drift=float(np.mean([s.drift for s in scores])),
        spearman=float(np.mean(rhos)) if rhos else float("nan"),
        seam=float(np.nanmedian([s.seam for s in scores if s.seamless])) if any(s.seamless for s in scores) else float("nan"),
        torn=float(np.mean([s.torn for s in scores])),
        seconds=float(np.mean([s.seconds for s in scores])),
    )
    return {"actions": table, "overall": overall}


def as_dicts(scores: list[ClipScore]) -> list[dict]:
    return [asdict(s) for s in scores]
