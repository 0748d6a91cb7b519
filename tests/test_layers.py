"""The runtime stands apart from the lab: loading the nodes and the command line imports no training module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("pack", {init!r}, submodule_search_locations=[{root!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["pack"] = pack
spec.loader.exec_module(pack)
for name in ("cli", "pipeline", "builtin.model", "builtin.sprite", "export"):
    importlib.import_module("pack.dit_core." + name)
print(len(pack.NODE_CLASS_MAPPINGS))
print(",".join(sorted(m for m in sys.modules if m.startswith("pack.training"))))
"""


def test_nodes_and_cli_import_no_training_module():
    code = PROBE.format(init=str(ROOT / "__init__.py"), root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, training = done.stdout.splitlines()
    assert int(count) >= 10 and training == ""
