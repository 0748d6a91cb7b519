"""``python -m training <command> ...``: the lab's commands, run from the repository root.

The repository root is the pack (ComfyUI loads it as one package), so the lab
runs inside it as ``charmotion.training`` and imports ``charmotion.dit_core``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

COMMANDS = {
    "train": ("train", "train the built-in model"),
    "benchmark": ("benchmark", "score a model on held-out characters and phrasings"),
    "preview": ("preview", "contact sheet and GIF of the training data"),
    "gallery": ("gallery", "the README's gallery: the sample sprites animated by a model"),
    "validate-tracker": ("validate", "accept and false-accept rates of the action tracker on drawn clips"),
}


def load_pack(name: str = "charmotion"):
    """The repository root as the package ``name`` (as ComfyUI loads it)."""
    if name in sys.modules:
        return sys.modules[name]
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:10s} {help_}" for name, (_, help_) in COMMANDS.items())
        print(f"usage: python -m training <command> [options]\n\ncommands:\n{lines}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    load_pack()
    module = importlib.import_module(f"charmotion.training.{COMMANDS[argv[0]][0]}")
    from charmotion.dit_core.errors import CharMotionError

    try:
        return int(module.main(argv[1:]) or 0)
    except (CharMotionError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)  # a wrong file or setting: one line, no traceback
        return 2
    except KeyboardInterrupt:  # Ctrl-C where a command keeps nothing to go on from (a run saves its own state)
        print("stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
