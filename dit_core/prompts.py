"""Prompt handling as Open-Sora 1.2 does it at inference.

1. Per-loop prompts: ``"|0|the knight walks|2|the knight jumps"`` gives loop 0
   and 1 the first text and loops 2+ the second.
2. Score decoration: ``" aesthetic score: 6.5."``, ``" motion score: 5.0."``,
   ``" camera motion: pan left."`` appended in that order, each only when the
   prompt does not already carry it.
3. Caption cleaning (the DeepFloyd/PixArt cleaner the model was trained with),
   applied twice: lower-casing, URL/HTML/handle removal, punctuation and dash
   normalisation, and so on.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass

from .errors import InvalidInputError

CAMERA_MOTIONS = ("none", "pan right", "pan left", "tilt up", "tilt down", "zoom in", "zoom out", "static")
AESTHETIC_RANGE = (4.0, 7.0)
MOTION_RANGE = (0.0, 100.0)


# ---------------------------------------------------------------------------
# Per-loop prompts


@dataclass(frozen=True)
class LoopPrompt:
    start_loop: int
    text: str


LOOP_MARKER = re.compile(r"\|\s*-?\d+\s*\|")  # |2|: the loop the text after it starts at


def split_loop_prompt(prompt: str) -> list[LoopPrompt]:
    """``"|0|a|2|b"`` -> [(0, "a"), (2, "b")]; a plain prompt -> [(0, prompt)]."""
    if not prompt.startswith("|0|"):
        if LOOP_MARKER.search(prompt):
            raise InvalidInputError(f"per-loop prompt {prompt!r} must start with |0| (the text of loop 0): e.g. "
                                    "|0|the cat walks|2|the cat jumps")
        return [LoopPrompt(0, prompt)]
    parts = prompt.split("|")[1:]
    if len(parts) % 2:
        raise InvalidInputError(
            f"per-loop prompt {prompt!r} is malformed: write it as |0|text for loop 0|2|text from loop 2 on"
        )
    segments, previous = [], -1
    for index_text, text in zip(parts[0::2], parts[1::2]):
        try:
            start = int(index_text)
        except ValueError:
            raise InvalidInputError(f"per-loop prompt: {index_text!r} is not a loop number (in {prompt!r})") from None
        if start <= previous:
            raise InvalidInputError(f"per-loop prompt: loop numbers must increase (got {start} after {previous})")
        segments.append(LoopPrompt(start, text.strip()))
        previous = start
    return segments


def unused_loops_note(starts, loops: int) -> str | None:
    """What to tell when per-loop prompt segments start at loops the clip does not have (``starts``: their first
    loops); None when every segment is used."""
    late = [int(s) for s in starts if int(s) >= loops]
    if not late:
        return None
    has = "1 loop (loop 0)" if loops == 1 else f"{loops} loops (0 to {loops - 1})"
    return (f"the per-loop prompt's text for loop {', '.join(map(str, late))} is never used: the clip has {has}; "
            "set more loops or number the text lower")


def join_loop_prompt(segments: list[LoopPrompt]) -> str:
    if len(segments) == 1 and segments[0].start_loop == 0:
        return segments[0].text
    return "".join(f"|{s.start_loop}|{s.text}" for s in segments)


def prompt_for_loop(prompt: str, loop: int) -> str:
    """The text used for loop ``loop`` (0-based)."""
    segments = split_loop_prompt(prompt)
    chosen = segments[0].text
    for segment in segments:
        if segment.start_loop <= loop:
            chosen = segment.text
    return chosen


# ---------------------------------------------------------------------------
# Score decoration


def validate_scores(aesthetic: float | None = None, motion: float | None = None, camera: str | None = None) -> None:
    if aesthetic is not None and not AESTHETIC_RANGE[0] <= aesthetic <= AESTHETIC_RANGE[1]:
        raise InvalidInputError(
            f"aesthetic score {aesthetic} is out of range: use {AESTHETIC_RANGE[0]}-{AESTHETIC_RANGE[1]} "
            "(6.5 is Open-Sora's default), or leave it off"
        )
    if motion is not None and not MOTION_RANGE[0] <= motion <= MOTION_RANGE[1]:
        raise InvalidInputError(
            f"motion strength {motion} is out of range: use {MOTION_RANGE[0]:g}-{MOTION_RANGE[1]:g} "
            "(small values move little; 5 is a good start), or leave it off"
        )
    if camera is not None and camera not in CAMERA_MOTIONS:
        raise InvalidInputError(f"unknown camera motion {camera!r}; choose one of {', '.join(CAMERA_MOTIONS)}")


def decorate_prompt(prompt: str, aesthetic: float | None = None, motion: float | None = None, camera: str | None = None) -> str:
    """Append Open-Sora's score phrases (aesthetic, motion, camera), skipping any the prompt already has."""
    validate_scores(aesthetic, motion, camera)
    if aesthetic is not None and "aesthetic score:" not in prompt:
        prompt = f"{prompt} aesthetic score: {aesthetic:.1f}."
    if motion is not None and "motion score:" not in prompt:
        prompt = f"{prompt} motion score: {motion:.1f}."
    if camera is not None and camera != "none" and "camera motion:" not in prompt:
        prompt = f"{prompt} camera motion: {camera}."
    return prompt


# ---------------------------------------------------------------------------
# Caption cleaning

_URL_SUFFIXES = r"(?:com|co|ru|net|org|edu|gov|it)"
_DASHES = (
    "\u002d\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0"
    "\ufe31\ufe32\ufe58\ufe63\uff0d"
)
_FILE_TYPES = r"(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)"

# (pattern, replacement) steps before HTML stripping
_BEFORE_HTML = [
    (r"<person>", "person"),
    (r"\b((?:https?:(?:\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.]" + _URL_SUFFIXES + r"[\w/-]*\b\/?(?!@)))", ""),
    (r"\b((?:www:(?:\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.]" + _URL_SUFFIXES + r"[\w/-]*\b\/?(?!@)))", ""),
]
# steps between HTML stripping and the first basic clean
_AFTER_HTML = [
    (r"@[\w\d]+\b", ""),  # @handles
    (r"[\u31c0-\u31ef]+", ""),  # CJK strokes
    (r"[\u31f0-\u31ff]+", ""),  # katakana phonetic extensions
    (r"[\u3200-\u32ff]+", ""),  # enclosed CJK letters and months
    (r"[\u3300-\u33ff]+", ""),  # CJK compatibility
    (r"[\u3400-\u4dbf]+", ""),  # CJK unified ideographs extension A
    (r"[\u4dc0-\u4dff]+", ""),  # Yijing hexagram symbols
    (r"[\u4e00-\u9fff]+", ""),  # CJK unified ideographs
    ("[" + _DASHES + "]+", "-"),  # every kind of dash
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (r"[\S]+\." + _FILE_TYPES, ""),  # file names
    (r"[\"\']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]{1,}", " "),  # runs of bad punctuation
    (r"\s+\.\s+", " "),
]
# steps after the first basic clean
_FINAL = [
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),  # jc6640
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),  # jc6640vc
    (r"\b\d+[a-zA-Z]+\d+\b", ""),  # 6640vc231
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (r"\b" + _FILE_TYPES + r"(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),  # j2d1a2a...
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # 1920x1080
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),
    (r"^[\'\_,\-\:;]", ""),
    (r"[\'\_,\-\:\-\+]$", ""),
    (r"^\.\S+$", ""),
]
_COMPILED = {name: [(re.compile(p), r) for p, r in steps] for name, steps in
             (("before", _BEFORE_HTML), ("after", _AFTER_HTML), ("final", _FINAL))}
_SEPARATORS = re.compile(r"(?:\-|\_)")


def _apply(text: str, stage: str) -> str:
    for pattern, replacement in _COMPILED[stage]:
        text = pattern.sub(replacement, text)
    return text


def _basic_clean(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def clean_caption(caption: str) -> str:
    """One pass of the caption cleaner the Open-Sora/PixArt T5 captions were trained with."""
    from bs4 import BeautifulSoup

    text = urllib.parse.unquote_plus(str(caption)).strip().lower()
    text = _apply(text, "before")
    text = BeautifulSoup(text, features="html.parser").text
    text = _apply(text, "after")
    if len(_SEPARATORS.findall(text)) > 3:  # this-is-a-slug / snake_case_words
        text = _SEPARATORS.sub(" ", text)
    text = _basic_clean(text)
    text = _apply(text, "final")
    return text.strip()


def preprocess_text(text: str) -> str:
    """Open-Sora's text preprocessing: the cleaner, applied twice."""
    return clean_caption(clean_caption(text))


def prepare_prompt(
    prompt: str,
    *,
    aesthetic: float | None = None,
    motion: float | None = None,
    camera: str | None = None,
    clean: bool = True,
) -> str:
    """Decorate and clean every loop segment of ``prompt``; loop markers are kept."""
    segments = split_loop_prompt(prompt)
    prepared = []
    for segment in segments:
        text = decorate_prompt(segment.text, aesthetic, motion, camera)
        prepared.append(LoopPrompt(segment.start_loop, preprocess_text(text) if clean else text))
    return join_loop_prompt(prepared)


def require_words(text: str) -> None:
    """Refuse a prompt segment that cleaning leaves without words (a script the cleaner removes, such as Chinese,
    or only punctuation), whatever score phrases would follow it."""
    if not preprocess_text(text).strip():
        raise InvalidInputError(f"the prompt {text!r} is empty after cleaning: use plain words")


def prepare_segment(text: str, *, aesthetic: float | None = None, motion: float | None = None,
                    camera: str | None = None) -> str:
    """One loop segment's text decorated and cleaned as the model was trained (refused by :func:`require_words`)."""
    require_words(text)
    return prepare_prompt(text, aesthetic=aesthetic, motion=motion, camera=camera, clean=True)
