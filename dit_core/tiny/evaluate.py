"""Measure the built-in model on held-out sprites: does the clip show the requested action?

``evaluate()`` animates held-out characters (never seen in training) with
held-out and seen phrasings, at several motion strengths, and scores every
clip with the analytic tracker in ``metrics``: frame-0 PSNR against the
reference, identity drift, action recognised, motion amplitude (for a
Spearman correlation with the requested strength), the seamless-loop seam
ratio for loopable actions, and seconds per clip.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..palette import lock_palette
from ..pipeline import Reference, generate
from ..prompts import decorate_prompt
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
    seconds: float


def pixels_to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[3, T, H, W]`` in [-1, 1] -> uint8 ``[T, H, W, 3]`` (upstream's rounding: +0.5 then truncate)."""
    x = ((video.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def frames_to_pixels(frames: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 ``[B, T, H, W, 3]`` -> float ``[B, 3, T, H, W]`` in [-1, 1] on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).float().div_(127.5).sub_(1.0)
    return x.permute(0, 4, 1, 2, 3).contiguous()


def uint8_to_pixels(image: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, 1, H, W]`` in [-1, 1]."""
    return frames_to_pixels(image[None, None])


def _lock(bundle, clip: np.ndarray, reference: np.ndarray, palette: int | None) -> np.ndarray:
    """The palette lock of the output path (``palette``: None = the model's default, 0 = off)."""
    palette = bundle.profile.palette_colors if palette is None else palette
    return lock_palette(clip, reference, palette) if palette else clip


def animate_reference(bundle, image: np.ndarray, prompt: str, *, strength: float | None, seed: int, frames: int = 16,
                      steps: int | None = None, cfg_scale: float | None = None, denoise: float | None = None,
                      seamless: bool = False, palette: int | None = None) -> np.ndarray:
    """Animate a uint8 ``[H, W, 3]`` reference with the built-in model; returns uint8 frames ``[T, H, W, 3]``,
    redrawn in at most ``palette`` of the reference's colours (see :mod:`..palette`; None = the model's default,
    0 = off)."""
    scale = float(bundle.config["sampling"]["motion_scale"])
    text = decorate_prompt(prompt, motion=None if strength is None else round(strength * scale, 1))
    cond = bundle.encode_text(text)
    latents = bundle.codec.encode(uint8_to_pixels(image).to(device=bundle.codec.device, dtype=bundle.codec.dtype))
    result = generate(bundle.model, cond, codec=bundle.codec, references=[Reference(latents)], num_frames=frames,
                      height=image.shape[0], width=image.shape[1], seed=seed, steps=steps, cfg_scale=cfg_scale,
                      denoise=denoise, seamless=seamless)
    return _lock(bundle, pixels_to_uint8(result.video[0]), image, palette)


def drawn_clip(bundle, frames: np.ndarray, *, palette: int | None = None) -> np.ndarray:
    """A drawn uint8 clip ``[T, H, W, 3]`` as the model's output path shows it - through the bundle's codec and
    palette lock (``palette`` as in :func:`animate_reference`): what a model that drew the true motion would score."""
    codec = bundle.codec
    video = codec.decode(codec.encode(frames_to_pixels(frames[None], codec.device).to(codec.dtype)))
    return _lock(bundle, pixels_to_uint8(video[0].float()), frames[0], palette)


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
             seed: int = 0, steps: int | None = None, cfg_scale: float | None = None, denoise: float | None = None,
             frames: int = 16, palette: int | None = None, ground_truth: bool = False,
             progress=None) -> list[ClipScore]:
    """Score clips of held-out characters: ``characters`` x ``levels`` per action, plus seamless clips of loopable ones.

    ``ground_truth`` scores the drawn clips themselves (see :func:`drawn_clip`) instead of generated ones: the
    ceiling of the scores for this codec, palette lock and tracker."""
    jobs = benchmark_jobs(actions, characters=characters, levels=levels, seamless_characters=seamless_characters,
                          seed=seed)
    scores = []
    for i, (action, example_seed, strength, seamless) in enumerate(jobs):
        example = make_example(example_seed, "heldout", frames, action=action, amplitude=strength)
        reference, key = example["frames"][0], example["key_color"]
        start = time.perf_counter()
        if ground_truth:
            clip = drawn_clip(bundle, example["frames"], palette=palette)
        else:
            clip = animate_reference(bundle, reference, example["prompt"], strength=strength, seed=example_seed,
                                     frames=frames, steps=steps, cfg_scale=cfg_scale, denoise=denoise,
                                     seamless=seamless, palette=palette)
        seconds = time.perf_counter() - start
        scores.append(ClipScore(
            action=action, character=example_seed, strength=strength, seamless=seamless, prompt=example["prompt"],
            phrase_heldout=bool(example["phrase_heldout"]), recognised=metrics.recognise_action(clip, key, action),
            psnr=min(metrics.frame0_psnr(clip, reference), 100.0),
            drift=metrics.identity_drift(clip, key),
            amplitude=metrics.motion_amplitude(clip, key, action=action),
            seam=metrics.seam_ratio(clip),
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
    """Per-action and overall figures: recognition rate, PSNR, drift, Spearman (strength vs amplitude), seam ratio.

    The overall figures also split the recognition rate by phrasing: ``recognised_seen_phrasing`` over clips
    prompted with a phrasing used in training, ``recognised_new_phrasing`` over those with a held-out one."""
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
            seconds=float(np.mean([s.seconds for s in rows])),
        )
    overall = dict(
        clips=len(scores),
        recognised=recognition_rate(scores),
        recognised_seen_phrasing=recognition_rate([s for s in scores if not s.phrase_heldout]),
        recognised_new_phrasing=recognition_rate([s for s in scores if s.phrase_heldout]),
        psnr=float(np.mean([s.psnr for s in scores])),
        drift=float(np.mean([s.drift for s in scores])),
        spearman=float(np.nanmean([v["spearman"] for v in table.values()])) if table else float("nan"),
        seam=float(np.nanmedian([s.seam for s in scores if s.seamless])) if any(s.seamless for s in scores) else float("nan"),
        seconds=float(np.mean([s.seconds for s in scores])),
    )
    return {"actions": table, "overall": overall}


def as_dicts(scores: list[ClipScore]) -> list[dict]:
    return [asdict(s) for s in scores]
