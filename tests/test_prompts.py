"""Prompt decoration, caption cleaning and per-loop prompts, as Open-Sora 1.2 does them."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from charmotion.dit_core.errors import InvalidInputError
from charmotion.dit_core.prompts import (
    decorate_prompt,
    prepare_prompt,
    preprocess_text,
    prompt_for_loop,
    split_loop_prompt,
    unused_loops_note,
)


def test_decoration_wording_order_and_number_format():
    assert (
        decorate_prompt("A knight swings his sword.", aesthetic=6.5, motion=5, camera="pan left")
        == "A knight swings his sword. aesthetic score: 6.5. motion score: 5.0. camera motion: pan left."
    )
    assert decorate_prompt("a slime", motion=12.34) == "a slime motion score: 12.3."
    assert decorate_prompt("a slime", camera="none") == "a slime"
    assert decorate_prompt("a slime") == "a slime"


def test_decoration_is_not_duplicated():
    prompt = "a cat waves. motion score: 3.0."
    assert decorate_prompt(prompt, motion=8, aesthetic=5) == prompt + " aesthetic score: 5.0."


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(aesthetic=8.0), "aesthetic score 8.0 is out of range"),
        (dict(aesthetic=3.9), "aesthetic score 3.9 is out of range"),
        (dict(motion=-1.0), "motion strength -1.0 is out of range"),
        (dict(motion=101.0), "motion strength 101.0 is out of range"),
        (dict(camera="orbit"), "unknown camera motion 'orbit'"),
    ],
)
def test_score_ranges_are_validated(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        decorate_prompt("a knight", **kwargs)


@pytest.mark.parametrize(
    "raw,clean",
    [
        (
            "A knight swings his sword. aesthetic score: 6.5. motion score: 5.0. camera motion: pan left.",
            "a knight swings his sword. aesthetic score: 6.5. motion score: 5.0. camera motion: pan left.",
        ),
        ("pixel-art_knight-sprite_walk-cycle_v2", "pixel art knight sprite walk cycle v2"),
        ("A <b>Slime</b> bounces!!  see https://example.com/x", "a slime bounces!! see"),
        ("“Quoted” knight @artist #12 walks", '"quoted" knight walks'),
        ("knight (pixel art) * walks ... left", "knight pixel art walks left"),
        ("the robot-spins_fast and-then_stops 1920x1080 IMG_2231.png &amp; more", "the robot spins fast and then stops more"),
        ("Jump, jump! 12.5% higher: really?", "jump, jump! 12.5% higher: really?"),
    ],
)
def test_caption_cleaning(raw, clean):
    """Expected strings were produced by upstream's own text_preprocessing."""
    assert preprocess_text(raw) == clean


def test_prepare_prompt_decorates_each_loop_segment():
    prepared = prepare_prompt("|0|The slime bounces|2|The slime jumps", aesthetic=6.5, motion=4)
    assert prepared == (
        "|0|the slime bounces aesthetic score: 6.5. motion score: 4.0."
        "|2|the slime jumps aesthetic score: 6.5. motion score: 4.0."
    )


def test_loop_prompts():
    prompt = "|0|walk|2|jump|5|wave"
    assert [prompt_for_loop(prompt, k) for k in range(7)] == ["walk", "walk", "jump", "jump", "jump", "wave", "wave"]
    assert prompt_for_loop("plain prompt", 3) == "plain prompt"
    assert [s.start_loop for s in split_loop_prompt(prompt)] == [0, 2, 5]
    assert unused_loops_note([0, 2, 5], 6) is None
    assert unused_loops_note([0, 2, 5], 2) == ("the per-loop prompt's text for loop 2, 5 is never used: the clip has 2 "
                                               "loops (0 to 1); set more loops or number the text lower")


@pytest.mark.parametrize("bad,message", [("|0|a|x|b", "not a loop number"), ("|0|a|0|b", "must increase"), ("|0|a|2", "malformed"),
                                         ("|1|jump", "must start with |0|"), ("walk|2|jump", "must start with |0|"),
                                         ("|-1|walk", "must start with |0|")])
def test_malformed_loop_prompts(bad, message):
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        split_loop_prompt(bad)


def test_each_family_keeps_the_score_phrases_it_was_trained_with():
    from charmotion.dit_core.families import OPENSORA12

    assert OPENSORA12.usable_scores(6.5, "pan left") == (6.5, "pan left", [])
    builtin = replace(OPENSORA12, name="Small", scores=("aesthetic", "motion"))
    assert builtin.usable_scores(6.5, "none") == (6.5, "none", [])
    assert builtin.usable_scores(None, "zoom in") == (None, None, ["Small knows no camera motion: 'zoom in' is left "
                                                                   "out of the prompt"])
    plain = replace(OPENSORA12, name="Plain", scores=("motion",))
    assert plain.usable_scores(6.5, None) == (None, None, ["Plain knows no aesthetic score: it is left out of the "
                                                           "prompt"])
