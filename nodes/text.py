"""Text conditioning: a prompt (+ motion strength, aesthetic, camera motion) -> CONDITIONING.

The output is core ``CONDITIONING`` (``[[features [1, L, C], {"pooled_output":
None, "attention_mask": [1, L], ...}], ...]``), one entry per per-loop prompt
segment, so core conditioning nodes pass it through. The sampler also takes a
``CONDITIONING`` straight from core ``CLIPTextEncode`` (then the prompt is used
as typed: no score phrases, no caption cleaning).

Open-Sora 1.2 (T5 through core ``CLIPLoader``, type ``pixart``): the prompt is
decorated (aesthetic, motion, camera phrases) and cleaned as upstream does,
tokenized with ``clip.tokenize`` and encoded; then fitted to the model's 300
caption slots with a valid-token mask (:func:`fit_caption`). Upstream's
tokenizer truncates to 300 tokens keeping room for the end-of-text token; a
longer prompt is cut the same way *before* encoding (the first 299 tokens +
the end token), so the features match upstream's. The ``attention_mask`` of
padded CLIP types (``mochi``, ``ltxv``, ...) is used as the valid-token mask;
without one (``pixart``) every token is valid.

The built-in model encodes with its own small text encoder (no CLIP needed).
"""

from __future__ import annotations

import torch

from ..dit_core import checks
from ..dit_core.errors import InvalidInputError
from ..dit_core.prompts import LoopPrompt, prepare_segment, split_loop_prompt
from ..dit_core.sampling import TextCondition
from . import host
from .handles import BUILTIN, MODEL_TYPE, MOTION_TYPE, ModelHandle, MotionControl

CATEGORY = "CharMotion/conditioning"
LOOP_KEY = "charmotion_loop"  # first loop a per-loop prompt segment applies to
PROMPT_KEY = "charmotion_prompt"  # the text that was encoded


def truncate_tokens(tokens: dict, limit: int, pad_id: int = 0) -> dict:
    """Cut token lists longer than ``limit`` the way Open-Sora's tokenizer truncates.

    ``tokens`` is what ``clip.tokenize`` returns (``{name: [[(id, weight, ...), ...]]}``).
    The text part (everything before trailing ``pad_id`` tokens; T5 pads with
    0) keeps its first ``limit - 1`` tokens and its last one, the end-of-text
    token; padding after it is cut to fit ``limit`` as well.
    """
    out = {}
    for key, batches in tokens.items():
        if isinstance(batches, list) and len(batches) == 1 and isinstance(batches[0], list) and len(batches[0]) > limit:
            batch = batches[0]
            end = len(batch)
            while end > 1 and _token_id(batch[end - 1]) == pad_id:
                end -= 1
            text, pads = batch[:end], batch[end:]
            if len(text) > limit:
                text = text[: limit - 1] + text[-1:]
            batches = [(text + pads)[:limit]]
        out[key] = batches
    return out


def _token_id(token) -> int | None:
    value = token[0] if isinstance(token, (tuple, list)) else token
    return int(value) if isinstance(value, int) else None


def fit_caption(features: torch.Tensor, mask: torch.Tensor | None, length: int, channels: int,
                what: str = "the prompt") -> TextCondition:
    """Features ``[1, L, C]`` (+ mask ``[1, L]``) -> a ``TextCondition`` of exactly ``length`` slots.

    Longer captions keep their first ``length`` tokens; shorter ones are padded
    with zeros that the mask marks invalid. No mask: every token is valid.
    """
    if features.dim() == 2:
        features = features[None]
    if features.dim() != 3:
        raise InvalidInputError(f"{what}: conditioning features must be [1, tokens, channels]; got {list(features.shape)}")
    if features.shape[-1] != channels:
        raise InvalidInputError(
            f"{what} has {features.shape[-1]}-wide text features but the model takes {channels}: "
            + ("load T5 v1.1 XXL with core CLIPLoader (type pixart) and encode with CharMotion Text Encode"
               if channels == 4096 else
               "the built-in model reads its own prompts: use CharMotion Text Encode without a CLIP")
        )
    features = features.detach().float().cpu()
    n, tokens = features.shape[0], features.shape[1]
    if mask is None:
        mask = torch.ones(n, tokens, dtype=torch.long)
    else:
        mask = mask.detach().cpu().reshape(-1, mask.shape[-1]).long()
        if mask.shape[-1] != tokens:
            raise InvalidInputError(f"{what}: attention mask of {mask.shape[-1]} tokens for {tokens} token features")
        mask = mask.expand(n, tokens)
    if tokens > length:
        features, mask = features[:, :length], mask[:, :length]
    elif tokens < length:
        features = torch.nn.functional.pad(features, (0, 0, 0, length - tokens))
        mask = torch.nn.functional.pad(mask, (0, length - tokens))
    if int(mask.sum()) == 0:
        raise InvalidInputError(f"{what} has no valid tokens: type a prompt")
    return TextCondition(features[:, None], mask.clone())


def to_conditioning(cond: TextCondition, start_loop: int, text: str) -> list:
    device = host.intermediate_device()
    extras = {"pooled_output": None, "attention_mask": cond.full_mask.to(device), LOOP_KEY: int(start_loop),
              PROMPT_KEY: text}
    return [[cond.y[:, 0].to(device), extras]]


def conditioning_segments(conditioning, model: ModelHandle, what: str = "positive") -> list[tuple[int, TextCondition]]:
    """CONDITIONING -> ``[(first loop, TextCondition), ...]`` sorted by loop, fitted to the model.

    Entries without the pack's loop key (core ``CLIPTextEncode``) apply from
    loop 0; of several such entries (hook scheduling) the first is used.
    """
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise InvalidInputError(f"the {what} conditioning is empty: connect CharMotion Text Encode or CLIPTextEncode")
    segments: dict[int, TextCondition] = {}
    for entry in conditioning:
        if not isinstance(entry, (list, tuple)) or len(entry) < 2 or not isinstance(entry[0], torch.Tensor):
            raise InvalidInputError(f"the {what} input is not CONDITIONING: connect a text encoder's output")
        features, extras = entry[0], entry[1] or {}
        start = int(extras.get(LOOP_KEY, 0))
        if start in segments:
            continue
        segments[start] = fit_caption(features, extras.get("attention_mask"), model.caption_length,
                                      model.caption_channels, what=f"the {what} prompt")
    if 0 not in segments:
        raise InvalidInputError(f"the {what} per-loop prompt has no text for loop 0: start it with |0|")
    return sorted(segments.items())


def conditions_for_loops(segments: list[tuple[int, TextCondition]], loops: int) -> list[TextCondition]:
    """One condition per loop: each loop takes the last segment that starts at or before it."""
    out = []
    for loop in range(max(1, loops)):
        out.append([cond for start, cond in segments if start <= loop][-1])
    return out


class CharMotionTextEncode:
    """Prompt + motion strength / aesthetic / camera motion -> conditioning the CharMotion sampler takes."""

    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    DESCRIPTION = (
        "Decorates the prompt with Open-Sora's score phrases (from CharMotion Motion Control), cleans it as the "
        "model was trained, and encodes it: with T5 (core CLIPLoader, type pixart) for Open-Sora 1.2, with its "
        "own encoder for the built-in model. Per-loop prompts: |0|text for loop 0|1|text from loop 1 on."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "The denoiser the conditioning is for."}),
                "text": ("STRING", {"multiline": True, "default": "", "dynamicPrompts": False,
                                    "tooltip": "What the character does. |0|...|1|... gives each loop its own prompt."}),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "T5-XXL from core CLIPLoader (type pixart); not used by the built-in model."}),
                "motion": (MOTION_TYPE, {"tooltip": "Motion strength, aesthetic score and camera motion phrases."}),
            },
        }

    def encode(self, model, text, clip=None, motion=None):
        motion = motion or MotionControl()
        if motion.motion is not None:
            checks.motion_strength(motion.motion, model.motion_range, model.name,
                                   "CharMotion Motion Control's motion_strength")
        if not str(text).strip():
            raise InvalidInputError("the prompt is empty: describe what the character does")
        aesthetic, camera, notes = model.loaded.family.usable_scores(motion.aesthetic, motion.camera)
        for note in notes:
            host.log.warning("CharMotion Text Encode: %s", note)
        conditioning = []
        for segment in split_loop_prompt(str(text).strip()):
            prepared = prepare_segment(segment.text, aesthetic=aesthetic, motion=motion.motion, camera=camera)
            if model.family == BUILTIN and (note := model.text_encoder.prompt_note(segment.text)):
                host.log.warning("CharMotion Text Encode: %s", note)
                notes.append(note)
            conditioning += self._encode_one(model, clip, LoopPrompt(segment.start_loop, prepared))
        return host.with_notes((conditioning,), notes)

    @staticmethod
    def _encode_one(model: ModelHandle, clip, segment: LoopPrompt) -> list:
        if model.text_encoder is not None:
            cond = model.text_encoder.encode_text(segment.text, clean=False)
            cond = fit_caption(cond.y[:, 0], cond.mask, model.caption_length, model.caption_channels)
            return to_conditioning(cond, segment.start_loop, segment.text)
        if clip is None:
            raise InvalidInputError(
                f"{model.name} needs T5-XXL: load it with core CLIPLoader (type pixart) and connect it to 'clip'"
            )
        tokens = truncate_tokens(clip.tokenize(segment.text), model.caption_length)
        if hasattr(clip, "encode_from_tokens_scheduled"):
            encoded = clip.encode_from_tokens_scheduled(tokens)
        else:  # ComfyUI before hook scheduling
            out = clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)
            cond = out.pop("cond")
            encoded = [[cond, out]]
        features, extras = encoded[0][0], encoded[0][1] or {}
        cond = fit_caption(features, extras.get("attention_mask"), model.caption_length, model.caption_channels)
        return to_conditioning(cond, segment.start_loop, segment.text)
