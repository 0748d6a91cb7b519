"""How people ask for each action: verb phrases and sentence shapes, written as data.

A prompt is a *sentence shape* filled with a *subject* and one of the
action's *verb phrases*. Verb phrases are written in their base form
("hop once"); the third person ("hops once") and the -ing form ("hopping
once") are derived (:func:`inflect`). Training prompts use
:data:`TRAIN_SHAPES` and each action's ``train`` phrases; held-out prompts use
:data:`HELDOUT_SHAPES` and each action's ``heldout`` phrases: sentences
training never saw, built from everyday words (the action words in them also
occur in training, in other sentences), the way a new user phrases a request.
"""

from __future__ import annotations

import numpy as np

#: action -> {"train": [...], "heldout": [...]} verb phrases in the base form
PHRASES: dict[str, dict[str, list[str]]] = {
    "jump": {
        "train": ["jump", "jump once", "jump up", "jump up and land", "hop", "hop once", "leap", "leap up",
                  "leap into the air", "do a jump", "do a big jump", "do a single hop", "spring up",
                  "jump into the air", "make one jump", "jump up high"],
        "heldout": ["leap up once and land", "do one big hop", "spring into the air once"],
    },
    "bounce": {
        "train": ["bounce", "bounce up and down", "bounce in place", "bounce on the spot", "keep bouncing",
                  "keep hopping", "hop up and down", "hop again and again", "bob up and down on the floor",
                  "do little bounces", "bounce around", "boing up and down", "spring up and down"],
        "heldout": ["keep hopping in place", "bounce again and again", "hop up and down in place"],
    },
    "walk_left": {
        "train": ["walk left", "walk to the left", "walk leftward", "stroll left", "stroll to the left",
                  "take a few steps left", "step to the left", "head left", "go left", "move left",
                  "walk off to the left", "walk towards the left"],
        "heldout": ["stroll off to the left", "head off toward the left", "take some steps to the left"],
    },
    "walk_right": {
        "train": ["walk right", "walk to the right", "walk rightward", "stroll right", "stroll to the right",
                  "take a few steps right", "step to the right", "head right", "go right", "move right",
                  "walk off to the right", "walk towards the right"],
        "heldout": ["stroll off to the right", "head off toward the right", "take some steps to the right"],
    },
    "run_left": {
        "train": ["run left", "run to the left", "run leftward", "dash left", "dash to the left", "sprint left",
                  "sprint to the left", "race left", "race to the left", "run off to the left", "rush left",
                  "run fast to the left"],
        "heldout": ["race off to the left", "dash off toward the left", "sprint fast to the left"],
    },
    "run_right": {
        "train": ["run right", "run to the right", "run rightward", "dash right", "dash to the right",
                  "sprint right", "sprint to the right", "race right", "race to the right", "run off to the right",
                  "rush right", "run fast to the right"],
        "heldout": ["race off to the right", "dash off toward the right", "sprint fast to the right"],
    },
    "shake_head": {
        "train": ["shake its head", "shake the head", "shake its head no", "shake its head side to side",
                  "say no", "say no with its head", "do a head shake", "turn its head side to side",
                  "shake no", "refuse with a head shake"],
        "heldout": ["shake its head to say no", "say no by shaking its head", "shake the head from side to side"],
    },
    "nod": {
        "train": ["nod", "nod its head", "nod yes", "nod the head", "say yes", "say yes with a nod",
                  "bob its head up and down", "give a nod", "nod along", "agree with a nod"],
        "heldout": ["nod to say yes", "give a little nod", "nod its head yes"],
    },
    "wave": {
        "train": ["wave", "wave hello", "wave goodbye", "wave its hand", "wave an arm", "wave its arm",
                  "say hi with a wave", "say hello with a wave", "wave bye", "give a wave", "greet with a wave",
                  "raise a hand and wave"],
        "heldout": ["wave its hand hello", "wave goodbye with one arm", "give a friendly wave"],
    },
    "spin": {
        "train": ["spin", "spin around", "spin in place", "turn around", "turn all the way around", "twirl",
                  "twirl around", "do a spin", "do a twirl", "spin once", "rotate in place", "do a full turn"],
        "heldout": ["spin all the way around", "do one twirl", "turn around in place once"],
    },
    "squash_stretch": {
        "train": ["squash and stretch", "squish", "squish and stretch", "stretch and squash", "wobble",
                  "wobble like jelly", "jiggle", "squish down and stretch up", "squash down", "stretch up",
                  "get squished and stretched", "wobble up and down"],
        "heldout": ["squish and stretch like jelly", "jiggle and wobble", "stretch up and squash down"],
    },
    "wiggle_ears": {
        "train": ["wiggle its ears", "wiggle the ears", "twitch its ears", "flap its ears", "move its ears",
                  "wiggle ears", "twitch the ears", "flick its ears", "waggle its ears", "flap the ears"],
        "heldout": ["twitch its ears back and forth", "wiggle its ears a bit", "flap its ears about"],
    },
    "talk": {
        "train": ["talk", "speak", "chatter", "say something", "open and close its mouth", "move its mouth",
                  "talk to you", "chat", "keep talking", "babble", "talk a lot", "speak up"],
        "heldout": ["talk and talk", "chatter away", "speak a few words"],
    },
    "blink": {
        "train": ["blink", "blink its eyes", "blink twice", "close and open its eyes", "shut its eyes and open them",
                  "blink slowly", "bat its eyes", "blink a couple of times", "close its eyes for a moment",
                  "do a blink"],
        "heldout": ["blink its eyes twice", "close its eyes and open them again", "blink a few times"],
    },
    "idle": {
        "train": ["idle", "stand still", "breathe", "stand and breathe", "stand still and breathe", "wait",
                  "wait in place", "rest", "stand around", "breathe gently", "do an idle animation",
                  "relax in place", "wait calmly"],
        "heldout": ["stand there and breathe", "rest in place", "stand still and wait"],
    },
    "fall": {
        "train": ["fall over", "fall down", "fall", "topple over", "trip and fall", "faint", "tip over",
                  "keel over", "collapse", "fall to the ground", "tumble over", "drop to the floor"],
        "heldout": ["trip and fall down", "topple over to the ground", "faint and fall over"],
    },
    "grow": {
        "train": ["grow", "grow bigger", "get bigger", "grow larger", "get larger", "grow in size",
                  "become bigger", "power up and grow", "swell up", "grow big", "expand", "get huge"],
        "heldout": ["grow a lot bigger", "get bigger and bigger", "swell up in size"],
    },
    "shrink": {
        "train": ["shrink", "shrink down", "get smaller", "become small", "become tiny", "shrink in size",
                  "get tiny", "shrink away", "grow smaller", "dwindle", "get smaller and smaller"],
        "heldout": ["shrink to a tiny size", "become a lot smaller", "shrink down small"],
    },
}

#: Sentence shapes: {s} subject, {v} third person, {b} base form, {g} -ing form
TRAIN_SHAPES = (
    "{s} {v}", "{s} {v}", "{s} {v}", "{s} {v}.", "{b}", "{b}!", "make {o} {b}", "let {s} {b}", "{s} is {g}",
    "{s} {g}", "{a} {g}", "{s} {v} animation", "have {s} {b}", "animate {s} {g}", "{s} should {b}",
)
HELDOUT_SHAPES = (
    "watch {s} {b}", "i want {s} to {b}", "now {s} {v}", "please make {o} {b}", "{s} will {b}", "show {s} {g}",
    "{s} {v} for me", "can you make {o} {b}",
)

#: Subjects: (form, weight); {n} is the character's noun
SUBJECTS = (("the {n}", 0.5), ("a {n}", 0.15), ("the little {n}", 0.08), ("my {n}", 0.05), ("the character", 0.08),
            ("the sprite", 0.07), ("our hero", 0.03), ("it", 0.04))

_IRREGULAR = {"do": ("does", "doing"), "go": ("goes", "going"), "have": ("has", "having"), "say": ("says", "saying"),
              "be": ("is", "being"), "become": ("becomes", "becoming"), "get": ("gets", "getting"),
              "run": ("runs", "running"), "shut": ("shuts", "shutting"), "chat": ("chats", "chatting"),
              "stop": ("stops", "stopping"), "hop": ("hops", "hopping"), "bat": ("bats", "batting"),
              "flap": ("flaps", "flapping"), "step": ("steps", "stepping"), "swell": ("swells", "swelling"),
              "dwindle": ("dwindles", "dwindling"), "topple": ("topples", "toppling"),
              "tumble": ("tumbles", "tumbling"), "wobble": ("wobbles", "wobbling"), "babble": ("babbles", "babbling"),
              "jiggle": ("jiggles", "jiggling"), "wiggle": ("wiggles", "wiggling"), "waggle": ("waggles", "waggling"),
              "drop": ("drops", "dropping"), "trip": ("trips", "tripping"), "twirl": ("twirls", "twirling")}


def inflect(phrase: str) -> tuple[str, str]:
    """Base-form verb phrase -> (third person, -ing form): the first word is inflected, and every verb after an
    "and" that joins two verbs ("trip and fall" -> "trips and falls")."""
    words = phrase.split()
    third, ing = list(words), list(words)
    verbs = [0] + [i + 1 for i, w in enumerate(words[:-1]) if w == "and" and _is_verb(words[i + 1])]
    for i in verbs:
        third[i], ing[i] = _verb_forms(words[i])
    return " ".join(third), " ".join(ing)


_VERBS = None


def _is_verb(word: str) -> bool:
    global _VERBS
    if _VERBS is None:
        _VERBS = {p.split()[0] for table in PHRASES.values() for ps in table.values() for p in ps} | set(_IRREGULAR)
    return word in _VERBS


def _verb_forms(word: str) -> tuple[str, str]:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith(("s", "sh", "ch", "x", "z")):
        third = word + "es"
    elif word.endswith("y") and word[-2:-1] not in "aeiou":
        third = word[:-1] + "ies"
    else:
        third = word + "s"
    if word.endswith("e") and not word.endswith(("ee", "ye")):
        ing = word[:-1] + "ing"
    else:
        ing = word + "ing"
    return third, ing


def make_prompt(rng: np.random.Generator, action: str, noun: str, heldout: bool) -> str:
    """One prompt for ``action`` about a ``noun`` (training or held-out phrasing)."""
    split = "heldout" if heldout else "train"
    phrase = PHRASES[action][split][rng.integers(len(PHRASES[action][split]))]
    shapes = HELDOUT_SHAPES if heldout else TRAIN_SHAPES
    shape = shapes[rng.integers(len(shapes))]
    forms, weights = zip(*SUBJECTS)
    subject = forms[rng.choice(len(forms), p=np.asarray(weights) / sum(weights))]
    if "little" in subject and "little" in noun:
        subject = "the {n}"
    subject = subject.format(n=noun)
    third, ing = inflect(phrase)
    prompt = shape.format(s=subject, v=third, b=phrase, g=ing, o=subject, a=f"a {noun}")
    return prompt[0].upper() + prompt[1:] if rng.random() < 0.5 else prompt


def training_words(action: str) -> set[str]:
    """Every word of the action's training phrases, in every form."""
    words: set[str] = set()
    for phrase in PHRASES[action]["train"]:
        for form in (phrase, *inflect(phrase)):
            words.update(form.split())
    return words


#: Words that name no action by themselves (besides the subjects' nouns).
FUNCTION_WORDS = frozenset(
    "a an the and or its it to in into on off of with by at for from up down once all way few some get is be "
    "side place spot do keep take make have let say give become go move around little big bit lot one two times "
    "again away about back forth you them like animation toward towards".split()
)


def action_words() -> dict[str, list[str]]:
    """Per action, the stems of the words its training phrases use (the model file keeps this table, so the
    runtime can tell a prompt that names no action it knows)."""
    from ..dit_core.builtin.vocabulary import stem
    from .characters import KINDS

    nouns = {noun.split()[-1] for kind in KINDS.values() for noun in kind.nouns}  # "tiny hero": "tiny" is no noun
    return {action: sorted({stem(w) for w in training_words(action) - FUNCTION_WORDS - nouns} - {stem(w) for w in FUNCTION_WORDS})
            for action in PHRASES}
