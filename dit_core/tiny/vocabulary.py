"""Which actions a prompt names, in the words the built-in model learned.

The built-in text encoder learned from the training phrasings in
:mod:`.actions` and nothing else. A prompt whose action is a word none of
them has ("the cat pirouettes") reads as no action at all: the character
moves, but not in a way the prompt asked for. :func:`no_action_note` spots
such prompts so the user can rephrase.

A word names an action when its stem (a plain suffix strip: "jumping",
"jumps" -> "jump") is the stem of a word that occurs in the phrasings of at
most two actions and is neither a function word nor part of a character's
name ("left" names walking and running left; "the", "in", "up", "says" or
"tiny" name none).
"""

from __future__ import annotations

import re
from functools import lru_cache

from .actions import ACTIONS
from .sprites import KINDS

WORD = re.compile(r"[a-z]+")
SUFFIXES = ("ing", "es", "ed", "s")
MAX_ACTIONS_PER_WORD = 2
LABELS = {"squash_stretch": "squash and stretch"}  # how the note names an action (default: its name, spaced)
FUNCTION_WORDS = frozenset(
    "a an the and or its it to in into on off of with by at for from up down once all way few some gets get is "
    "side place spot does doing keeps takes".split()
)


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


def _words(template: str) -> set[str]:
    return set(WORD.findall(template.replace("{s}", " ").replace("{n}", " ").lower()))


@lru_cache(maxsize=1)
def action_stems() -> dict[str, frozenset[str]]:
    """Stem -> the actions whose training phrasings use it (only stems of at most two actions)."""
    seen: dict[str, set[str]] = {}
    subjects = {w for kind in KINDS.values() for noun in kind.nouns for w in _words(noun)}
    for name, action in ACTIONS.items():
        for word in set().union(*(_words(p) for p in action.phrases)) - FUNCTION_WORDS - subjects:
            seen.setdefault(stem(word), set()).add(name)
    return {s: frozenset(names) for s, names in seen.items() if len(names) <= MAX_ACTIONS_PER_WORD}


def named_actions(prompt: str) -> set[str]:
    """The actions the prompt's words name, as the built-in model learned them."""
    table = action_stems()
    return set().union(*(table.get(stem(w), frozenset()) for w in WORD.findall(prompt.lower())))


def no_action_note(prompt: str) -> str | None:
    """A note for a prompt that names none of the built-in model's actions, else None."""
    if named_actions(prompt):
        return None
    known = ", ".join(LABELS.get(name, name.replace("_", " ")) for name in ACTIONS)
    return (f"the built-in model knows no action word in {prompt.strip()!r}, so the character will move without "
            f"a clear action: name one of {known} (e.g. 'the knight jumps')")
