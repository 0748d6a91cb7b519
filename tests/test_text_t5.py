"""The command line's T5 folder (``--t5``): a folder without the T5 files, a missing or damaged shard, a file
transformers cannot read and a T5 of another size each end in one sentence saying what to do.

transformers is not a dependency of the pack: a stand-in module takes its place, raising as the real one does
for the files it cannot read.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from charmotion.dit_core import cli
from charmotion.dit_core import vae as vae_module
from charmotion.dit_core.checkpoint import CheckpointError
from charmotion.dit_core.errors import CharMotionError, InvalidInputError
from charmotion.dit_core.text_t5 import T5TextEncoder
from fake_models import PoolCodec
from golden_data import golden_dir


class SafetensorError(Exception):
    """As safetensors' own: an Exception, but neither a ValueError nor an OSError."""


class StandInT5:
    def __init__(self, width: int):
        self.config = types.SimpleNamespace(d_model=width)

    def to(self, device):
        return self

    def eval(self):
        return self


@pytest.fixture
def transformers(monkeypatch):
    """A stand-in transformers module; ``.width`` sets the loaded T5's width, ``.tokenizer_error`` what loading the
    tokenizer raises (the real one's words for a folder without a tokenizer)."""
    module = types.ModuleType("transformers")
    module.width, module.tokenizer_error, module.loaded = 4096, None, []

    def tokenizer(folder, **kwargs):
        if module.tokenizer_error is not None:
            raise module.tokenizer_error
        return object()

    def model(folder, **kwargs):
        module.loaded.append(folder)
        return StandInT5(module.width)

    module.AutoTokenizer = types.SimpleNamespace(from_pretrained=tokenizer)
    module.T5EncoderModel = types.SimpleNamespace(from_pretrained=model)
    monkeypatch.setitem(sys.modules, "transformers", module)
    monkeypatch.setitem(sys.modules, "sentencepiece", types.ModuleType("sentencepiece"))  # what spiece.model needs
    return module


def test_a_t5_tokenizer_file_that_needs_sentencepiece_says_to_install_it(tmp_path, transformers, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # not installed
    with pytest.raises(InvalidInputError, match="needs the transformers package: pip install transformers sentencepiece"):
        T5TextEncoder.from_pretrained(str(t5_folder(tmp_path)))
    assert transformers.loaded == []


def t5_folder(root, shards: int = 2):
    """A T5 folder in Hugging Face layout: config, tokenizer and an encoder split in safetensors shards."""
    folder = root / "t5"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 16}))
    (folder / "spiece.model").write_bytes(b"stand-in")
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        key = f"encoder.block.{i}.layer.0.SelfAttention.q.weight"
        save_file({key: torch.zeros(16, 16)}, str(folder / name))
        weight_map[key] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_a_sound_folder_loads(tmp_path, transformers):
    folder = t5_folder(tmp_path)
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"w": "pytorch_model-1.bin"}}))
    assert T5TextEncoder.from_pretrained(str(folder)).width == 4096 and transformers.loaded == [str(folder)]
    # (the .bin shards are not there: transformers reads the safetensors ones, so only those must be)


def test_a_truncated_shard_is_named_with_download_again(tmp_path, transformers):
    folder = t5_folder(tmp_path)
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CheckpointError) as info:
        T5TextEncoder.from_pretrained(str(folder))
    said = str(info.value)
    assert said.startswith(f"--t5 {folder}: model-00002-of-00002.safetensors is not a readable safetensors file")
    assert "truncated or damaged" in said and "download it again" in said
    assert isinstance(info.value, CharMotionError) and not transformers.loaded  # refused before transformers reads it


def test_a_missing_shard_is_named(tmp_path, transformers):
    folder = t5_folder(tmp_path, shards=3)
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(InvalidInputError, match="lacks model-00002-of-00003.safetensors, which its index lists: "
                                                "download the missing files"):
        T5TextEncoder.from_pretrained(str(folder))


@pytest.mark.parametrize("removed,words", [
    (["config.json", "spiece.model", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors"], "has no T5 files"),
    (["spiece.model"], "has no T5 tokenizer"),
    (["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
     "has no T5 weights"),
])
def test_a_folder_without_the_t5_files_says_what_it_must_hold(tmp_path, transformers, removed, words):
    folder = t5_folder(tmp_path)
    for name in removed:
        (folder / name).unlink()
    transformers.tokenizer_error = ValueError("You need to have sentencepiece or tiktoken installed to convert a "
                                              "slow tokenizer to a fast one.")  # what the real one says here
    with pytest.raises(InvalidInputError) as info:
        T5TextEncoder.from_pretrained(str(folder))
    said = str(info.value)
    assert said.startswith(f"--t5 {folder} {words}: a T5 v1.1 XXL folder")
    for name in ("config.json", "spiece.model or tokenizer.json", "model.safetensors"):
        assert name in said
    assert "sentencepiece or tiktoken installed" not in said


def test_what_transformers_cannot_read_is_one_error_naming_the_folder(tmp_path, transformers):
    folder = t5_folder(tmp_path)
    transformers.tokenizer_error = SafetensorError("Error while deserializing header: invalid JSON")
    with pytest.raises(InvalidInputError, match=r"could not load the T5 tokenizer \(Error while deserializing header: "
                                                r"invalid JSON\).*download the T5 v1.1 XXL folder again"):
        T5TextEncoder.from_pretrained(str(folder))
    transformers.tokenizer_error = MemoryError()  # not a damaged file: stays what it is
    with pytest.raises(MemoryError):
        T5TextEncoder.from_pretrained(str(folder))


def test_a_t5_of_another_width_is_refused_after_loading(tmp_path, transformers, monkeypatch, capsys):
    encoder = T5TextEncoder(object(), StandInT5(1024), "cpu", folder="t5-v1_1-large")
    with pytest.raises(InvalidInputError, match=r"^--t5 t5-v1_1-large: this T5 gives 1024-channel features but the "
                                                r"model reads 4096: use T5 v1.1 XXL \(4096\)$"):
        encoder.check_width(4096)
    encoder.check_width(1024)

    # through the command line: the golden STDiT3 reads 32-channel captions
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(vae_module, "load_opensora_vae", lambda *args, **kwargs: PoolCodec())
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(tmp_path / "char.png")
    (tmp_path / "vae.safetensors").write_bytes(b"stand-in")
    transformers.width = 16
    status = cli.main(["animate", "--image", "char.png", "--prompt", "the knight jumps", "--out", "out.gif", "--quiet",
                       "--model", "opensora", "--dit", str(golden_dir() / "stdit3_weights.safetensors"),
                       "--vae", "vae.safetensors", "--t5", str(t5_folder(tmp_path)), "--frames", "17", "--size", "32"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert "this T5 gives 16-channel features but the model reads 32" in err
    assert not (tmp_path / "out.gif").exists()
    assert transformers.loaded == []  # told by its config.json, before its weights were read
