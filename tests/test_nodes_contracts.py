"""Node contracts: what ComfyUI reads from each class, and the host boundary."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from charmotion.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from comfy_executor import WIDGET_TYPES, input_kind, options, widget_list, node_info
from node_fixtures import builtin_weights, env, one_thread  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
CORE_TYPES = {"IMAGE", "MASK", "LATENT", "CONDITIONING", "CLIP", "VIDEO"}
PACK_TYPES = {"CHARMOTION_MODEL", "CHARMOTION_VAE", "CHARMOTION_REFS", "CHARMOTION_MOTION", "CHARMOTION_LOOP",
              "CHARMOTION_CLIP_INFO"}
HIDDEN = {"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "DYNPROMPT"}
EXPECTED = {
    "CharMotionModelLoader", "CharMotionVAELoader", "CharMotionTextEncode", "CharMotionMotionControl",
    "CharMotionLoopControl", "CharMotionSampleSprite", "CharMotionReferenceEncode", "CharMotionSampler",
    "CharMotionVAEDecode", "CharMotionDecodeVideo", "CharMotionPaletteLock", "CharMotionExport",
}
NODES = sorted(NODE_CLASS_MAPPINGS.items())


def test_registry_lists_every_stage(pack):
    assert set(NODE_CLASS_MAPPINGS) == EXPECTED
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == EXPECTED
    assert pack.NODE_CLASS_MAPPINGS is NODE_CLASS_MAPPINGS  # the pack root exposes the registry


@pytest.mark.parametrize("name,cls", NODES, ids=[n for n, _ in NODES])
def test_node_contract(name, cls, env):
    assert name.startswith("CharMotion")
    assert cls.CATEGORY.startswith("CharMotion/")
    assert isinstance(cls.RETURN_TYPES, tuple)
    assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    for t in cls.RETURN_TYPES:
        assert t in CORE_TYPES | PACK_TYPES | {"FLOAT", "INT", "STRING"}, t
    fn = getattr(cls, cls.FUNCTION)
    assert callable(fn) and not inspect.iscoroutinefunction(fn)  # classic sync node
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    declared = {}
    for section, entries in spec.items():
        for input_name, input_spec in entries.items():
            declared[input_name] = section
            if section == "hidden":
                assert input_spec in HIDDEN
                continue
            kind = input_kind(input_spec)
            assert kind in WIDGET_TYPES or kind in CORE_TYPES | PACK_TYPES, (input_name, kind)
            opts = options(input_spec)
            if kind == "COMBO":
                values = input_spec[0]
                if "default" in opts:
                    assert opts["default"] in values
            if kind in ("INT", "FLOAT"):
                assert opts["min"] <= opts["default"] <= opts["max"], input_name
    # the function takes exactly the declared inputs; optional and hidden ones have defaults
    params = inspect.signature(fn).parameters
    names = [p for p in params if p != "self"]
    assert set(names) == set(declared), (set(names) ^ set(declared))
    for input_name, section in declared.items():
        if section != "required":  # ComfyUI does not pass unconnected optional inputs
            assert params[input_name].default is not inspect.Parameter.empty, f"{name}.{input_name} needs a default"
    info = node_info(name, cls)
    assert info["output_node"] == (name == "CharMotionExport")


def test_seed_widget_is_like_core():
    seed = NODE_CLASS_MAPPINGS["CharMotionSampler"].INPUT_TYPES()["required"]["seed"]
    assert seed[0] == "INT"
    assert seed[1]["min"] == 0 and seed[1]["max"] == 0xFFFFFFFFFFFFFFFF
    assert seed[1]["control_after_generate"] is True
    widgets = [w[0] for w in widget_list(node_info("CharMotionSampler", NODE_CLASS_MAPPINGS["CharMotionSampler"]))]
    assert widgets == ["seed", "control_after_generate", "steps", "cfg", "frames", "width", "height", "fps", "denoise"]


def test_export_formats_and_hidden_inputs():
    spec = NODE_CLASS_MAPPINGS["CharMotionExport"].INPUT_TYPES()
    assert spec["required"]["format"][0] == ["mp4", "webm", "gif", "webp", "apng", "png_sequence", "sprite_sheet"]
    assert spec["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def test_builtin_is_always_a_choice_and_files_are_listed(env):
    (env["models"] / "diffusion_models" / "OpenSora-STDiT-v3").mkdir()
    (env["models"] / "diffusion_models" / "OpenSora-STDiT-v3" / "model.safetensors").write_bytes(b"")
    (env["models"] / "diffusion_models" / "notes.txt").write_text("not a model")
    (env["models"] / "vae" / "OpenSora-VAE-v1.2.safetensors").write_bytes(b"")
    models = NODE_CLASS_MAPPINGS["CharMotionModelLoader"].INPUT_TYPES()["required"]["model_name"][0]
    vaes = NODE_CLASS_MAPPINGS["CharMotionVAELoader"].INPUT_TYPES()["required"]["vae_name"][0]
    assert models == ["CharMotion built-in", "OpenSora-STDiT-v3/model.safetensors"]
    assert vaes == ["CharMotion built-in warp decoder", "OpenSora-VAE-v1.2.safetensors"]
    samples = NODE_CLASS_MAPPINGS["CharMotionSampleSprite"].INPUT_TYPES()["required"]["sample"][0]
    assert samples == ["knight.png"]


IMPORT = re.compile(r"^\s*(?:from|import)\s+(comfy|comfy_api|comfy_extras|folder_paths|server|node_helpers|nodes|execution)\b",
                    re.MULTILINE)


def test_only_host_module_imports_comfyui():
    offenders = []
    for path in sorted((ROOT / "nodes").glob("*.py")) + sorted((ROOT / "dit_core").rglob("*.py")):
        if path.name == "host.py" and path.parent.name == "nodes":
            continue
        if IMPORT.search(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    host_text = (ROOT / "nodes" / "host.py").read_text()
    assert IMPORT.search(host_text)  # the adapter is where the host is used
    for path in sorted((ROOT / "dit_core").rglob("*.py")):
        assert "from ..nodes" not in path.read_text() and "from ...nodes" not in path.read_text(), path
