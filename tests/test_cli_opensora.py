"""The command line with Open-Sora 1.2 files: small models in the published layouts, run end to end.

The T5 encoder needs the transformers package, which the tests do without: a stand-in gives features of the
caption width the denoiser reads."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from charmotion.dit_core import cli, text_t5
from charmotion.dit_core.models import build_stdit3
from charmotion.dit_core.sampling import TextCondition
from charmotion.dit_core.vae.pipeline import OpenSoraVAE, VideoVAEConfig
from charmotion.dit_core.vae.spatial import SpatialVAEConfig
from charmotion.dit_core.vae.temporal import TemporalVAEConfig
from media import pil_frames
from node_fixtures import sprite_rgba

CAPTION_CHANNELS = 32


class StandInT5(text_t5.T5TextEncoder):
    """Stands in for T5 v1.1 XXL: 300 tokens of features, the prompt's words marked valid."""

    def __init__(self, width: int = CAPTION_CHANNELS):
        self.folder, self.features = "t5", width
        self.prompts: list[str] = []

    @property
    def width(self) -> int:
        return self.features

    def __call__(self, prompts: list[str]) -> TextCondition:
        self.prompts += prompts
        mask = torch.zeros(len(prompts), text_t5.MAX_LENGTH, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            mask[row, : len(prompt.split()) + 1] = 1
        features = torch.randn(len(prompts), 1, text_t5.MAX_LENGTH, self.features, generator=torch.Generator().manual_seed(0))
        return TextCondition(features, mask)


@pytest.fixture(scope="module")
def opensora_files(tmp_path_factory):
    """An STDiT3 and a VAE v1.2 of the published layouts, narrow and shallow (the VAE still codes 8x in space and
    17 frames into 5 latents), each in a Hugging Face style folder with its config."""
    root = tmp_path_factory.mktemp("opensora")
    torch.manual_seed(0)
    dit = build_stdit3(dict(depth=1, hidden_size=64, num_heads=4, caption_channels=CAPTION_CHANNELS), device="cpu")
    (root / "dit").mkdir()
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(root / "dit" / "model.safetensors"))
    vae = OpenSoraVAE(VideoVAEConfig(
        spatial=SpatialVAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4),
        temporal=TemporalVAEConfig(filters=8, num_res_blocks=1, channel_multipliers=(1, 2, 2, 2), num_groups=4)))
    (root / "vae").mkdir()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(root / "vae" / "model.safetensors"))
    (root / "vae" / "config.json").write_text(json.dumps({
        "model_type": "VideoAutoencoderPipeline", "vae_2d": {"norm_num_groups": 4}, "vae_temporal": {"num_groups": 4},
        "micro_frame_size": 17}))
    (root / "t5").mkdir()
    Image.fromarray(sprite_rgba(64), "RGBA").save(root / "knight.png")
    return root


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_opensora_clip_from_the_command_line(opensora_files, tmp_path, monkeypatch, capsys, dtype):
    """``--model opensora`` loads the three files and writes a clip of the asked frames (the default dtype fp32
    and bf16 both given as the option's words); ``--t5-device`` is where T5 is loaded, checked like ``--device``."""
    root = opensora_files
    assert cli.main(opensora_argv(root, tmp_path / "x.gif", "--t5-device", "gpu")) == 2
    assert "--t5-device 'gpu' is not a device: use cpu, cuda or cuda:N" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # eight GPUs, as far as the device check sees
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    t5, devices = StandInT5(), []
    monkeypatch.setattr(text_t5.T5TextEncoder, "from_pretrained",
                        classmethod(lambda cls, folder, device="cpu", **_: devices.append(device) or t5))
    out = tmp_path / "knight.gif"
    status = cli.main(["animate", "--image", str(root / "knight.png"), "--prompt", "the knight jumps",
                       "--model", "opensora", "--dit", str(root / "dit" / "model.safetensors"),
                       "--vae", str(root / "vae" / "model.safetensors"), "--t5", str(root / "t5"),
                       "--frames", "17", "--size", "64", "--steps", "2", "--dtype", dtype, "--out", str(out),
                       "--t5-device", "cuda:7"])  # the stand-in T5 only records where it was asked to run
    assert status == 0, capsys.readouterr().err
    frames, durations, *_ = pil_frames(out)
    assert frames.shape[:3] == (17, 64, 64) and len(durations) == 17
    assert t5.prompts and "knight jumps" in t5.prompts[0] and devices == ["cuda:7"]


def opensora_argv(root, out, *extra) -> list[str]:
    return ["animate", "--image", str(root / "knight.png"), "--prompt", "the knight jumps", "--model", "opensora",
            "--dit", str(root / "dit" / "model.safetensors"), "--vae", str(root / "vae" / "model.safetensors"),
            "--t5", str(root / "t5"), "--frames", "17", "--steps", "1", "--out", str(out), *map(str, extra)]


def test_vae_tiles_from_the_command_line(opensora_files, tmp_path, monkeypatch, capsys):
    """``--vae-tile`` decodes in spatial tiles; the memory check's advice names it; a tile too small is refused."""
    from charmotion.dit_core import memory

    monkeypatch.setattr(text_t5.T5TextEncoder, "from_pretrained", classmethod(lambda cls, folder, device="cpu", **_: StandInT5()))
    root = opensora_files
    assert cli.main(opensora_argv(root, tmp_path / "tiled.gif", "--size", "96x64", "--vae-tile", "32")) == 0
    frames, *_ = pil_frames(tmp_path / "tiled.gif")
    assert frames.shape[:3] == (17, 64, 96)
    capsys.readouterr()
    assert cli.main(opensora_argv(root, tmp_path / "small.gif", "--vae-tile", "16")) == 2
    assert "--vae-tile 16 is too small: give 0 (whole frames) or a tile of 32 pixels or more" in capsys.readouterr().err
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)
    assert cli.main(opensora_argv(root, tmp_path / "big.gif", "--size", "1024")) == 2
    said = capsys.readouterr().err
    assert "1024x1024 pixels at 17 frames needs about" in said and "or decode in spatial tiles of 256 pixels (--vae-tile)" in said
    assert not list(tmp_path.glob("big*"))


def test_frame_advice_on_the_command_line_keeps_the_loop_rules(opensora_files, tmp_path, monkeypatch, capsys):
    """``--frames 16 --loops 2`` is told a count that loops (18 or more), not 1 or 17, which loops refuse."""
    monkeypatch.setattr(text_t5.T5TextEncoder, "from_pretrained", classmethod(lambda cls, folder, device="cpu", **_: StandInT5()))
    out = tmp_path / "loop.gif"
    assert cli.main(opensora_argv(opensora_files, out, "--size", "64", "--frames", "16", "--loops", "2")) == 2
    assert "Open-Sora 1.2 cannot make a clip of 16 frames: use 18 frames or more" in capsys.readouterr().err
    assert cli.main(opensora_argv(opensora_files, out, "--size", "64", "--frames", "18", "--loops", "2")) == 0
    frames, *_ = pil_frames(out)
    assert frames.shape[0] == 19  # the second loop continues from the first's last 17-frame chunk: one frame more
