"""Shared fixtures and stand-ins for the node tests (imported by the tests/test_nodes_*.py files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from charmotion.dit_core.conditioning import OPENSORA_VAE_LAYOUT
from charmotion.dit_core.builtin import model as builtin_model
from charmotion.nodes import NODE_CLASS_MAPPINGS as N
from charmotion.nodes import reference as reference_nodes
from charmotion.nodes.handles import OPENSORA, VAEHandle
from fake_models import PoolCodec
from golden_data import golden_dir

GOLDEN_STDIT3 = "stdit3_weights.safetensors"
OPENSORA_FILE = "OpenSora-STDiT-v3/model.safetensors"


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one thread is faster than two fighting over a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def builtin_weights(tmp_path_factory) -> Path:
    """A randomly initialised built-in model file (the shipped file is trained; these tests need its format)."""
    path = tmp_path_factory.mktemp("builtin") / "charmotion_builtin.safetensors"
    from charmotion.training.phrases import action_words

    config = {"actions": action_words()}
    builtin_model.save_builtin(builtin_model.build_builtin(config, seed=0), path)
    return path


def sprite_rgba(size: int = 32) -> np.ndarray:
    """A small transparent character: a blue body with a skin-coloured head on a transparent canvas."""
    img = np.zeros((size, size, 4), np.uint8)
    s = size // 8
    img[3 * s : 7 * s, 3 * s : 5 * s] = (40, 60, 200, 255)  # body
    img[1 * s : 3 * s, 3 * s : 5 * s] = (240, 200, 160, 255)  # head
    img[7 * s : 8 * s, 3 * s : 4 * s] = (30, 30, 30, 255)  # a foot
    return img


@pytest.fixture
def env(tmp_path, monkeypatch, builtin_weights):
    """Host-free surroundings: built-in weights, models/output folders and sample sprites in tmp."""
    from PIL import Image

    monkeypatch.setattr(builtin_model, "BUILTIN_WEIGHTS", builtin_weights)
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    (models / "vae").mkdir()
    monkeypatch.setenv("CHARMOTION_MODELS_DIR", str(models))
    output = tmp_path / "output"
    monkeypatch.setenv("CHARMOTION_OUTPUT_DIR", str(output))
    monkeypatch.setenv("CHARMOTION_TEMP_DIR", str(tmp_path / "temp"))
    samples = tmp_path / "samples"
    samples.mkdir()
    Image.fromarray(sprite_rgba(64), "RGBA").save(samples / "knight.png")
    monkeypatch.setattr(reference_nodes, "SAMPLES_DIR", samples)
    return {"root": tmp_path, "models": models, "output": output, "samples": samples}


@pytest.fixture
def opensora_file(env) -> str:
    """The golden (tiny, upstream-layout) STDiT3 weights placed as an Open-Sora denoiser file."""
    target = env["models"] / "diffusion_models" / OPENSORA_FILE
    target.parent.mkdir(parents=True)
    shutil.copyfile(golden_dir() / GOLDEN_STDIT3, target)
    return OPENSORA_FILE


def pool_vae() -> VAEHandle:
    """A VAE with the Open-Sora VAE's geometry (8x space, 17 frames -> 5 latents, 4 channels)."""
    return VAEHandle(name="pool", family=OPENSORA, codec=PoolCodec(), layout=OPENSORA_VAE_LAYOUT)


class FakeT5ClipLegacy:
    """Mimics core CLIP for a T5 encoder as older ComfyUI has it: ``tokenize`` and ``encode_from_tokens``.

    Tokens are ``{"t5xxl": [[(id, 1.0), ...]]}``: one id per word, the end token
    (1) appended, padded with 0 up to ``min_length`` (padded CLIP types also
    return an ``attention_mask``). Each output row depends on its token and on
    the mean of all tokens, like an encoder that attends to the whole input,
    so cutting before or after encoding gives different features.
    """

    END, PAD = 1, 0

    def __init__(self, dim: int = 32, min_length: int = 1, with_mask: bool = False):
        gen = torch.Generator().manual_seed(7)
        self.table = torch.randn(1000, dim, generator=gen)
        self.min_length = min_length
        self.with_mask = with_mask
        self.seen: list[list[int]] = []

    def tokenize(self, text: str) -> dict:
        ids = [2 + (sum(map(ord, w)) % 900) for w in text.split()]
        batch = [(i, 1.0) for i in ids] + [(self.END, 1.0)]
        batch += [(self.PAD, 1.0)] * max(0, self.min_length - len(batch))
        return {"t5xxl": [batch]}

    def _encode(self, tokens: dict) -> dict:
        ids = [t[0] for t in tokens["t5xxl"][0]]
        self.seen.append(ids)
        index = torch.tensor(ids)
        valid = (index != self.PAD).long() if self.with_mask else torch.ones(len(ids), dtype=torch.long)
        emb = self.table[index]
        context = (emb * valid[:, None]).sum(0) / valid.sum()
        out = {"cond": (emb + context)[None], "pooled_output": None}
        if self.with_mask:
            out["attention_mask"] = valid[None]
        return out

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        out = self._encode(tokens)
        if return_dict:
            return out
        return out["cond"]


class FakeT5Clip(FakeT5ClipLegacy):
    """Core CLIP of current ComfyUI: also ``encode_from_tokens_scheduled`` (what CLIPTextEncode calls)."""

    def encode_from_tokens_scheduled(self, tokens, unprojected=False, add_dict=None, show_pbar=True):
        out = self._encode(tokens)
        cond = out.pop("cond")
        return [[cond, out]]


# ----------------------------------------------------------------------------- running nodes

BUILTIN_CHANNELS = 3  # displacement x, y and occupancy

BUILTIN = "CharMotion built-in"
CODEC = "CharMotion built-in warp decoder"


def run(name, **kwargs):
    """Run the node registered as ``name`` with these inputs; its outputs, as ComfyUI takes them from a
    ``{"ui", "result"}`` return."""
    cls = N[name]
    with torch.inference_mode():  # as ComfyUI runs every node
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return out["result"] if isinstance(out, dict) and "result" in out else out


def builtin(env):
    model, = run("CharMotionModelLoader", model_name=BUILTIN, dtype="auto", attention="auto")
    vae, = run("CharMotionVAELoader", vae_name=CODEC, dtype="auto", tile_size=0)
    return model, vae


def sprite_image(size=32):
    rgba = torch.from_numpy(sprite_rgba(size).astype(np.float32) / 255.0)
    return rgba[None, ..., :3].contiguous(), (1.0 - rgba[None, ..., 3]).contiguous()


SAMPLER = dict(seed=3, steps=2, cfg=4.0, frames=4, width=32, height=32, fps=8.0, denoise=0.7)


def sprite_refs(vae, size=32, frames="0"):
    """The small test sprite encoded as the built-in model's reference (at the image's own size)."""
    image, mask = sprite_image(size)
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="image", width=8, height=8,
                  fit="crop", pixel_art=False, background="auto", frames=frames, strength=1.0, mask=mask)
    return refs
