"""The shipped workflows: they load with no missing nodes, convert to API prompts, and the built-in one runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from charmotion.dit_core.export import read_metadata
from charmotion.dit_core.builtin import model as builtin_model
from charmotion.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from charmotion.nodes import reference as reference_nodes
from comfy_executor import PromptError, core_nodes, execute, object_info, ui_to_api, validate_prompt, validate_workflow
from node_fixtures import builtin_weights, env, one_thread  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
SHIPPED = {"builtin_sprite_animation.json", "opensora12_image_to_video.json", "opensora12_loop_extension.json"}
SHIPPED_SAMPLES = ROOT / "assets" / "samples"


def test_the_sample_sprites_are_shipped():
    names = sorted(p.name for p in SHIPPED_SAMPLES.glob("*.png"))
    assert "knight.png" in names
    with Image.open(SHIPPED_SAMPLES / "knight.png") as im:
        assert im.mode == "RGBA" and im.size == (64, 64)


@pytest.fixture
def info(env, monkeypatch):
    """object_info as a fresh ComfyUI with the Open-Sora files in place would report it (the pack's own samples)."""
    monkeypatch.setattr(reference_nodes, "SAMPLES_DIR", SHIPPED_SAMPLES)
    for folder, name in (("diffusion_models", "OpenSora-STDiT-v3/model.safetensors"),
                         ("vae", "OpenSora-VAE-v1.2/model.safetensors")):
        path = env["models"] / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return object_info(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS,
                       core_nodes(images=["example.png"], text_encoders=["t5xxl_fp16.safetensors"]))


def load(name: str) -> dict:
    return json.loads((ROOT / "workflows" / name).read_text())


def test_the_shipped_workflows_are_there():
    assert {p.name for p in WORKFLOWS} == SHIPPED


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_loads_without_missing_nodes(path, info):
    workflow = json.loads(path.read_text())
    assert validate_workflow(workflow, info) == []
    used = {n["type"] for n in workflow["nodes"]}
    assert used - {"Note"} <= set(info)
    prompt = ui_to_api(workflow, info)
    assert validate_prompt(prompt, NODE_CLASS_MAPPINGS, info) == {}
    assert "CharMotionExport" in {n["class_type"] for n in prompt.values()}
    assert all(n["class_type"] != "Note" for n in prompt.values())


TITLE_HEIGHT = 30  # the editor draws a node's title above its pos
GAP = 10  # pixels kept between nodes


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_no_node_covers_another(path):
    """Nodes keep clear of each other (10 pixels apart at least), the sampler with room for the preview it grows
    to while sampling (to 562 pixels high in ComfyUI's editor). The saved sizes are those the editor's Vue
    ("Nodes 2.0") mode draws, which are taller than the classic canvas's smallest sizes."""
    boxes = {}
    for node in json.loads(path.read_text())["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        if node["type"] == "CharMotionSampler":
            assert h >= 560, f"the sampler's preview would cover the node below it (height {h})"
        boxes[f"{node['id']} {node['type']}"] = (x - GAP, y - TITLE_HEIGHT - GAP, x + w, y + h)
    names = sorted(boxes)
    overlaps = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]
                if boxes[a][0] < boxes[b][2] and boxes[b][0] < boxes[a][2]
                and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]]
    assert overlaps == []


def test_opensora_workflows_use_core_t5_as_pixart(info):
    for name in ("opensora12_image_to_video.json", "opensora12_loop_extension.json"):
        prompt = ui_to_api(load(name), info)
        clip = next(n for n in prompt.values() if n["class_type"] == "CLIPLoader")
        assert clip["inputs"]["type"] == "pixart"
        sampler = next(n for n in prompt.values() if n["class_type"] == "CharMotionSampler")
        assert (sampler["inputs"]["steps"], sampler["inputs"]["cfg"], sampler["inputs"]["frames"],
                sampler["inputs"]["fps"]) == (30, 7.0, 51, 24.0)
        assert "control_after_generate" not in sampler["inputs"]  # editor-only widget, not sent
    loop = next(n for n in ui_to_api(load("opensora12_loop_extension.json"), info).values()
                if n["class_type"] == "CharMotionLoopControl")
    assert loop["inputs"]["loops"] == 3


def test_validator_catches_broken_workflows(info):
    workflow = load("builtin_sprite_animation.json")
    sampler = next(n for n in workflow["nodes"] if n["type"] == "CharMotionSampler")
    broken = copy.deepcopy(workflow)
    next(n for n in broken["nodes"] if n["id"] == sampler["id"])["widgets_values"].pop(1)  # control_after_generate
    assert any("widget values" in p for p in validate_workflow(broken, info))
    broken = copy.deepcopy(workflow)
    next(n for n in broken["nodes"] if n["type"] == "CharMotionModelLoader")["type"] = "CharMotionMissing"
    assert any("does not exist" in p for p in validate_workflow(broken, info))
    broken = copy.deepcopy(workflow)
    link = next(lk for lk in broken["links"] if lk[5] == "CHARMOTION_VAE" and lk[3] == sampler["id"])
    link[1], link[5] = next(n["id"] for n in broken["nodes"] if n["type"] == "CharMotionModelLoader"), "CHARMOTION_MODEL"
    assert any("do not match" in p for p in validate_workflow(broken, info))
    prompt = ui_to_api(workflow, info)
    prompt[str(sampler["id"])]["inputs"]["steps"] = 0
    assert validate_prompt(prompt, NODE_CLASS_MAPPINGS, info)


def test_builtin_workflow_runs_end_to_end(env, info):
    """The built-in sprite workflow, converted as the editor does, runs with no model files and writes its clips.

    Sampling steps are cut from 20 to 4 to keep the test fast; everything else runs as shipped.
    """
    workflow = load("builtin_sprite_animation.json")
    prompt = ui_to_api(workflow, info)
    sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "CharMotionSampler")
    assert prompt[sampler_id]["inputs"]["steps"] == 20
    prompt[sampler_id]["inputs"]["steps"] = 4
    encode_id = next(k for k, n in prompt.items() if n["class_type"] == "CharMotionReferenceEncode")
    assert prompt[encode_id]["inputs"]["pixel_art"] is False
    prompt[encode_id]["inputs"]["pixel_art"] = True  # nearest-neighbour moving: every pixel is one of the sprite's
    result = execute(prompt, NODE_CLASS_MAPPINGS, info, extra_pnginfo={"workflow": workflow})
    outputs = result["outputs"]
    assert all(ui.get("text", []) == [] for ui in outputs.values())  # the shipped workflow has nothing to warn of
    sprite_id = next(k for k, n in prompt.items() if n["class_type"] == "CharMotionSampleSprite")
    assert outputs[sprite_id]["images"][0]["type"] == "temp"  # the sample sprite is shown in its node
    exports = {node_id: ui for node_id, ui in outputs.items() if prompt[node_id]["class_type"] == "CharMotionExport"}
    assert len(exports) == 2
    files = {}
    for node_id, ui in exports.items():
        (entry,) = ui["images"]
        files[prompt[node_id]["inputs"]["format"]] = env["output"] / entry["subfolder"] / entry["filename"]
    webp, sheet = files["webp"], files["sprite_sheet"]
    assert webp.name == "knight_jump_00001_.webp" and webp.exists()
    frames, durations = [], []
    with Image.open(webp) as im:
        for frame in ImageSequence.Iterator(im):
            frame.load()
            durations.append(frame.info.get("duration"))
            frames.append(np.asarray(frame.convert("RGBA")))
    assert len(frames) == 16 and frames[0].shape == (64, 64, 4)
    assert sum(durations) == pytest.approx(2000, abs=16)  # 16 frames at 8 fps
    alpha = np.stack(frames)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255  # transparent background, as the sample sprite has
    assert read_metadata(webp)["workflow"]["nodes"][0]["type"] == workflow["nodes"][0]["type"]
    decode_id = next(k for k, n in prompt.items() if n["class_type"] == "CharMotionVAEDecode")
    prepared = result["results"][encode_id][1]  # the sprite over its key colour
    sprite = {tuple(v) for v in (prepared * 255).round().to(torch.uint8).reshape(-1, 3).tolist()}
    decoded = result["results"][decode_id][0]
    colours = {tuple(v) for v in (decoded * 255).round().to(torch.uint8).reshape(-1, 3).tolist()}
    assert colours <= sprite | {(255, 0, 255)} and len(colours) > 2  # the sprite's own pixels (nearest) and the key
    atlas = json.loads(sheet.with_suffix(".json").read_text())
    assert atlas["meta"]["frame_count"] == 16 and atlas["meta"]["fps"] == 8.0
    assert atlas["meta"]["image"] == sheet.name
    latent = result["results"][sampler_id][0]
    grid = builtin_model.DEFAULT_CONFIG["field"]["grid"]
    assert latent["samples"].shape == (1, 3, 16, grid, grid) and latent["charmotion"]["seamless"] is True


def test_unknown_sample_fails_validation(env, info):
    prompt = ui_to_api(load("builtin_sprite_animation.json"), info)
    sprite_id = next(k for k, n in prompt.items() if n["class_type"] == "CharMotionSampleSprite")
    prompt[sprite_id]["inputs"]["sample"] = "dragon.png"
    with pytest.raises(PromptError) as err:
        execute(prompt, NODE_CLASS_MAPPINGS, info)
    assert "dragon.png" in str(err.value.node_errors[sprite_id])
