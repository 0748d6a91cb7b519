"""Training and held-out clips of procedural game sprites.

``make_example(seed, split)`` draws one clip: a character, an action, a
motion strength, a key-colour background and a prompt, all determined by
``seed`` and ``split``. ``iter_batches`` stacks examples into numpy batches
for training, optionally in worker processes (same batches either way).

The held-out split
------------------
Held-out examples test generalisation; training never sees any of them:

* **Characters.** Every character comes from a character id: training ids
  are in ``[0, 2**31)``, held-out ids in ``[2**31, 2**32)``. On top of
  that, some attribute combinations are reserved for held-out characters
  only (``characters.HELDOUT_PALETTES``: the "mint" palette for any kind;
  ``characters.HELDOUT_KIND_PALETTES``: gold knights, violet slimes, grey cats,
  brown bunnies, red robots, teal frogs; ``characters.HELDOUT_STYLES``:
  pixel-art with soft shading). Training characters are drawn with these
  filtered out; half of the held-out characters are forced into one of them.
* **Phrasings.** Held-out prompts are, half of the time, sentences built
  from the held-out verb phrases and sentence shapes of :mod:`.phrases`,
  which training never uses (``example["phrase_heldout"]`` says which).
* The sample characters in ``assets/samples/`` are held-out characters.

Key colours: the character is composited on a flat background chosen from
:data:`KEY_COLORS` (or a random pastel), never one close to any of the
character's colours, so the silhouette can be recovered from the key.

With a ``codec`` (the built-in model's ``MotionFieldCodec``) an example also
holds what the model learns from: the clip's motion-field latents (see
:mod:`.fields`) and the reference's appearance as the model sees it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

import torch

from ..dit_core.builtin.codec import MotionFieldCodec
from ..dit_core.builtin.sprite import Sprite
from . import fields, phrases
from . import characters as C
from . import sprites as S
from .actions import ACTION_NAMES, ACTIONS, Action, get_action

SPLITS = ("train", "heldout")
HELDOUT_ID_START = 2**31

#: Typical sprite backgrounds (0-255). "pastel" is drawn at random per example.
KEY_COLORS: dict[str, tuple[int, int, int] | None] = {
    "magenta": (255, 0, 255),
    "green": (0, 255, 0),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
    "light_grey": (200, 200, 200),
    "black": (0, 0, 0),
    "dark": (32, 32, 44),
    "pastel": None,
}
MIN_KEY_DISTANCE = 90.0  # RGB distance between the key and any character colour

def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def is_heldout_combination(kind: str, palette: str, style: str, shading: str) -> bool:
    return (palette in C.HELDOUT_PALETTES or (kind, palette) in C.HELDOUT_KIND_PALETTES
            or (style, shading) in C.HELDOUT_STYLES)


def _train_allowed(kind, palette, style, shading) -> bool:
    return not is_heldout_combination(kind, palette, style, shading)


def make_character(char_id: int, require: tuple[str, ...] = ()) -> C.Character:
    """The character with this id (ids >= 2**31 are held-out characters)."""
    rng = np.random.default_rng(char_id)
    if char_id < HELDOUT_ID_START:
        return C.sample_character(rng, allow_palette=_train_allowed, require=require)
    if rng.random() < 0.5:
        return C.sample_character(rng, require=require)
    # Force one of the reserved combinations.
    choices = [("palette", p) for p in C.HELDOUT_PALETTES]
    choices += [("kind", kp) for kp in C.HELDOUT_KIND_PALETTES if C._kind_can(C.KINDS[kp[0]], require)]
    choices += [("style", st) for st in C.HELDOUT_STYLES]
    what, value = choices[rng.integers(len(choices))]
    if what == "palette":
        return C.sample_character(rng, palette=value, require=require)
    if what == "kind":
        return C.sample_character(rng, kind=value[0], palette=value[1], require=require)
    return C.sample_character(rng, style=value[0], shading=value[1], require=require)


def character_colors_255(ch: C.Character) -> np.ndarray:
    """Colours a silhouette must be told apart from the key by (with shading extremes)."""
    names = ["main", "skin", "light", "limb", "pants", "accent", "hair", "glow", "inner", "eye", "mouth"]
    cols = [ch.colors[k] for k in names if k in ch.colors]
    if ch.outline != "none":
        cols.append(ch.colors["outline"])
    shaded = [C.darken(c, 0.76) for c in cols] if ch.shading != "flat" else []
    return np.asarray(cols + shaded, dtype=np.float64) * 255.0


def pick_key_color(rng: np.random.Generator, ch: C.Character) -> tuple[str, tuple[int, int, int]]:
    colors = character_colors_255(ch)
    names = list(KEY_COLORS)
    for _ in range(50):
        name = names[rng.integers(len(names))]
        key = KEY_COLORS[name]
        if key is None:
            key = tuple(int(round(255 * c)) for c in C.hsv(rng.uniform(0, 360), rng.uniform(0.18, 0.32), 1.0))
        if np.min(np.linalg.norm(colors - np.asarray(key, dtype=np.float64), axis=1)) >= MIN_KEY_DISTANCE:
            return name, key
    return "magenta", KEY_COLORS["magenta"]


def render_clip(ch: C.Character, action: Action, amplitude: float, *, num_frames: int = 16, size: int = 64,
                side: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied rgb [T,H,W,3] and alpha [T,H,W] (float32) of an action clip."""
    pose = action.clip_pose(num_frames, amplitude, side=side)
    return S.render(ch, pose, size, n=num_frames)


def make_example(
    seed: int,
    split: str = "train",
    num_frames: int = 16,
    size: int = 64,
    action: str | None = None,
    amplitude: float | None = None,
    codec=None,
) -> dict:
    """One clip. Same (seed, split, ...) -> same example.

    Returns ``frames`` uint8 [T,H,W,3] on the key colour, ``alpha`` uint8
    [T,H,W], ``key_color`` (r,g,b), ``key_name``, ``action``, ``prompt``,
    ``phrase_heldout``, ``amplitude`` (motion strength in [0,1]),
    ``loopable``, ``side``, ``character`` (dict of its parameters) and
    ``character_id``; with ``codec`` also ``latents`` float32 [3,T,g,g] (the
    clip's motion field), ``appearance`` [C,1,g,g] and the reference
    ``sprite`` (frame 0).
    """
    if num_frames < 2:
        raise ValueError("num_frames must be at least 2")
    code = _split_code(split)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), code, 0x5EED]))
    act = get_action(action) if action is not None else ACTIONS[ACTION_NAMES[rng.integers(len(ACTION_NAMES))]]
    amp = float(rng.uniform(0.0, 1.0)) if amplitude is None else float(amplitude)
    char_id = int(rng.integers(0, HELDOUT_ID_START)) + (HELDOUT_ID_START if split == "heldout" else 0)
    ch = make_character(char_id, require=act.requires)
    key_name, key = pick_key_color(rng, ch)
    side = int(rng.choice((-1, 1)))
    if act.name == "fall":  # fall toward the side with more room
        side = 1 if ch.x < 0.5 else -1
    phrase_heldout = split == "heldout" and rng.random() < 0.5
    prompt = phrases.make_prompt(rng, act.name, ch.noun, phrase_heldout)
    pose = act.clip_pose(num_frames, amp, side=side)
    rgb, alpha, parts, bones = S.render_parts(ch, pose, size, n=num_frames, parts=codec is not None)
    example = {
        "frames": S.composite(rgb, alpha, key),
        "alpha": np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8),
        "key_color": key,
        "key_name": key_name,
        "action": act.name,
        "prompt": prompt,
        "phrase_heldout": phrase_heldout,
        "amplitude": amp,
        "loopable": act.loopable,
        "side": side,
        "character": ch.to_dict(),
        "character_id": char_id,
    }
    if codec is not None:
        sprite = drawn_sprite(rgb[0], alpha[0], key, ch.style)
        example["latents"] = fields.clip_latents(codec, parts, bones, alpha).numpy()
        example["appearance"] = codec.appearance(sprite)[0].numpy()
        example["sprite"] = sprite
    return example


def drawn_sprite(rgb: np.ndarray, alpha: np.ndarray, key, style: str):
    """A drawn frame (premultiplied rgb [H,W,3], alpha [H,W] floats) as the built-in model's reference; the canvas
    is the working frame, as for every training clip."""
    rgba = torch.from_numpy(np.concatenate([rgb, alpha[..., None]], axis=-1)).permute(2, 0, 1).float()
    size = float(alpha.shape[0])
    return Sprite(rgba=rgba.contiguous(), frame=(0.0, 0.0, size), key_color=tuple(key), had_alpha=True,
                  mode="nearest" if style == "pixel" else "bilinear")

# ---------------------------------------------------------------------------
# Batches


def example_seed(seed: int, batch_index: int, item: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(batch_index), int(item)]).generate_state(1)[0])


def make_batch(seed: int, batch_index: int, batch_size: int, field_config, split: str = "train",
               num_frames: int = 16, size: int = 64) -> dict:
    """Batch ``batch_index`` of the stream ``seed`` (see :func:`iter_batches`)."""
    codec = MotionFieldCodec(field_config)
    examples = [make_example(example_seed(seed, batch_index, i), split, num_frames, size, codec=codec)
                for i in range(batch_size)]
    return {
        "latents": np.stack([e["latents"] for e in examples]),
        "appearance": np.stack([e["appearance"] for e in examples]),
        "action": np.asarray([ACTION_NAMES.index(e["action"]) for e in examples], dtype=np.int64),
        "amplitude": np.asarray([e["amplitude"] for e in examples], dtype=np.float32),
        "loopable": np.asarray([e["loopable"] for e in examples], dtype=bool),
        "prompt": [e["prompt"] for e in examples],
    }


def _batch_job(args):
    return make_batch(*args)


def iter_batches(seed: int, batch_size: int, field_config, split: str = "train", num_frames: int = 16,
                 size: int = 64, *, start: int = 0, num_workers: int = 0) -> Iterator[dict]:
    """Batches ``start, start + 1, ...`` forever, each a dict of numpy arrays: ``latents`` float32
    [B,3,T,g,g], ``appearance`` float32 [B,C,1,g,g], ``action`` int64 [B] (index into ``ACTION_NAMES``),
    ``amplitude`` float32 [B], ``loopable`` bool [B] and ``prompt`` (B strings). Batch ``i`` depends only on
    ``(seed, i)``, so ``num_workers`` (worker processes) never changes the data."""
    _split_code(split)
    jobs = ((seed, i, batch_size, field_config, split, num_frames, size) for i in _count(start))
    yield from prefetch(_batch_job, jobs, num_workers)


def prefetch(function, jobs, num_workers: int = 0, depth: int | None = None) -> Iterator:
    """``function(job)`` for every job, in order; with ``num_workers`` > 0 computed ahead in worker processes
    (forked where the platform allows), at most ``depth`` (default ``2 * num_workers``) results waiting, so a
    slow consumer never piles finished batches up in memory."""
    if num_workers <= 0:
        for job in jobs:
            yield function(job)
        return
    import multiprocessing as mp
    from collections import deque

    depth = depth or 2 * num_workers
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(num_workers, initializer=_worker_setup) as pool:
        pending = deque()
        for job in jobs:
            pending.append(pool.apply_async(function, (job,)))
            if len(pending) >= depth:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _worker_setup():
    """A forked worker computes on one thread: OpenMP's thread pool does not survive a fork (torch would hang)."""
    torch.set_num_threads(1)


def _count(start: int):
    i = start
    while True:
        yield i
        i += 1


# ---------------------------------------------------------------------------
# Sample characters for the demo (held-out characters, committed as PNGs)

#: name -> (held-out character id, kind, palette); see ``assets/samples/``.
SAMPLE_CHARACTERS = {
    "knight": (HELDOUT_ID_START + 11, "knight", "gold"),
    "slime": (HELDOUT_ID_START + 22, "slime", "violet"),
    "cat": (HELDOUT_ID_START + 33, "cat", "grey"),
}


def sample_character(name: str) -> C.Character:
    """One of the demo characters (smooth style, centred on the canvas)."""
    try:
        char_id, kind, palette = SAMPLE_CHARACTERS[name]
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLE_CHARACTERS)}") from None
    rng = np.random.default_rng(char_id)
    ch = C.sample_character(rng, kind=kind, palette=palette, style="smooth", shading="cel")
    return replace(ch, x=0.5, y=0.88, height=0.72, outline="dark", colors={**ch.colors, "outline": C.OUTLINE_DARK})


def sample_image(name: str, size: int = 64) -> np.ndarray:
    """RGBA uint8 [size,size,4] rest-pose image of a demo character."""
    rgb, alpha = S.render(sample_character(name), S.REST, size, n=1)
    return S.to_rgba(rgb, alpha)[0]


def write_sample_assets(out_dir: str | os.PathLike, size: int = 64) -> list[Path]:
    """Write ``<name>.png`` for every demo character; refuses to overwrite."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SAMPLE_CHARACTERS:
        path = out_dir / f"{name}.png"
        if path.exists():
            raise FileExistsError(f"{path} already exists; delete it first or choose another folder")
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(sample_image(name, size), "RGBA").save(tmp, format="PNG")
        os.replace(tmp, path)
        written.append(path)
    return written
