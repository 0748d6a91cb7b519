"""Test setup: import the repository root as a package, the way ComfyUI does.

ComfyUI loads a custom node folder with ``spec_from_file_location`` under a
name derived from its path, so the pack must work as a package whose modules
use relative imports. The tests load it the same way under the fixed name
``charmotion`` and import everything through that name
(``charmotion.dit_core...``, ``charmotion.nodes...``), so each module exists
exactly once in ``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "charmotion"


def _load_pack():
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


_load_pack()


@pytest.fixture
def pack():
    return sys.modules[PACK_NAME]
