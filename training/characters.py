"""The characters the sprite generator draws, as data: kinds, palettes, proportions, and how one is sampled.

A :class:`Character` is plain data (kind, style, palette, proportions, which
ears / hat / tail / eyes it has, where it stands on the canvas), built from
the table of character kinds (:data:`KINDS`) by :func:`sample_character`.
Some palette / kind / style combinations are kept for held-out characters
only (:data:`HELDOUT_PALETTES`, :data:`HELDOUT_KIND_PALETTES`,
:data:`HELDOUT_STYLES`). :mod:`.sprites` draws them.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, fields

import numpy as np


# ---------------------------------------------------------------------------
# Colours and palettes

# name: (hue degrees lo, hi), (saturation lo, hi), (value lo, hi)
PALETTES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-8, 8), (0.65, 0.85), (0.78, 0.92)),
    "orange": ((20, 32), (0.7, 0.88), (0.9, 1.0)),
    "yellow": ((46, 56), (0.6, 0.8), (0.95, 1.0)),
    "lime": ((75, 95), (0.55, 0.75), (0.8, 0.95)),
    "green": ((105, 135), (0.5, 0.7), (0.6, 0.85)),
    "teal": ((168, 185), (0.55, 0.75), (0.62, 0.82)),
    "sky": ((195, 208), (0.45, 0.65), (0.9, 1.0)),
    "blue": ((215, 232), (0.6, 0.8), (0.7, 0.9)),
    "purple": ((262, 280), (0.45, 0.65), (0.7, 0.9)),
    "violet": ((282, 296), (0.5, 0.7), (0.6, 0.8)),
    "pink": ((320, 340), (0.35, 0.55), (0.95, 1.0)),
    "brown": ((18, 32), (0.45, 0.65), (0.42, 0.6)),
    "grey": ((0, 360), (0.0, 0.06), (0.5, 0.68)),
    "steel": ((205, 220), (0.08, 0.18), (0.66, 0.8)),
    "white": ((0, 360), (0.0, 0.05), (0.9, 0.97)),
    "black": ((230, 260), (0.12, 0.22), (0.22, 0.3)),
    "gold": ((42, 50), (0.7, 0.85), (0.85, 0.95)),
    "mint": ((145, 160), (0.3, 0.42), (0.85, 0.95)),
}

SKIN_TONES = ((1.0, 0.87, 0.74), (0.97, 0.78, 0.62), (0.84, 0.62, 0.45), (0.6, 0.42, 0.3), (1.0, 0.92, 0.84))
OUTLINE_DARK = (0.12, 0.09, 0.16)
MOUTH_DARK = (0.42, 0.1, 0.14)
MOUTH_COLORS = (MOUTH_DARK, (0.12, 0.03, 0.05), (0.88, 0.32, 0.38))  # the one farthest from the face is used
TONGUE = (0.8, 0.28, 0.36)
BLUSH = (1.0, 0.6, 0.66)
EYE_DARK = (0.1, 0.08, 0.14)
WHITE = (1.0, 1.0, 1.0)
PALETTE_GOLD = (0.98, 0.8, 0.25)
HAIR_COLORS = ((0.35, 0.2, 0.1), (0.95, 0.8, 0.35), (0.15, 0.12, 0.12), (0.8, 0.35, 0.15), (0.55, 0.55, 0.9))


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb((h / 360.0) % 1.0, s, v)


def mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))


def darken(c, f: float) -> tuple[float, float, float]:
    return tuple(float(x * f) for x in c)


def palette_color(rng: np.random.Generator, name: str) -> tuple[float, float, float]:
    (h0, h1), (s0, s1), (v0, v1) = PALETTES[name]
    return hsv(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


# ---------------------------------------------------------------------------
# Character kinds (data, not code)


@dataclass(frozen=True)
class Kind:
    archetype: str  # "biped": head on a body with legs; "blob": one body with a face
    nouns: tuple[str, ...]
    palettes: tuple[str, ...]
    skin: str = "main"  # face colour: "main", "human" (skin tones) or "green"
    heads: tuple[str, ...] = ("round",)
    bodies: tuple[str, ...] = ("ellipse",)
    ears: tuple[str, ...] = ("none",)
    hats: tuple[str, ...] = ("none",)
    tails: tuple[str, ...] = ("none",)
    eyes: tuple[str, ...] = ("dot", "anime")
    arms: tuple[str, ...] = ("arms",)
    extras: tuple[str, ...] = ()  # optional: belly, muzzle, blush, window, shine
    always: tuple[str, ...] = ()  # extras every character of the kind has
    ranges: tuple[tuple[str, float, float], ...] = ()  # overrides of GEOMETRY_RANGES


KINDS: dict[str, Kind] = {
    "knight": Kind("biped", ("knight", "little knight", "armored knight", "tiny hero"),
                   ("steel", "grey", "blue", "red", "gold"), skin="human", heads=("round", "box"),
                   bodies=("box", "ellipse"), hats=("plume", "horns", "none"), always=("window",)),
    "mage": Kind("biped", ("mage", "wizard", "little wizard", "sorcerer"),
                 ("purple", "blue", "red", "teal", "violet"), skin="human", bodies=("robe",),
                 hats=("wizard",), extras=("blush",)),
    "robot": Kind("biped", ("robot", "little robot", "bot", "droid"),
                  ("grey", "steel", "sky", "yellow", "red"), heads=("box",), bodies=("box",),
                  hats=("antenna", "none"), eyes=("glow",), extras=("belly",)),
    "kid": Kind("biped", ("kid", "hero", "adventurer", "little hero"),
                ("red", "blue", "green", "orange", "pink"), skin="human", bodies=("box", "ellipse"),
                hats=("hair", "cap"), extras=("blush",)),
    "goblin": Kind("biped", ("goblin", "little goblin", "imp"),
                   ("brown", "purple", "red", "grey"), skin="green", ears=("side",),
                   bodies=("ellipse", "box"), extras=("belly",)),
    "cat": Kind("biped", ("cat", "kitty", "kitten"), ("orange", "grey", "black", "white", "brown"),
                ears=("pointy",), tails=("thin",), extras=("belly", "muzzle", "blush")),
    "fox": Kind("biped", ("fox", "little fox"), ("orange", "red", "white"), ears=("pointy",),
                tails=("fluffy",), extras=("belly", "muzzle"), always=("belly",)),
    "bunny": Kind("biped", ("bunny", "rabbit", "bunny rabbit"), ("white", "pink", "brown", "grey"),
                  ears=("long",), tails=("pompom",), extras=("belly", "blush")),
    "bear": Kind("biped", ("bear", "teddy bear", "little bear"), ("brown", "white", "black", "orange"),
                 ears=("round",), bodies=("ellipse",), extras=("belly", "muzzle")),
    "mouse": Kind("biped", ("mouse", "little mouse"), ("grey", "brown", "white"), ears=("big_round",),
                  tails=("thin",), extras=("belly", "blush")),
    "frog": Kind("biped", ("frog", "froggy", "little frog"), ("green", "lime", "teal"), ears=("none",),
                 hats=("none", "crown"), eyes=("anime",), extras=("belly", "blush"), always=("belly",),
                 ranges=(("head_ratio", 1.35, 1.6), ("eye_dy", 0.1, 0.16), ("eye_size", 0.12, 0.16),
                         ("eye_sep", 0.26, 0.32), ("mouth_w", 0.16, 0.22), ("mouth_gap", 0.3, 0.4))),
    "slime": Kind("blob", ("slime", "blob", "jelly", "slime monster"),
                  ("green", "lime", "sky", "blue", "pink", "violet", "teal"), bodies=("slime",), ranges=(("body_ratio", 1.1, 1.5),),
                  arms=("none", "nubs"), ears=("none", "pointy"), extras=("shine", "blush"), always=("shine",)),
    "ghost": Kind("blob", ("ghost", "little ghost", "spirit"), ("white", "purple", "sky"),
                  bodies=("ghost",), ranges=(("body_ratio", 0.8, 1.0), ("blob_neck", 0.45, 0.55)), arms=("nubs",), extras=("blush",)),
    "mushroom": Kind("blob", ("mushroom", "mushroom buddy", "shroom"), ("red", "orange", "purple", "brown"),
                     skin="cream", bodies=("stem",),
                     ranges=(("body_ratio", 0.85, 1.0), ("blob_neck", 0.27, 0.3), ("blob_face", 0.5, 0.55),
                             ("eye_size", 0.08, 0.1), ("eye_sep", 0.3, 0.36), ("eye_dy", 0.0, 0.04),
                             ("mouth_gap", 0.1, 0.13)), arms=("nubs", "none"), hats=("mushroom",), extras=("blush",)),
}

#: Attribute combinations that only the held-out split uses.
HELDOUT_PALETTES = ("mint",)
HELDOUT_KIND_PALETTES = (("knight", "gold"), ("slime", "violet"), ("cat", "grey"), ("bunny", "brown"),
                         ("robot", "red"), ("frog", "teal"))
HELDOUT_STYLES = (("pixel", "soft"),)

UPRIGHT_ASPECT = 1.3  # rest height / width of characters that can fall over
STYLES = ("smooth", "pixel")
SHADINGS = ("flat", "cel", "soft")
OUTLINES = ("none", "dark", "shade")


@dataclass(frozen=True)
class Character:
    """Everything needed to draw one character (plain data; see :func:`sample_character`)."""

    kind: str
    noun: str
    archetype: str
    style: str
    shading: str
    outline: str
    palette: str
    facing: int  # +1 looks right, -1 looks left
    height: float  # rest-pose sprite height as a fraction of the canvas
    x: float  # feet position, fractions of the canvas
    y: float
    head: str
    body: str
    ears: str
    hat: str
    tail: str
    eyes: str
    arms: str
    extras: tuple[str, ...]
    geometry: dict[str, float] = field(default_factory=dict)
    colors: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # derived data (shapes, size), computed on first use
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def has(self, feature: str) -> bool:
        """Whether the character can show an action needing ``feature``
        ("upright": on legs and clearly taller than wide, so it can fall over)."""
        if feature == "upright":
            if self.archetype != "biped":
                return False
            from .sprites import rest_bounds  # the drawn shapes live in sprites, which builds on this module

            x0, x1, y0, y1 = rest_bounds(self)
            return (y1 - min(y0, 0.0)) >= UPRIGHT_ASPECT * (x1 - x0)
        return {
            "arms": self.arms != "none",
            "ears": self.ears != "none",
            "legs": self.archetype == "biped",
            "eyes": True,
            "mouth": True,
        }[feature]

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        d["extras"] = list(self.extras)
        d["colors"] = {k: [round(c, 4) for c in v] for k, v in self.colors.items()}
        d["geometry"] = {k: round(float(v), 5) for k, v in self.geometry.items()}
        return d


def character_colors(rng: np.random.Generator, kind: Kind, palette: str, outline: str) -> dict:
    main = palette_color(rng, palette)
    accent_palette = rng.choice([p for p in PALETTES if p not in (palette, "mint", "black")])
    accent = palette_color(rng, accent_palette)
    if kind.skin == "human":
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    elif kind.skin == "green":
        skin = hsv(rng.uniform(80, 125), rng.uniform(0.35, 0.55), rng.uniform(0.6, 0.8))
    elif kind.skin == "cream":
        skin = hsv(rng.uniform(30, 45), rng.uniform(0.08, 0.2), rng.uniform(0.92, 1.0))
    else:
        skin = main
    light = mix(main, WHITE, rng.uniform(0.45, 0.7))
    lum = 0.3 * skin[0] + 0.59 * skin[1] + 0.11 * skin[2]  # the face colour behind the eyes
    colors = {
        "main": main,
        "accent": accent,
        "skin": skin,
        "light": light,
        "limb": darken(main, rng.uniform(0.7, 0.9)),
        "pants": darken(palette_color(rng, rng.choice(["brown", "blue", "grey", "black"])), 0.9),
        "inner": mix(BLUSH, main, 0.25),
        "pupil": hsv(rng.uniform(0, 360), rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.6)),
        "hair": HAIR_COLORS[rng.integers(len(HAIR_COLORS))],
        "glow": max((hsv(h, 0.7, 1.0) for h in (50, 180, 120, 0)),
                    key=lambda g: float(np.linalg.norm(np.subtract(g, skin)))),
        "eye": EYE_DARK if lum > 0.3 else (0.96, 0.94, 0.9),
        # the mouth must stand out from the face
        "mouth": max(MOUTH_COLORS, key=lambda m: float(np.linalg.norm(np.subtract(skin, m)))),
        "outline": OUTLINE_DARK if outline != "shade" else darken(main, 0.45),
    }
    return colors


def sample_character(rng: np.random.Generator, *, require: tuple[str, ...] = (), **pins) -> Character:
    """Draw a random character. ``kind``/``palette``/``style``/``shading`` pin
    attributes; ``allow_palette(kind, palette, style, shading) -> bool``
    filters combinations (the dataset uses it to keep the held-out ones out of
    training); ``require`` lists features the character must have (see
    :meth:`Character.has`)."""
    for _ in range(100):
        ch = _sample_character(rng, require=require, **pins)
        if all(ch.has(r) for r in require):
            return ch
    raise ValueError(f"could not draw a character with {require} for {pins}")


def _sample_character(
    rng: np.random.Generator,
    *,
    kind: str | None = None,
    palette: str | None = None,
    style: str | None = None,
    shading: str | None = None,
    allow_palette=None,
    require: tuple[str, ...] = (),
) -> Character:
    kinds = [kind] if kind else [k for k, v in KINDS.items() if _kind_can(v, require)]
    for _ in range(100):
        kname = kinds[rng.integers(len(kinds))]
        spec = KINDS[kname]
        pal = palette or spec.palettes[rng.integers(len(spec.palettes))]
        sty = style or STYLES[rng.integers(len(STYLES))]
        sha = shading or SHADINGS[rng.integers(len(SHADINGS))]
        if allow_palette is None or allow_palette(kname, pal, sty, sha):
            break
    else:
        raise ValueError(f"no allowed attribute combination for kind={kind!r}, palette={palette!r}")
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    outline = pick(OUTLINES) if sty == "smooth" else pick(("dark", "shade"))
    ears = pick(spec.ears)
    arms = pick(spec.arms)
    if "ears" in require and ears == "none":
        ears = pick([e for e in spec.ears if e != "none"])
    if "arms" in require and arms == "none":
        arms = pick([a for a in spec.arms if a != "none"])
    extras = tuple(e for e in spec.extras if rng.random() < 0.5) + spec.always
    ch = Character(
        kind=kname,
        noun=pick(spec.nouns),
        archetype=spec.archetype,
        style=sty,
        shading=sha,
        outline=outline,
        palette=pal,
        facing=int(pick((-1, 1))),
        height=float(rng.uniform(0.45, 0.65) * (1.12 if sty == "pixel" else 1.0)),
        x=float(rng.uniform(0.44, 0.56)),
        y=float(rng.uniform(0.84, 0.92)),
        head=pick(spec.heads),
        body=pick(spec.bodies),
        ears=ears,
        hat=pick(spec.hats),
        tail=pick(spec.tails),
        eyes=pick(spec.eyes),
        arms=arms,
        extras=tuple(dict.fromkeys(extras)),
        colors=character_colors(rng, spec, pal, outline),
        geometry=sample_geometry(rng, spec, pixel=sty == "pixel"),
    )
    return ch


def _kind_can(spec: Kind, require) -> bool:
    ok = {
        "ears": any(e != "none" for e in spec.ears),
        "arms": any(a != "none" for a in spec.arms),
        "legs": spec.archetype == "biped",
        "upright": spec.archetype == "biped",
    }
    return all(ok.get(r, True) for r in require)


#: Ranges of the shape proportions (character units or ratios); kinds override some.
GEOMETRY_RANGES: dict[str, tuple[float, float]] = {
    "head_h": (0.42, 0.55),  # bipeds: head / body / leg heights before normalising to 1
    "body_h": (0.24, 0.34),
    "leg_h": (0.13, 0.24),
    "head_ratio": (0.95, 1.3),  # head width / head height
    "body_ratio": (0.55, 0.85),  # body width / head width (blobs: body width / height)
    "eye_size": (0.09, 0.13),  # eye radius / head height
    "eye_sep": (0.2, 0.3),  # half the eye distance / head width
    "eye_dy": (-0.04, 0.06),  # eye height above the head centre / head height
    "mouth_w": (0.1, 0.16),  # mouth half width / head width
    "mouth_gap": (0.14, 0.2),  # mouth below the eyes / head height
    "face_shift": (0.04, 0.1),  # face offset toward the facing side / head width
    "ear_size": (0.8, 1.2),
    "ear_tilt": (0.1, 0.35),
    "tail_len": (0.22, 0.35),
    "hat_h": (0.55, 0.85),
    "hat_tilt": (-0.25, 0.25),
    "blob_c": (0.3, 0.45),  # slimes: height of the ellipse centre (flatter bottom when high)
    "blob_neck": (0.36, 0.46),  # blobs: height of the face pivot
    "blob_face": (0.7, 0.8),  # blobs: face width / body width
}


PIXEL_FACE_SCALE = 1.3  # pixel-art faces are chunkier so eyes and mouths stay visible at low resolution


def sample_geometry(rng: np.random.Generator, spec: Kind, pixel: bool = False) -> dict[str, float]:
    ranges = {**GEOMETRY_RANGES, **dict((k, (lo, hi)) for k, lo, hi in spec.ranges)}
    r = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in ranges.items()}
    g: dict[str, float] = {}
    if spec.archetype == "biped":
        total = r["head_h"] + r["body_h"] + r["leg_h"] - 0.08
        head_h, body_h, leg_h = r["head_h"] / total, r["body_h"] / total, r["leg_h"] / total
        g.update(head_h=head_h, body_h=body_h, leg_h=leg_h)
        g["head_w"] = head_h * r["head_ratio"]
        g["body_w"] = g["head_w"] * r["body_ratio"]
        g["leg_r"] = float(rng.uniform(0.045, 0.065))
        g["hip_x"] = g["body_w"] * float(rng.uniform(0.18, 0.28))
        g["arm_len"] = float(rng.uniform(0.17, 0.26))
        g["arm_r"] = float(rng.uniform(0.035, 0.05))
        g["neck_y"] = leg_h - 0.03 + body_h
        g["head_cy"] = g["neck_y"] - 0.05 + head_h / 2
    else:
        g["body_w"] = r["body_ratio"]
        g["body_c"] = r["blob_c"]
        g["neck_y"] = r["blob_neck"]
        g["head_w"] = g["body_w"] * r["blob_face"]
        g["head_h"] = 0.7
        g["head_cy"] = g["neck_y"] + float(rng.uniform(0.0, 0.06))
        g["arm_len"] = float(rng.uniform(0.2, 0.26))
        g["arm_r"] = float(rng.uniform(0.07, 0.09))
    g["eye_sep"] = g["head_w"] * r["eye_sep"]
    g["eye_r"] = g["head_h"] * r["eye_size"]
    g["eye_dy"] = g["head_h"] * r["eye_dy"]
    g["mouth_w"] = g["head_w"] * r["mouth_w"]
    g["mouth_dy"] = g["eye_dy"] - g["head_h"] * r["mouth_gap"]
    for k in ("face_shift", "ear_size", "ear_tilt", "tail_len", "hat_h", "hat_tilt"):
        g[k] = r[k]
    if pixel:  # chunkier faces and limbs survive the low resolution
        g["eye_r"] *= PIXEL_FACE_SCALE
        g["mouth_w"] *= PIXEL_FACE_SCALE
        g["arm_r"] *= PIXEL_FACE_SCALE
        if "leg_r" in g:
            g["leg_r"] *= 1.15
    return g
