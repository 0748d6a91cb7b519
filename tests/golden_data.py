"""Access to the Open-Sora 1.2 golden cases (upstream outputs on small random weights).

The folder comes from ``CHARMOTION_GOLDEN_DIR`` and defaults to the copy in
``tests/golden/opensora12``. Tests iterate over the manifest (``cases.json``)
and never name a case, so new case folders of the same format run unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def golden_dir() -> Path:
    """Folder of Open-Sora 1.2 golden cases (``CHARMOTION_GOLDEN_DIR`` overrides)."""
    return Path(os.environ.get("CHARMOTION_GOLDEN_DIR", ROOT / "tests" / "golden" / "opensora12"))


def golden_cases(kind: str) -> list:
    """The manifest's cases of one kind, as pytest params named after each case."""
    manifest = json.loads((golden_dir() / "cases.json").read_text())
    if manifest.get("format") != 1:
        raise RuntimeError(f"unsupported golden manifest format {manifest.get('format')!r}")
    return [pytest.param(case, id=case["name"]) for case in manifest["cases"] if case["kind"] == kind]


def load_case_tensors(case: dict) -> dict:
    return load_file(str(golden_dir() / case["file"]))


def case_weights_path(case: dict) -> Path:
    return golden_dir() / case["weights"]
