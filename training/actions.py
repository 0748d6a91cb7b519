"""Character actions as data: names and pose curves (how people ask for them: ``phrases``).

Every action in :data:`ACTIONS` is an :class:`Action`: a name, whether it
loops, the features a character needs for it, and a pose function
``pose(phase, amplitude, side=1) -> Pose``:

* ``phase`` (scalar or array) runs over the clip. Loopable actions are
  periodic with period 1 and a clip of T frames samples ``phase = t / T``, so
  frame T would be frame 0 again and the clip repeats seamlessly. One-shot
  actions (walks/runs travel, fall / grow / shrink end in a new state) sample
  ``phase = t / (T - 1)`` so the last frame shows the end state.
* ``amplitude`` in [0, 1] is the motion strength: every magnitude of the
  action is ``lo + (hi - lo) * amplitude`` with ``lo > 0`` (0 barely moves,
  1 is a big motion), so motion size grows monotonically with it.
* ``side`` (+1/-1) picks the arm that waves, the way a character falls over
  and the spin direction. A walk or run keeps the character's facing (it
  is not mirrored: a game flips a sprite itself, and a front-facing
  character has no side to turn to).

Frame 0 of every action is the rest pose (:data:`sprites.REST`): every
curve is zero (or one for scales and eye openness) at phase 0, so the first
frame is exactly the reference image. No action needs an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from .sprites import Pose

TAU = 2.0 * np.pi

# ---------------------------------------------------------------------------
# Curve helpers (vectorised over the phase)


def lerp(lo: float, hi: float, a: float) -> float:
    return lo + (hi - lo) * float(np.clip(a, 0.0, 1.0))


def cycle(p, k: int):
    """Sine of k full cycles over the clip, exactly 0 at p = 0 and p = 1."""
    return np.sin(TAU * ((k * np.asarray(p, dtype=np.float64)) % 1.0))


def dip(p, k: int):
    """k smooth 0 -> 1 -> 0 pulses over the clip (1 - cos) / 2."""
    return 0.5 * (1.0 - np.cos(TAU * ((k * np.asarray(p, dtype=np.float64)) % 1.0)))


def window(p, start: float, end: float):
    """A smooth bump that is 0 outside [start, end] and 1 in the middle."""
    x = np.clip((np.asarray(p, dtype=np.float64) - start) / (end - start), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def ramp(p, start: float, end: float):
    """Smoothstep from 0 (before start) to 1 (after end)."""
    x = np.clip((np.asarray(p, dtype=np.float64) - start) / (end - start), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def hop(p, hops: int, height: float, squash: float):
    """Vertical offset and squash of ``hops`` hops; each starts with a short
    crouch on the ground, flies a parabola and lands with a squash."""
    f = (hops * np.asarray(p, dtype=np.float64)) % 1.0
    s = np.clip((f - 0.2) / 0.6, 0.0, 1.0)
    ty = height * 4.0 * s * (1.0 - s)
    crouch = window(f, 0.0, 0.22) + window(f, 0.8, 1.0)
    stretch = window(f, 0.18, 0.45)
    sy = 1.0 - squash * crouch + 0.6 * squash * stretch
    return ty, sy, 1.0 / np.sqrt(sy)


# ---------------------------------------------------------------------------
# Pose functions: (phase, amplitude, side) -> Pose


def jump(p, a, side=1):
    ty, sy, sx = hop(p, 1, lerp(0.15, 0.55, a), lerp(0.06, 0.18, a))
    arms = lerp(0.5, 2.0, a) * window(p, 0.15, 0.85)
    return Pose(ty=ty, sy=sy, sx=sx, arm_l=arms, arm_r=arms, ear=-0.25 * window(p, 0.2, 0.8), mouth=0.3 * window(p, 0.2, 0.8))


def bounce(p, a, side=1):
    ty, sy, sx = hop(p, 2, lerp(0.1, 0.35, a), lerp(0.08, 0.22, a))
    return Pose(ty=ty, sy=sy, sx=sx, arm_l=0.5 * ty / 0.35, arm_r=0.5 * ty / 0.35)


def locomotion(p, a, side=1, *, direction: int, run: bool):
    p = np.asarray(p, dtype=np.float64)
    steps = 3 if run else 2
    phase = TAU * steps * p
    distance = lerp(0.25, 0.34, a) if run else lerp(0.05, 0.17, a)
    stride = lerp(0.5, 0.85, a) if run else lerp(0.25, 0.55, a)
    bob = (lerp(0.03, 0.07, a) if run else lerp(0.01, 0.03, a)) * np.abs(np.sin(phase))
    lean = -direction * (lerp(0.08, 0.2, a) if run else lerp(0.0, 0.06, a)) * ramp(p, 0.0, 0.15)
    swing = (1.3 if run else 0.8) * stride * np.sin(phase)
    return Pose(travel=direction * distance * p, ty=bob, rot=lean, leg_phase=phase, stride=stride,
                arm_l=np.maximum(swing, 0.0), arm_r=np.maximum(-swing, 0.0), sy=1.0 - 0.5 * bob)


def shake_head(p, a, side=1):
    dx = lerp(0.03, 0.11, a) * cycle(p, 3)
    return Pose(head_dx=dx, head_tilt=-2.0 * dx)


def nod(p, a, side=1):
    return Pose(head_dy=-lerp(0.05, 0.13, a) * dip(p, 2))


def wave(p, a, side=1):
    raised = ramp(p, 0.0, 0.2) * (1.0 - ramp(p, 0.8, 1.0))
    arm = raised * (lerp(1.4, 1.8, a) + lerp(0.15, 0.7, a) * cycle(p, 3))
    return Pose(arm_l=arm, arm_r=0.0) if side < 0 else Pose(arm_l=0.0, arm_r=arm)


def spin(p, a, side=1):
    p = np.asarray(p, dtype=np.float64) % 1.0
    turn = side * (TAU * p - np.sin(TAU * p))  # one full turn, slow in and out
    lift = lerp(0.02, 0.2, a) * np.sin(np.pi * p) ** 2
    arms = lerp(0.3, 1.4, a) * np.sin(np.pi * p) ** 2
    return Pose(turn=turn, ty=lift, arm_l=arms, arm_r=arms)


def squash_stretch(p, a, side=1):
    sy = 1.0 + lerp(0.08, 0.3, a) * cycle(p, 2)
    return Pose(sy=sy, sx=sy ** -0.7)


def wiggle_ears(p, a, side=1):
    return Pose(ear=lerp(0.2, 0.65, a) * cycle(p, 3))


def talk(p, a, side=1):
    return Pose(mouth=lerp(0.25, 1.0, a) * dip(p, 4))


def blink(p, a, side=1):
    # Two blinks; a stronger blink closes the eyes further and for longer.
    w = lerp(0.08, 0.15, a)
    closed = window(p, 0.3 - w, 0.3 + w) + window(p, 0.72 - w, 0.72 + w)
    return Pose(eyes=1.0 - lerp(0.5, 1.0, a) * closed)


def idle(p, a, side=1):
    breath = lerp(0.01, 0.03, a) * cycle(p, 1)
    return Pose(sy=1.0 + breath, head_dy=-0.5 * lerp(0.01, 0.03, a) * dip(p, 1))


FALL_PIVOT = 0.2  # the character tips over its foot edge, this far from its centre


def fall(p, a, side=1):
    p = np.asarray(p, dtype=np.float64)
    drop = np.clip(p / 0.65, 0.0, 1.0) ** 2  # accelerating tip-over
    settle = lerp(0.03, 0.15, a) * window(p, 0.65, 0.85)  # rebound on impact
    theta = -side * lerp(1.35, 1.6, a) * (drop - settle)
    cx = side * FALL_PIVOT  # rotate about (cx, 0): translate by c - R c
    tx = cx - cx * np.cos(theta)
    ty = -cx * np.sin(theta)
    flail = lerp(0.3, 1.6, a) * window(p, 0.1, 0.7)
    return Pose(rot=theta, tx=tx, ty=ty, arm_l=flail, arm_r=flail, eyes=1.0 - 0.85 * ramp(p, 0.65, 0.85),
                mouth=0.5 * window(p, 0.1, 0.7))


def grow(p, a, side=1):
    s = 1.0 + lerp(0.12, 0.6, a) * ramp(p, 0.0, 1.0)
    return Pose(sx=s, sy=s)


def shrink(p, a, side=1):
    s = 1.0 - lerp(0.1, 0.5, a) * ramp(p, 0.0, 1.0)
    return Pose(sx=s, sy=s)


# ---------------------------------------------------------------------------
# The action table


@dataclass(frozen=True)
class Action:
    name: str
    loopable: bool
    pose_fn: Callable
    requires: tuple[str, ...] = ()  # character features (see characters.Character.has)

    def pose(self, phase, amplitude: float, side: int = 1) -> Pose:
        phase = np.asarray(phase, dtype=np.float64)
        if self.loopable:
            phase = phase % 1.0
        return self.pose_fn(phase, amplitude, side=side)

    def phases(self, num_frames: int) -> np.ndarray:
        """Phase of each frame of a clip: t / T when looping, t / (T - 1) otherwise."""
        t = np.arange(num_frames, dtype=np.float64)
        return t / num_frames if self.loopable else t / max(num_frames - 1, 1)

    def clip_pose(self, num_frames: int, amplitude: float, side: int = 1) -> Pose:
        return self.pose(self.phases(num_frames), amplitude, side=side)


def _walk(direction: int, run: bool):
    return partial(locomotion, direction=direction, run=run)


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("jump", True, jump),
    Action("bounce", True, bounce),
    Action("walk_left", False, _walk(-1, False)),
    Action("walk_right", False, _walk(1, False)),
    Action("run_left", False, _walk(-1, True)),
    Action("run_right", False, _walk(1, True)),
    Action("shake_head", True, shake_head),
    Action("nod", True, nod),
    Action("wave", True, wave, ("arms",)),
    Action("spin", True, spin),
    Action("squash_stretch", True, squash_stretch),
    Action("wiggle_ears", True, wiggle_ears, ("ears",)),
    Action("talk", True, talk),
    Action("blink", True, blink),
    Action("idle", True, idle),
    Action("fall", False, fall, ("upright",)),
    Action("grow", False, grow),
    Action("shrink", False, shrink),
)}

ACTION_NAMES: tuple[str, ...] = tuple(ACTIONS)


def get_action(name: str) -> Action:
    try:
        return ACTIONS[name]
    except KeyError:
        raise ValueError(f"unknown action {name!r}; choose one of: {', '.join(ACTION_NAMES)}") from None
