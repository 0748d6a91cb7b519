"""Test setup: import the repository root as a package, the way ComfyUI does.

ComfyUI loads a custom node folder with ``spec_from_file_location`` under a
name derived from its path, so the pack must work as a package whose modules
use relative imports. The tests load it the same way under the fixed name
``charmotion`` and import everything through that name
(``charmotion.dit_core...``, ``charmotion.nodes...``), so each module exists
exactly once in ``sys.modules``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "charmotion"
sys.path.insert(0, str(ROOT))  # the lab's entry point holds the one loader
from training.__main__ import load_pack  # noqa: E402

load_pack(PACK_NAME)


@pytest.fixture
def pack():
    return sys.modules[PACK_NAME]
