"""Procedural cartoon / pixel-art game characters that can be drawn in any pose.

A :class:`Character` is plain data (kind, style, palette, proportions, which
ears / hat / tail / eyes it has, where it stands on the canvas). It is built
from a table of character kinds by :func:`.characters.sample_character`.
:func:`render` draws it for a :class:`Pose` whose fields are numbers or
per-frame arrays, so a whole clip is one call:

    rgb, alpha = render(character, pose, size=64)   # [T,H,W,3], [T,H,W]
    frames = composite(rgb, alpha, key_color)       # uint8 [T,H,W,3]

Coordinates: a character is designed in *character units* (ground at y = 0,
top of the head at y ~ 1, y up, x to the right); its bones (body, head,
arms, legs, ears, tail, eyes, mouth) are per-frame affine matrices derived
from the pose, and each shape is a signed-distance primitive on a bone (see
``_raster``). Pixel-art characters are drawn at a low resolution with hard
edges and a one-pixel outline, then enlarged with nearest-neighbour; smooth
ones are anti-aliased at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import _raster as R
from ._raster import Prim
from .characters import BLUSH, Character, PALETTE_GOLD, TONGUE, WHITE, darken, mix


# ---------------------------------------------------------------------------
# Pose


@dataclass(frozen=True)
class Pose:
    """Pose parameters; each field is a number or a per-frame array.

    Units: ``tx``/``ty``/``head_dx``/``head_dy`` in character heights (``ty``
    and ``head_dy`` positive = up); ``travel`` in canvas widths (walks and
    runs, so speeds compare across character sizes); angles in radians.
    ``rot`` turns the whole character counter-clockwise about its feet,
    ``sx``/``sy`` squash and stretch it about its feet; ``arm_*`` is 0 when
    hanging and positive when raised outward; legs swing by
    ``stride * sin(leg_phase)``; ``ear`` tilts the ears outward; ``mouth``
    is 0 (closed) .. 1 (wide open); ``eyes`` is 1 (open) .. 0 (shut);
    ``tail`` raises the tail; ``turn`` is a paper-cut turn about the
    vertical axis (horizontal scale ``cos(turn)``; pi = facing the other way).
    """

    tx: Any = 0.0
    ty: Any = 0.0
    travel: Any = 0.0
    rot: Any = 0.0
    sx: Any = 1.0
    sy: Any = 1.0
    head_dx: Any = 0.0
    head_dy: Any = 0.0
    head_tilt: Any = 0.0
    arm_l: Any = 0.0
    arm_r: Any = 0.0
    leg_phase: Any = 0.0
    stride: Any = 0.0
    ear: Any = 0.0
    mouth: Any = 0.0
    eyes: Any = 1.0
    tail: Any = 0.0
    turn: Any = 0.0

    def arrays(self, n: int | None = None) -> dict[str, np.ndarray]:
        """Every field as a float64 array of length ``n`` (inferred if None)."""
        values = {f.name: np.asarray(getattr(self, f.name), dtype=np.float64) for f in fields(self)}
        if n is None:
            n = max((v.size for v in values.values() if v.ndim), default=1)
        return {k: np.broadcast_to(v, (n,)).copy() if v.ndim == 0 or v.size == 1 else v for k, v in values.items()}

    def frame(self, i: int) -> "Pose":
        return Pose(**{k: v[i] for k, v in self.arrays().items()})


REST = Pose()


# ---------------------------------------------------------------------------
# Shapes of a character (built once per character; poses only move bones)


def build_prims(ch: Character) -> list[Prim]:
    """The character's shapes, back to front, on named bones (cached)."""
    if "prims" not in ch._cache:
        ch._cache["prims"] = _build_prims(ch)
    return ch._cache["prims"]


def _build_prims(ch: Character) -> list[Prim]:
    g, c = ch.geometry, ch.colors
    f = ch.facing
    out: list[Prim] = []
    add = lambda *a, **k: out.append(Prim(*a, **k))  # noqa: E731
    biped = ch.archetype == "biped"
    hw, hh = g["head_w"] / 2, g["head_h"] / 2
    main, skin = c["main"], c["skin"]
    head_color = skin if ch.kind in ("mage", "kid", "goblin") else main
    body_color = main
    limb_color = c["limb"] if not biped or ch.kind in ("knight", "robot") else main
    if ch.kind in ("mage", "kid", "goblin"):
        limb_color = main

    # --- tail (behind everything)
    if ch.tail != "none":
        tl = g["tail_len"]
        if ch.tail == "thin":
            add("tail", "capsule", (tl, 0.03, 0.022), c["limb"])
        elif ch.tail == "fluffy":
            add("tail", "ellipse", (0.09, tl * 0.55), main, at=(0.0, -tl * 0.45))
            add("tail", "ellipse", (0.06, tl * 0.2), WHITE, at=(0.0, -tl * 0.82), outline=False)
        elif ch.tail == "pompom":
            add("tail", "ellipse", (0.08, 0.08), c["light"], at=(0.0, -0.05))

    # --- hats drawn behind the head
    # --- ears (behind the head)
    if ch.ears != "none":
        s = g["ear_size"]
        for side in ("ear_l", "ear_r"):
            if ch.ears == "pointy":
                add(side, "trapezoid", (hw * 0.42 * s, 0.0, hh * 0.42 * s, 0.02), main, at=(0, hh * 0.3 * s))
                add(side, "trapezoid", (hw * 0.22 * s, 0.0, hh * 0.26 * s, 0.01), c["inner"],
                    at=(0, hh * 0.26 * s), outline=False, shade=False)
            elif ch.ears == "long":
                add(side, "capsule", (hh * 0.9 * s, hw * 0.17), main, angle=np.pi)
                add(side, "capsule", (hh * 0.7 * s, hw * 0.08), c["inner"], angle=np.pi, at=(0, hh * 0.12),
                    outline=False, shade=False)
            elif ch.ears in ("round", "big_round"):
                r = hw * (0.3 if ch.ears == "round" else 0.45) * s
                add(side, "ellipse", (r, r), main, at=(0, r * 0.5))
                add(side, "ellipse", (r * 0.55, r * 0.55), c["inner"], at=(0, r * 0.45), outline=False, shade=False)
            elif ch.ears == "side":
                add(side, "trapezoid", (hh * 0.28 * s, 0.0, hw * 0.5 * s, 0.02), skin, at=(0, hw * 0.4 * s))

    # --- legs
    if biped:
        leg_len = g["leg_h"] - g["leg_r"]
        leg_color = c["pants"] if ch.kind in ("kid", "mage") else (c["limb"] if ch.kind != "knight" else main)
        for side in ("leg_l", "leg_r"):
            add(side, "capsule", (leg_len, g["leg_r"]), leg_color)
            add(side, "ellipse", (g["leg_r"] * 1.45, g["leg_r"] * 0.95),
                darken(leg_color, 0.75) if ch.kind in ("knight", "kid", "robot", "mage") else leg_color,
                at=(f * g["leg_r"] * 0.45, -leg_len))

    # --- body
    bw = g["body_w"] / 2
    if biped:
        bh = g["body_h"] / 2
        by = g["leg_h"] - 0.03 + bh
        if ch.body == "box":
            add("body", "box", (bw, bh, min(bw, bh) * 0.45), body_color, at=(0, by))
        elif ch.body == "robe":
            add("body", "trapezoid", (bw * 1.25, bw * 0.7, bh, 0.03), body_color, at=(0, by))
        else:
            add("body", "ellipse", (bw, bh * 1.08), body_color, at=(0, by))
        if "belly" in ch.extras:
            add("body", "ellipse", (bw * 0.6, bh * 0.7), c["light"], at=(f * bw * 0.1, by - bh * 0.1),
                outline=False)
    else:
        if ch.body == "slime":
            cy = g["body_c"]
            add("body", "ellipse", (bw, 1.0 - cy), main, at=(0, cy), clip=("box", (5.0, 5.0), (0.0, 5.0 - cy)))
        elif ch.body == "ghost":
            add("body", "ghost", (bw, 1.0 - bw, 2.5), main, at=(0, 0.06))
        elif ch.body == "stem":
            add("body", "box", (bw * 0.62, 0.3, 0.12), skin, at=(0, 0.3))

    # --- head
    hy = g["head_cy"] - g["neck_y"]  # head centre in the head bone frame
    if biped:
        if ch.head == "box":
            add("head", "box", (hw, hh, min(hw, hh) * 0.35), head_color, at=(0, hy))
        else:
            add("head", "ellipse", (hw, hh), head_color, at=(0, hy))
    if ch.hat == "hair":
        add("head", "ellipse", (hw * 1.04, hh * 0.45), c["hair"], at=(0, hy + hh * 0.78))
    if "window" in ch.extras:
        add("head", "box", (hw * 0.72, hh * 0.62, hh * 0.3), skin, at=(f * hw * g["face_shift"], hy - hh * 0.03),
            shade=False)
    if "muzzle" in ch.extras:
        add("head", "ellipse", (hw * 0.36, hh * 0.26), c["light"],
            at=(f * hw * g["face_shift"] * 2, hy + g["mouth_dy"] + hh * 0.08), outline=False)

    # --- hats in front of the head
    top = hy + hh
    if ch.hat == "wizard":
        add("head", "trapezoid", (hw * 0.55, 0.0, hh * g["hat_h"], 0.02), c["main"],
            at=(0, top + hh * (g["hat_h"] - 0.3)), angle=g["hat_tilt"] * 0.6)
        add("head", "ellipse", (hw * 1.2, hh * 0.16), darken(c["main"], 0.8), at=(0, top - hh * 0.18))
    elif ch.hat == "cap":
        add("head", "dome", (hw * 0.98, hh * 0.72), c["accent"], at=(0, top - hh * 0.62))
        add("head", "ellipse", (hw * 0.62, hh * 0.12), darken(c["accent"], 0.8),
            at=(f * hw * 0.6, top - hh * 0.6))
    elif ch.hat == "plume":
        add("head", "ellipse", (hw * 0.16, hh * 0.42), c["accent"], at=(0, top + hh * 0.22), angle=-f * 0.3)
    elif ch.hat == "horns":
        for s in (-1, 1):
            add("head", "trapezoid", (hw * 0.18, 0.0, hh * 0.28, 0.02), (0.95, 0.92, 0.82),
                at=(s * hw * 0.7, top - hh * 0.05), angle=-s * 0.5)
    elif ch.hat == "antenna":
        add("head", "capsule", (hh * 0.45, 0.018), darken(c["main"], 0.6), angle=np.pi, at=(0, top - 0.02))
        add("head", "ellipse", (0.045, 0.045), c["glow"], at=(0, top + hh * 0.45))
    elif ch.hat == "crown":
        add("head", "trapezoid", (hw * 0.4, hw * 0.5, hh * 0.26, 0.01), PALETTE_GOLD, at=(0, top + hh * 0.12))
        add("head", "ellipse", (hw * 0.09, hw * 0.09), (0.9, 0.2, 0.3), at=(0, top + hh * 0.12), outline=False,
            shade=False)
    elif ch.hat == "mushroom":
        cap_w = bw * 1.4
        add("head", "dome", (cap_w, 0.42), main, at=(0, 0.5 - g["neck_y"]),
            clip=("box", (5.0, 5.0), (0.0, 5.0 - 0.0)))
        for sx_, sy_, sr in ((-0.5, 0.25, 0.11), (0.35, 0.18, 0.09), (0.0, 0.33, 0.07), (0.75, 0.08, 0.06)):
            add("head", "ellipse", (sr, sr * 0.8), WHITE, at=(sx_ * cap_w, 0.5 - g["neck_y"] + sy_),
                outline=False, shade=False)

    # --- face
    eye_y = hy + g["eye_dy"]
    shift = f * hw * g["face_shift"] * 2
    if "blush" in ch.extras:
        for s in (-1, 1):
            add("head", "ellipse", (g["eye_r"] * 1.1, g["eye_r"] * 0.6), mix(BLUSH, skin, 0.3),
                at=(shift + s * g["eye_sep"] * 1.25, eye_y - g["eye_r"] * 1.6), outline=False, shade=False)
    if "shine" in ch.extras:
        add("body", "ellipse", (bw * 0.2, 0.09), mix(main, WHITE, 0.75), at=(-bw * 0.5, 0.72),
            angle=0.6, outline=False, shade=False)
    eye_outline = ch.style != "pixel"  # a one-pixel outline would swallow a pixel-art eye
    for side in ("eye_l", "eye_r"):
        r = g["eye_r"]
        if ch.eyes == "dot":
            add(side, "ellipse", (r * 0.75, r), c["eye"], shade=False, outline=False)
            add(side, "ellipse", (r * 0.3, r * 0.3), WHITE, at=(-r * 0.25, r * 0.35), shade=False, outline=False)
        elif ch.eyes == "anime":
            add(side, "ellipse", (r * 0.95, r * 1.15), WHITE, shade=False, outline=eye_outline)
            add(side, "ellipse", (r * 0.62, r * 0.85), c["pupil"], at=(f * r * 0.25, -r * 0.15), shade=False,
                outline=False)
            add(side, "ellipse", (r * 0.22, r * 0.22), WHITE, at=(f * r * 0.1, r * 0.25), shade=False,
                outline=False)
        else:  # glow
            add(side, "box", (r * 0.9, r * 0.75, r * 0.3), c["glow"], shade=False, outline=eye_outline)
    mw = g["mouth_w"]
    mh = mouth_height(ch)
    tongue = ("half_ellipse", (mw, mh), (0.0, 0.0))
    add("mouth", "half_ellipse", (mw, mh), c["mouth"], shade=False, outline=False)
    if ch.style != "pixel":  # too small to read in pixel art (and it would flicker)
        add("mouth", "ellipse", (mw * 0.55, mh * 0.27), TONGUE, at=(0.0, -mh * 0.93), shade=False, outline=False,
            clip=tongue)
    # --- arms (in front of everything, so a raised arm passes in front of the head)
    if ch.arms == "arms":
        for side in ("arm_l", "arm_r"):
            add(side, "capsule", (g["arm_len"], g["arm_r"]), limb_color)
            add(side, "ellipse", (g["arm_r"] * 1.35, g["arm_r"] * 1.35),
                skin if ch.kind in ("mage", "kid", "knight", "goblin") else limb_color, at=(0, -g["arm_len"]))
    elif ch.arms == "nubs":
        for side in ("arm_l", "arm_r"):
            add(side, "ellipse", (g["arm_r"], g["arm_len"] * 0.6), main, at=(0, -g["arm_len"] * 0.45))
    return out




def mouth_height(ch: Character) -> float:
    """Depth of the fully open mouth: 1.4 mouth half-widths (1.8 in pixel
    art, so it spans whole pixels), but never past the chin (bipeds) or the
    ground (blobs)."""
    g = ch.geometry
    top = g["head_cy"] - g["neck_y"] + g["mouth_dy"]  # mouth top in the head frame
    if ch.archetype == "biped":
        room = top - (g["head_cy"] - g["neck_y"] - g["head_h"] / 2)
    else:
        room = g["neck_y"] + top - 0.08
    pixel = ch.style == "pixel"
    return float(min((1.8 if pixel else 1.4) * g["mouth_w"], (0.9 if pixel else 0.8) * room))


# ---------------------------------------------------------------------------
# Bones from a pose


def _joints(ch: Character) -> dict[str, tuple[float, float]]:
    g, f = ch.geometry, ch.facing
    hw, hh = g["head_w"] / 2, g["head_h"] / 2
    hy = g["head_cy"] - g["neck_y"]
    shift = f * hw * g["face_shift"] * 2
    j = {
        "neck": (0.0, g["neck_y"]),
        "eye_l": (shift - g["eye_sep"], hy + g["eye_dy"]),
        "eye_r": (shift + g["eye_sep"], hy + g["eye_dy"]),
        "mouth": (shift * 1.1, hy + g["mouth_dy"]),
    }
    if ch.archetype == "biped":
        top = g["leg_h"] - 0.03 + g["body_h"]
        j["shoulder"] = (g["body_w"] / 2 - g["arm_r"] * 0.4, top - g["arm_r"] * 1.8)
        j["hip"] = (g["hip_x"], g["leg_h"])
        j["tail"] = (-f * g["body_w"] * 0.35, g["leg_h"] + 0.02)
        ear_x = {"side": hw * 0.95, "long": hw * 0.45}.get(ch.ears, hw * 0.6)
        ear_y = {"side": hy + hh * 0.05}.get(ch.ears, hy + hh * 0.72)
    else:
        bw = g["body_w"] / 2
        j["shoulder"] = (bw * (0.62 if ch.body == "stem" else 0.95), 0.36)
        j["hip"] = (bw * 0.4, 0.0)
        j["tail"] = (-f * bw * 0.8, 0.15)
        ear_x, ear_y = bw * 0.55, 0.92 - g["neck_y"]
    j["ear"] = (ear_x, ear_y)
    return j


ARM_REST = 0.18  # arms hang slightly away from the body
TAIL_REST = 2.3  # tail points up and back (radians from hanging)
MIN_TURN_SCALE = 0.1  # a paper turn never gets thinner than this (keeps matrices invertible)


def bone_matrices(
    ch: Character,
    pose: Pose,
    unit: float,
    origin: tuple[float, float],
    canvas: float,
    *,
    flip: bool = True,
    n: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame matrices [T,3,3] mapping each bone's frame (y up) to pixels.

    ``unit`` is pixels per character unit, ``origin`` the pixel position of
    the feet, ``canvas`` the canvas width in pixels (for ``travel``);
    ``flip=False`` keeps y up (used to measure the character).
    """
    p = pose.arrays(n)
    n = len(p["tx"])
    g = ch.geometry
    j = _joints(ch)
    T, Rot, S, M = R.translate, R.rotate, R.scale, R.chain
    turn = np.cos(p["turn"])
    turn = np.where(np.abs(turn) < MIN_TURN_SCALE, np.where(turn < 0, -MIN_TURN_SCALE, MIN_TURN_SCALE), turn)
    root = M(
        T(origin[0] + p["travel"] * canvas, origin[1], n),
        S(unit, -unit if flip else unit, n),
        T(p["tx"], p["ty"], n),
        Rot(p["rot"], n),
        S(p["sx"] * turn, p["sy"], n),
    )
    if ch.archetype == "blob" and ch.body != "stem":
        # No neck: the head moves by leaning (shear) and squashing the top of
        # the body; the face moves with the body at its height.
        body = M(root, R.shear_x(p["head_dx"], n), S(1.0, 1.0 + p["head_dy"], n))
        k = j["neck"][1]
        head = M(root, T(j["neck"][0] + p["head_dx"] * k, k * (1.0 + p["head_dy"]), n), Rot(p["head_tilt"], n))
    else:
        body = root
        head = M(root, T(j["neck"][0] + p["head_dx"], j["neck"][1] + p["head_dy"], n), Rot(p["head_tilt"], n))
    bones = {"root": root, "body": body, "head": head}
    sx_, sy_ = j["shoulder"]
    bones["arm_l"] = M(body, T(-sx_, sy_, n), Rot(-(ARM_REST + p["arm_l"]), n))
    bones["arm_r"] = M(body, T(sx_, sy_, n), Rot(ARM_REST + p["arm_r"], n))
    swing = p["stride"] * np.sin(p["leg_phase"])
    hx, hy = j["hip"]
    bones["leg_l"] = M(body, T(-hx, hy, n), Rot(swing, n))
    bones["leg_r"] = M(body, T(hx, hy, n), Rot(-swing, n))
    ex, ey = j["ear"]
    base = {"side": 1.35, "long": 0.12}.get(ch.ears, g["ear_tilt"])
    bones["ear_l"] = M(head, T(-ex, ey, n), Rot(base + p["ear"], n))
    bones["ear_r"] = M(head, T(ex, ey, n), Rot(-(base + p["ear"]), n))
    # The tail hangs from the back of the body (away from the facing side) and points up.
    back = -ch.facing
    bones["tail"] = M(body, T(*j["tail"], n), Rot(back * (TAIL_REST + p["tail"]), n))
    # Eyes close from the top down (the lid falls to the bottom of the eye),
    # so even a two-pixel pixel-art eye visibly shuts.
    eyes = np.maximum(p["eyes"], 0.1)
    lid = g["eye_r"]
    for side in ("eye_l", "eye_r"):
        bones[side] = M(head, T(j[side][0], j[side][1] - lid, n), S(1.0, eyes, n), T(0.0, lid, n))
    mouth = MOUTH_CLOSED + (1.0 - MOUTH_CLOSED) * np.clip(p["mouth"], 0.0, 1.0)
    bones["mouth"] = M(head, T(*j["mouth"], n), S(1.0, mouth, n))
    return bones


MOUTH_CLOSED = 0.22  # height of the closed mouth relative to the fully open one


def rest_bounds(ch: Character) -> tuple[float, float, float, float]:
    """Extent (xmin, xmax, ymin, ymax) of the rest pose in character units (cached)."""
    if "bounds" not in ch._cache:
        ch._cache["bounds"] = _rest_bounds(ch)
    return ch._cache["bounds"]


def _rest_bounds(ch: Character) -> tuple[float, float, float, float]:
    bones = bone_matrices(ch, REST, 1.0, (0.0, 0.0), 1.0, flip=False, n=1)
    pts = []
    for prim in build_prims(ch):
        m = (bones[prim.bone] @ prim.matrix())[0]
        x0, x1, y0, y1 = R.local_bounds(prim.shape, prim.params)
        corners = np.array([[x0, y0, 1.0], [x1, y0, 1.0], [x0, y1, 1.0], [x1, y1, 1.0]])
        pts.append(corners @ m.T)
    pts = np.concatenate(pts)
    return float(pts[:, 0].min()), float(pts[:, 0].max()), float(pts[:, 1].min()), float(pts[:, 1].max())


MAX_WIDTH = 0.6  # rest-pose sprites are at most this fraction of the canvas wide


def character_unit(ch: Character) -> float:
    """Canvas fraction per character unit: the rest pose is ``ch.height`` tall
    (or :data:`MAX_WIDTH` wide for very wide characters)."""
    xmin, xmax, ymin, ymax = rest_bounds(ch)
    return min(ch.height / (ymax - min(ymin, 0.0)), MAX_WIDTH / (xmax - xmin))


# ---------------------------------------------------------------------------
# Rendering


def pixel_factor(size: int) -> int:
    """Pixel-art characters are drawn at ``size // factor`` (about 32 px) then enlarged."""
    return max(1, int(round(size / 32)))


def render(ch: Character, pose: Pose = REST, size: int = 64, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``ch`` in ``pose`` (fields may be per-frame arrays) on a square canvas.

    Returns premultiplied colour float32 [T,size,size,3] in [0,1] and alpha
    float32 [T,size,size] (transparent background).
    """
    rgb, alpha, _parts, _bones = render_parts(ch, pose, size, n, parts=False)
    return rgb, alpha


def render_parts(ch: Character, pose: Pose = REST, size: int = 64, n: int | None = None, *, parts: bool = True):
    """:func:`render` plus where each part is: ``(rgb, alpha, parts, bones)``.

    ``parts`` int16 [T,size,size] names the bone (index into ``sorted(bones)``)
    of the top-most shape over each pixel, -1 on the background; ``bones``
    maps bone names to per-frame matrices [T,3,3] from the bone's frame to
    canvas pixels (pixel centres at +0.5). Pixel art is drawn at a lower
    resolution and enlarged: both outputs are given at the full size.
    """
    pixel = ch.style == "pixel"
    k = pixel_factor(size) if pixel else 1
    low = size // k
    unit = character_unit(ch) * low
    bones = bone_matrices(ch, pose, unit, (ch.x * low, ch.y * low), low, n=n)
    prims = build_prims(ch)
    out = R.rasterise(
        prims,
        bones,
        low,
        low,
        shading=ch.shading,
        outline_px=(0.0 if ch.outline == "none" else (1.0 if pixel else max(1.0, size / 64))),
        outline_color=ch.colors["outline"],
        hard=pixel,
        owners=parts,
    )
    rgb, alpha = out[0], out[1]
    owner = None
    if parts:
        names = sorted(bones)
        prim_bone = np.asarray([names.index(p.bone) for p in prims] + [-1], dtype=np.int16)
        owner = prim_bone[out[2]]  # index -1 (no shape) picks the trailing -1
    if k > 1:
        rgb = rgb.repeat(k, axis=1).repeat(k, axis=2)
        alpha = alpha.repeat(k, axis=1).repeat(k, axis=2)
        if owner is not None:
            owner = owner.repeat(k, axis=1).repeat(k, axis=2)
        if low * k != size:  # canvas not a multiple of the factor: pad the edge
            pad = size - low * k
            rgb = np.pad(rgb, ((0, 0), (0, pad), (0, pad), (0, 0)))
            alpha = np.pad(alpha, ((0, 0), (0, pad), (0, pad)))
            if owner is not None:
                owner = np.pad(owner, ((0, 0), (0, pad), (0, pad)), constant_values=-1)
        bones = {name: R.scale(float(k), float(k), len(m)) @ m for name, m in bones.items()}
    return rgb, alpha, owner, bones


def composite(rgb: np.ndarray, alpha: np.ndarray, key_color) -> np.ndarray:
    """Premultiplied colour over a flat key colour (0-255) -> uint8 frames."""
    key = np.asarray(key_color, dtype=np.float32) / 255.0
    out = rgb + (1.0 - alpha[..., None]) * key
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied colour + alpha -> straight uint8 RGBA (for PNG files)."""
    a = alpha[..., None]
    straight = np.where(a > 1e-6, rgb / np.maximum(a, 1e-6), 0.0)
    return np.clip(np.concatenate([straight, a], axis=-1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
