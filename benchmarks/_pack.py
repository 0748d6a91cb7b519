"""Import the repository root as the package ``charmotion`` (the way ComfyUI loads the pack), with the lab's loader."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.__main__ import load_pack  # noqa: E402

__all__ = ["ROOT", "load_pack"]
