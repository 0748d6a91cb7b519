"""Which actions a prompt names in the built-in model's training words, and the note for prompts naming none."""

from __future__ import annotations

import numpy as np
import pytest

from charmotion.dit_core.builtin.vocabulary import named_actions, no_action_note, stem
from charmotion.training import phrases as P

WORDS = P.action_words()  # what the trainer writes into the model file


def test_every_training_and_held_out_phrase_names_its_action():
    rng = np.random.default_rng(0)
    for name, table in P.PHRASES.items():
        for split in ("train", "heldout"):
            for phrase in table[split]:
                third, ing = P.inflect(phrase)
                for prompt in (f"the little slime {third}", phrase, f"a knight {ing}"):
                    assert name in named_actions(prompt, WORDS), (name, prompt)
                    assert no_action_note(prompt, WORDS) is None
        for _ in range(5):
            assert name in named_actions(P.make_prompt(rng, name, "cat", heldout=True), WORDS)


def test_inflections_share_a_stem():
    assert {stem(w) for w in ("jump", "jumps", "jumping", "jumped")} == {"jump"}
    assert {stem(w) for w in ("hop", "hops", "hopping")} == {"hop"}
    assert {stem(w) for w in ("bounce", "bounces", "bouncing")} == {"bounc"}
    assert named_actions("The Knight WALKED to the left!", WORDS) == {"walk_left", "walk_right", "run_left"}
    assert named_actions("the cat nodded", WORDS) == {"nod"}


@pytest.mark.parametrize("prompt", ["the cat pirouettes", "a knight swings his sword", "the little mouse",
                                    "the slime melts"])
def test_a_prompt_without_a_known_action_word_gets_a_note(prompt):
    assert named_actions(prompt, WORDS) == set()
    assert no_action_note(prompt, WORDS) == (
        f"the built-in model knows no action word in {prompt!r}, so the character will move without a clear "
        "action: name one of jump, bounce, walk left, walk right, run left, run right, shake head, nod, wave, spin, "
        "squash and stretch, wiggle ears, talk, blink, idle, fall, grow, shrink (e.g. 'the knight jumps')")


def test_a_model_file_without_action_words_notes_nothing():
    assert no_action_note("the cat pirouettes", {}) is None
