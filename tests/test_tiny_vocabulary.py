"""Which actions a prompt names in the built-in model's training words, and the note for prompts naming none."""

from __future__ import annotations

import pytest

from charmotion.dit_core.tiny.actions import ACTIONS
from charmotion.dit_core.tiny.vocabulary import named_actions, no_action_note, stem


@pytest.mark.parametrize("subject", ["the tiny hero", "a slime", "the character"])
def test_every_training_phrasing_names_its_action(subject):
    for name, action in ACTIONS.items():
        for phrase in action.phrases:
            prompt = phrase.format(s=subject, n=subject.split()[-1])
            assert name in named_actions(prompt), (name, prompt)
            assert no_action_note(prompt) is None


def test_inflections_share_a_stem():
    assert {stem(w) for w in ("jump", "jumps", "jumping", "jumped")} == {"jump"}
    assert {stem(w) for w in ("hop", "hops", "hopping")} == {"hop"}
    assert {stem(w) for w in ("bounce", "bounces", "bouncing")} == {"bounc"}
    assert named_actions("The Knight WALKED to the left!") == {"walk_left", "walk_right", "run_left"}
    assert named_actions("the cat nodded") == {"nod"}


@pytest.mark.parametrize("prompt", ["the cat pirouettes", "the slime dwindles in size", "the tiny hero waits calmly",
                                    "a knight swings his sword", "the little mouse"])
def test_a_prompt_without_a_known_action_word_gets_a_note(prompt):
    assert named_actions(prompt) == set()
    assert no_action_note(prompt) == (
        f"the built-in model knows no action word in {prompt!r}, so the character will move without a clear "
        "action: name one of jump, bounce, walk left, walk right, run left, run right, shake head, nod, wave, spin, "
        "squash and stretch, wiggle ears, talk, blink, idle, fall, grow, shrink (e.g. 'the knight jumps')")
