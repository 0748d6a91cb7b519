"""Which actions a prompt names, in the words the built-in model learned.

The built-in text encoder learned its words from its training prompts and
nothing else. A prompt whose action is a word none of them has ("the cat
pirouettes") reads as no action at all: the character moves, but not the way
the prompt asked. :func:`no_action_note` spots such prompts so the user can
rephrase.

The model file lists, per action, the stems of the words its training
prompts used for it (``config["actions"]``, written by the trainer). A word
names an action when its stem (a plain suffix strip: "jumping", "jumps" ->
"jump") is listed for at most :data:`MAX_ACTIONS_PER_WORD` actions ("left"
names walking and running left; words every action uses name none).
"""

from __future__ import annotations

import re
from typing import Mapping

WORD = re.compile(r"[a-z]+")
SUFFIXES = ("ing", "es", "ed", "s")
MAX_ACTIONS_PER_WORD = 2
LABELS = {"squash_stretch": "squash and stretch"}  # how the note names an action (default: its name, spaced)


def stem(word: str) -> str:
    word = word.lower()
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) >= 4 and word[-1] == word[-2]:  # hopping -> hopp -> hop
        word = word[:-1]
    if len(word) >= 4 and word.endswith("e"):  # bounce / bouncing -> bounc
        word = word[:-1]
    return word


def stem_table(action_words: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    """``{action: [stems]}`` -> ``{stem: actions}`` for the stems that name at most two actions."""
    seen: dict[str, set[str]] = {}
    for action, stems in action_words.items():
        for s in stems:
            seen.setdefault(s, set()).add(action)
    return {s: frozenset(names) for s, names in seen.items() if len(names) <= MAX_ACTIONS_PER_WORD}


def named_actions(prompt: str, action_words: Mapping[str, list[str]]) -> set[str]:
    """The actions the prompt's words name, as the model learned them."""
    table = stem_table(action_words)
    return set().union(*(table.get(stem(w), frozenset()) for w in WORD.findall(prompt.lower())))


def no_action_note(prompt: str, action_words: Mapping[str, list[str]]) -> str | None:
    """A note for a prompt that names none of the model's actions, else None (also None for a model file that
    lists no action words)."""
    if not action_words or named_actions(prompt, action_words):
        return None
    known = ", ".join(LABELS.get(name, name.replace("_", " ")) for name in action_words)
    return (f"the built-in model knows no action word in {prompt.strip()!r}, so the character will move without "
            f"a clear action: name one of {known} (e.g. 'the knight jumps')")
