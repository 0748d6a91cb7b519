"""Motion-strength and loop-control nodes: small bundles of settings, each its own block in the graph."""

from __future__ import annotations

from ..dit_core import checks
from ..dit_core.prompts import AESTHETIC_RANGE, CAMERA_MOTIONS, MOTION_RANGE
from .handles import LOOP_TYPE, MOTION_TYPE, LoopControl, MotionControl

CATEGORY = "CharMotion/controls"


class CharMotionMotionControl:
    """Motion strength, aesthetic score and camera motion: the phrases Open-Sora appends to the prompt."""

    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (MOTION_TYPE,)
    RETURN_NAMES = ("motion",)
    DESCRIPTION = (
        "Adds ' aesthetic score: 6.5.', ' motion score: 5.0.' and ' camera motion: pan left.' to the prompt, as "
        "Open-Sora 1.2 was trained. Connect to CharMotion Text Encode. Open-Sora takes motion 0-100 (5 is a "
        "good start); the built-in model 0-10."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "use_motion": ("BOOLEAN", {"default": True, "tooltip": "Add the motion score phrase."}),
                "motion_strength": ("FLOAT", {"default": 5.0, "min": MOTION_RANGE[0], "max": MOTION_RANGE[1],
                                              "step": 0.5, "tooltip": "How much the character moves."}),
                "use_aesthetic": ("BOOLEAN", {"default": True, "tooltip": "Add the aesthetic score phrase."}),
                "aesthetic": ("FLOAT", {"default": 6.5, "min": AESTHETIC_RANGE[0], "max": AESTHETIC_RANGE[1],
                                        "step": 0.1, "tooltip": "Open-Sora's aesthetic score (6.5 is its default)."}),
                "camera_motion": (list(CAMERA_MOTIONS), {"default": "none",
                                                         "tooltip": "none leaves the phrase out; static keeps the camera still."}),
            }
        }

    def make(self, use_motion, motion_strength, use_aesthetic, aesthetic, camera_motion):
        return (MotionControl(
            motion=checks.number("motion_strength", motion_strength, *MOTION_RANGE) if use_motion else None,
            aesthetic=checks.number("aesthetic", aesthetic, *AESTHETIC_RANGE) if use_aesthetic else None,
            camera=None if camera_motion == "none" else str(camera_motion),
        ),)


class CharMotionLoopControl:
    """Number of loops (chained clips), condition frames between them, and the seamless-loop option."""

    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (LOOP_TYPE,)
    RETURN_NAMES = ("loop",)
    DESCRIPTION = (
        "loops > 1 extends the clip: each later loop continues from the end of the previous one (Open-Sora's loop "
        "mode). seamless makes the last frame flow back into the first so the clip repeats without a jump "
        "(a CharMotion feature, not Open-Sora's)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "loops": ("INT", {"default": 1, "min": 1, "max": 20, "tooltip": "Clips chained one after another."}),
                "condition_frames": ("INT", {"default": 0, "min": 0, "max": 200, "tooltip":
                                     "Latent frames each loop takes from the previous one (Open-Sora: multiples of "
                                     "5 = 17 video frames). 0 = the model's default for the clip length."}),
                "seamless": ("BOOLEAN", {"default": False, "tooltip": "End the clip where it starts (looping sprite)."}),
                "condition_edit": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                                   "0 keeps the carried-over frames exactly; higher values let the model change them."}),
            }
        }

    def make(self, loops, condition_frames, seamless, condition_edit):
        return (LoopControl(loops=int(loops), condition_frames=int(condition_frames) or None, seamless=bool(seamless),
                            condition_edit=checks.number("condition_edit", condition_edit, 0, 1)),)
