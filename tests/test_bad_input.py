"""A catalogue of bad inputs through the command line and the nodes.

Each must end in one clear error before any work: a non-zero exit status
(command line) or the pack's error (nodes), no traceback, a message naming
the input and the allowed range or the fix, no file created or changed, no
temporary file and no child process left behind. The models here are stand-ins
and Open-Sora's golden weights, all tiny, so the whole catalogue runs in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from charmotion.dit_core import checks, cli, memory
from charmotion.dit_core.checkpoint import CheckpointError, reading_model_file
from charmotion.dit_core.conditioning import FRAME_BY_FRAME
from charmotion.dit_core.errors import CharMotionError, InvalidInputError, NonFiniteError
from charmotion.dit_core.images import prepare_reference
from charmotion.dit_core.families import ModelFamily, SamplingProfile
from charmotion.dit_core.pipeline import Reference
from charmotion.dit_core.sampling import TextCondition
from charmotion.nodes import host
from charmotion.nodes.handles import LATENT_KEY, MotionControl
from fake_models import FrameCodec, RecordingModel
from golden_data import golden_dir
from node_fixtures import FakeT5Clip, one_thread, pool_vae, run  # noqa: F401 (fixture)

GOLDEN_STDIT3 = "stdit3_weights.safetensors"
LOAD_MODELS = cli._load_models


# ----------------------------------------------------------------------------- what every case must leave behind


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root`` (hidden ones too) with its size and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def child_processes() -> list[str]:
    """Ids of this process's children (Linux); [] where that cannot be read."""
    children = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass
    return children


def assert_untouched(root: Path, before: dict) -> None:
    after = snapshot(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert not child_processes()


# ----------------------------------------------------------------------------- command line


PROFILE = SamplingProfile(name="test model", layout=FRAME_BY_FRAME, spatial_factor=8, steps=2, cfg_scale=1.0,
                          fps=8.0, image_fps=8.0, use_timestep_transform=False, align=None, min_video_frames=2,
                          max_frames=32, loop_condition_frames=1, frame_hint="2 to 32 frames")


class InterruptingModel(RecordingModel):
    def forward(self, *args, **kwargs):
        raise KeyboardInterrupt


def fake_runtime(model=None) -> cli.Runtime:
    codec = FrameCodec()

    def prepare(image, args):
        width, height = args.size or (16, 16)
        ref = prepare_reference(image, height=height, width=width, fit=args.fit, background=args.background)
        return cli.Prepared(references=[Reference(codec.encode(ref.video())[0])], codec=codec, height=height,
                            width=width, key_color=ref.key_color, had_alpha=ref.had_alpha, reference_rgb=ref.rgb)

    family = ModelFamily(key="test", name="test model", profile=PROFILE, num_frames=4, size=(16, 16),
                         motion_range=(0.0, 10.0))
    return cli.Runtime(name="test model", family=family, model=model or RecordingModel(channels=4, velocity=0.1),
                       codec=codec, encode=lambda text, loops: [TextCondition(torch.zeros(1, 1, 6, 8))] * loops,
                       prepare=prepare)


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refuses malformed options itself
        status = exc.code
    return status, capsys.readouterr().err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a reference image; the command line runs with the stand-in model there."""
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(tmp_path / "char.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_load_models", lambda args: fake_runtime())
    return tmp_path


def bomb_png(path: Path, width: int, height: int) -> None:
    """A PNG header announcing a huge image (the pixels are never read)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4))
                     + chunk(b"IEND", b""))


def golden_without(tmp_path: Path, drop: str | None = None, nan: str | None = None) -> Path:
    state = load_file(str(golden_dir() / GOLDEN_STDIT3))
    if drop:
        del state[drop]
    if nan:
        state[nan] = torch.full_like(state[nan], float("nan"))
    path = tmp_path / "models" / "stdit3.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file(state, str(path))
    return path


def broken_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "bundle.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file({"dit.w": torch.zeros(2), "text_encoder.w": torch.zeros(2)}, str(path),
              metadata={"config": "{'model': 1}"})
    return path


def unwritable(folder: Path, monkeypatch) -> Path:
    """A folder no file can be created in (by permissions; for root, which ignores them, by refusing the probe)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # running as root
        real = checks.tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(checks.tempfile, "mkstemp", refuse)
    return folder


BASE = ["animate", "--image", "char.png", "--prompt", "the slime bounces", "--out", "out.gif", "--quiet"]

# (id, options added to BASE (a later --out wins), words the message must hold)
CLI_CASES = [
    ("cfg-nan", ["--cfg", "nan"], ["--cfg", "finite number of 0 or more", "nan"]),
    ("cfg-inf", ["--cfg", "inf"], ["--cfg", "finite number", "inf"]),
    ("cfg-negative", ["--cfg", "-1"], ["--cfg", "0 or more", "-1"]),
    ("denoise-nan", ["--denoise", "nan"], ["--denoise", "above 0 and at most 1", "pure noise"]),
    ("denoise-zero", ["--denoise", "0"], ["--denoise", "above 0 and at most 1"]),
    ("denoise-big", ["--denoise", "1.5"], ["--denoise", "above 0 and at most 1"]),
    ("frames-zero", ["--frames", "0"], ["--frames", "1 or more", "got 0"]),
    ("frames-too-many", ["--frames", "100"], ["100 frames", "2 to 32"]),
    ("steps-zero", ["--steps", "0"], ["--steps", "from 1 to 1000"]),
    ("quality-high", ["--quality", "101"], ["--quality", "from 0 to 100"]),
    ("steps-huge", ["--steps", str(10**23)], ["--steps", "from 1 to 1000"]),
    ("seed-huge", ["--seed", str(2**70)], ["seed", "from 0 to 18446744073709551615", str(2**70)]),
    ("seed-negative", ["--seed", "-1"], ["seed", "from 0 to 18446744073709551615"]),
    ("motion-above", ["--motion-strength", "11"], ["motion strength 11", "test model", "0-10", "--motion-strength"]),
    ("motion-below", ["--motion-strength", "-1"], ["motion strength -1", "0-10", "--motion-strength"]),
    ("motion-nan", ["--motion-strength", "nan"], ["motion strength nan", "0-10", "--motion-strength"]),
    ("aesthetic", ["--aesthetic", "9"], ["--aesthetic", "from 4 to 7"]),
    ("fps-zero", ["--fps", "0"], ["--fps", "above 0", "leave --fps out"]),
    ("fps-nan", ["--fps", "nan"], ["--fps", "finite number"]),
    ("loops-zero", ["--loops", "0"], ["--loops", "from 1 to 100"]),
    ("loops-huge", ["--loops", str(10**11)], ["--loops", "from 1 to 100"]),
    ("frames-huge", ["--frames", str(10**20)], ["test model cannot make a clip of", "2 to 32"]),
    ("prompt-empty", ["--prompt", " "], ["the prompt is empty", "describe what the character does"]),
    ("prompt-cleaned-away", ["--prompt", "骑士跳跃"], ["the prompt '骑士跳跃' is empty after cleaning: use plain words"]),
    ("prompt-cleaned-away-scored", ["--prompt", "骑士跳跃", "--motion-strength", "5"],
     ["the prompt '骑士跳跃' is empty after cleaning: use plain words"]),
    ("prompt-loop-cleaned-away", ["--prompt", "|0|the slime bounces|1|...", "--loops", "2"], ["the prompt '...' is empty"]),
    ("gif-too-wide", ["--size", "8x99999"], ["gif frames can be at most 65535", "8x99999", "another format"]),
    ("webp-too-wide", ["--out", "o.webp", "--size", "16400x8"], ["webp frames can be at most 16383", "16400x8"]),
    ("out-empty", ["--out", ""], ["cannot tell the format of ''", "with / for PNG frames"]),
    ("size-zero", ["--size", "0"], ["--size", "1 or more", "WIDTHxHEIGHT"]),
    ("size-small", ["--size", "4"], ["4x4 is too small", "at least 8"]),
    ("size-huge", ["--size", "20000"], ["20000x20000 pixels at 4 frames", "needs about", "use at most"]),
    ("size-text", ["--size", "big"], ["--size", "N or WIDTHxHEIGHT"]),
    ("palette", ["--palette", "1"], ["palette", "2"]),
    ("background", ["--background", "nope"], ["--background: unknown colour 'nope'", "#rrggbb"]),
    ("background-color", ["--background-color", "nope"], ["--background-color: unknown colour 'nope'", "#rrggbb"]),
    ("image-missing", ["--image", "missing.png"], ["image not found", "missing.png"]),
    ("image-text", ["--image", "notes.png"], ["cannot read notes.png as an image", "PNG or JPG"]),
    ("image-folder", ["--image", "."], ["cannot read . as an image"]),
    ("image-bomb", ["--image", "bomb.png"], ["bomb.png is too large", "scale it down"]),
    ("out-extension", ["--out", "clip.txt"], ["cannot tell the format", ".gif"]),
    ("out-nul", ["--out", "cl\x00ip.gif"], ["--out", "NUL character", "remove it"]),
    ("out-long", ["--out", "a" * 300 + ".gif"], ["--out", "304 characters", "at most 255 bytes", "shorten it"]),
    ("out-long-folder", ["--out", "b" * 300 + "/"], ["--out", "300 characters", "shorten it"]),
    ("out-under-a-file", ["--out", "char.png/clip.gif"], ["char.png is a file, not a folder"]),
    ("out-unwritable", ["--out", "locked/clip.gif"], ["cannot write --out locked/clip.gif", "not writable",
                                                      "choose a folder you can write to"]),
    ("device-bad", ["--device", "toaster"], ["--device 'toaster' is not a device", "cpu"]),
    ("opensora-flags", ["--model", "opensora", "--dit", "char.png"], ["--model opensora needs --vae, --t5"]),
    ("opensora-no-file", ["--model", "opensora", "--dit", "char.png", "--vae", "vae.safetensors", "--t5", "."],
     ["--vae 'vae.safetensors': no such file", "downloaded model file"]),
    ("bundle-no-file", ["--model", "mine.safetensors"], ["--model 'mine.safetensors': no such file"]),
]


@pytest.mark.parametrize("extra,words", [pytest.param(e, w, id=i) for i, e, w in CLI_CASES])
def test_cli_refuses_bad_input(workdir, capsys, monkeypatch, extra, words):
    (workdir / "notes.png").write_text("not an image")
    bomb_png(workdir / "bomb.png", 20000, 20000)
    (workdir / "out.gif").write_bytes(b"an earlier clip")  # must stay as it is
    unwritable(workdir / "locked", monkeypatch)
    if "--model" in extra:
        monkeypatch.setattr(cli, "_load_models", LOAD_MODELS)
    before = snapshot(workdir)
    status, err = run_cli(BASE + extra, capsys)
    assert status not in (0, None)
    assert "Traceback" not in err and err.count("error:") == 1
    for word in words:
        assert word in err
    assert_untouched(workdir, before)


@pytest.mark.parametrize("case", ["missing-key", "nan-weights", "broken-metadata"])
def test_cli_names_the_damaged_model_file(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(tmp_path / "char.png")
    if case == "broken-metadata":
        argv = BASE + ["--model", broken_bundle(tmp_path)]
        words = ["bundle.safetensors has damaged metadata", "not valid JSON", "CharMotion built-in model file"]
    else:
        path = golden_without(tmp_path, drop="y_embedder.y_embedding") if case == "missing-key" else \
            golden_without(tmp_path, nan="spatial_blocks.0.attn.qkv.weight")
        (tmp_path / "vae.safetensors").write_bytes(b"")
        (tmp_path / "t5").mkdir()
        argv = BASE + ["--model", "opensora", "--dit", path, "--vae", "vae.safetensors", "--t5", "t5"]
        words = (["stdit3.safetensors is missing y_embedder.y_embedding", "Open-Sora 1.2 STDiT3 denoiser"]
                 if case == "missing-key" else ["stdit3.safetensors holds NaN", "spatial_blocks.0.attn.qkv.weight",
                                                "download it again"])
    before = snapshot(tmp_path)
    status, err = run_cli(argv, capsys)
    assert status == 2 and "Traceback" not in err
    for word in words:
        assert word in err
    assert_untouched(tmp_path, before)


def test_cli_stops_when_the_model_produces_nan(workdir, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_load_models", lambda args: fake_runtime(RecordingModel(channels=4, velocity=float("nan"))))
    before = snapshot(workdir)
    status, err = run_cli(BASE, capsys)
    assert status == 2 and "Traceback" not in err
    assert "produced NaN or infinite values at step 1 of 2" in err and "damaged" in err
    assert_untouched(workdir, before)


def test_cli_ctrl_c_during_sampling_says_cancelled(workdir, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_load_models", lambda args: fake_runtime(InterruptingModel(channels=4)))
    before = snapshot(workdir)
    status, err = run_cli(BASE, capsys)
    assert status == 130 and err.strip() == "cancelled"
    assert_untouched(workdir, before)


def test_cli_sigterm_during_mp4_export_removes_the_temporary_file_and_ends_ffmpeg(workdir, capsys, monkeypatch):
    """SIGTERM arrives while ffmpeg is encoding: the command cleans up like a cancel and ends with status 143."""
    real_popen = subprocess.Popen
    started = []

    class TermAfterFirstFrame:
        """ffmpeg's process, with SIGTERM sent to this process once the first frame is written to it."""

        def __init__(self, proc):
            self.proc = proc
            self.stdin = self

        def write(self, data):
            self.proc.stdin.write(data)
            os.kill(os.getpid(), signal.SIGTERM)

        def close(self):
            self.proc.stdin.close()

        def wait(self):
            return self.proc.wait()

        def kill(self):
            self.proc.kill()

    def popen(cmd, *args, **kwargs):
        proc = real_popen(cmd, *args, **kwargs)
        if kwargs.get("stdin") is not subprocess.PIPE:
            return proc
        started.append(proc)
        return TermAfterFirstFrame(proc)

    monkeypatch.setattr(subprocess, "Popen", popen)
    before = snapshot(workdir)
    status, err = run_cli(BASE + ["--out", "clip.mp4"], capsys)
    assert status == 143 and err.strip() == "cancelled"
    assert started and started[0].poll() is not None  # ffmpeg was ended, not orphaned
    assert_untouched(workdir, before)  # no .part file, no metadata file
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back


def test_cli_output_path_starting_with_a_dash_reaches_ffmpeg_as_a_path(workdir, capsys):
    status, err = run_cli(BASE + ["--out=-y/x.mp4", "--frames", "2"], capsys)
    assert status == 0, err
    assert (workdir / "-y" / "x.mp4").stat().st_size > 0
    assert not [p for p in (workdir / "-y").iterdir() if p.name.startswith(".")]


def test_cli_frames_given_are_the_frames_made(workdir, capsys):
    status, err = run_cli(BASE + ["--frames", "3", "--out", "three.gif"], capsys)
    assert status == 0, err
    with Image.open(workdir / "three.gif") as im:
        assert im.n_frames == 3


def test_cli_reads_16_bit_greyscale_in_full():
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(4, 256)
    from io import BytesIO

    buf = BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    buf.seek(0)
    rgb = cli.load_image(buf)
    assert rgb.shape == (4, 256, 3) and rgb.dtype == np.uint8
    assert len(np.unique(rgb)) == 256  # every level, scaled (not clipped to two)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(ramp / 257.0).astype(np.uint8))


def test_cli_reads_an_image_the_way_its_exif_orientation_shows_it():
    from io import BytesIO

    stored = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10  # 2 rows of 4 as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to show
    buf = BytesIO()
    Image.fromarray(stored).save(buf, format="PNG", exif=exif)
    buf.seek(0)
    np.testing.assert_array_equal(cli.load_image(buf), np.rot90(stored, k=-1))  # 4 rows of 2, as shown


# ----------------------------------------------------------------------------- nodes


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """Host-free model and output folders holding the golden STDiT3 as an Open-Sora denoiser."""
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    (models / "diffusion_models" / "dit.safetensors").write_bytes((golden_dir() / GOLDEN_STDIT3).read_bytes())
    output = tmp_path / "output"
    output.mkdir()
    monkeypatch.setenv("CHARMOTION_MODELS_DIR", str(models))
    monkeypatch.setenv("CHARMOTION_OUTPUT_DIR", str(output))
    monkeypatch.setenv("CHARMOTION_TEMP_DIR", str(tmp_path / "temp"))
    return tmp_path


def opensora():
    model, = run("CharMotionModelLoader", model_name="dit.safetensors", dtype="fp32", attention="sdpa")
    cond, = run("CharMotionTextEncode", model=model, text="a knight jumps", clip=FakeT5Clip(dim=32),
                motion=MotionControl())
    return model, cond


SAMPLE = dict(seed=0, steps=1, cfg=7.0, frames=17, width=32, height=32, fps=24.0, denoise=1.0)
FRAMES = torch.full((3, 16, 16, 3), 0.5)
EXPORT = dict(format="gif", fps=8.0, loop_count=0, pingpong=False, quality=-1, lossless=False, transparency="off",
              key_color="auto", tolerance=0.1, despill=True)


def nan_at(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[1] = float("nan")
    return t


def sampler(**change):
    model, cond = opensora()
    return run("CharMotionSampler", model=model, positive=cond, **{**SAMPLE, **change})


def reference(image=None, **change):
    kwargs = dict(vae=pool_vae(), image=torch.rand(1, 24, 24, 3) if image is None else image, resolution="custom",
                  width=32, height=32, fit="crop", pixel_art=False, background="auto", frames="0", strength=1.0)
    return run("CharMotionReferenceEncode", **{**kwargs, **change})


def export(images=FRAMES, prefix="clip", **change):
    return run("CharMotionExport", images=images, filename_prefix=prefix, **{**EXPORT, **change})


def sampler_with_reference_at(frame):
    model, cond = opensora()
    refs, _ = reference(frames=str(frame))
    return run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLE, "width": 0, "height": 0})


def short_of_memory(root, monkeypatch):
    monkeypatch.setattr(memory, "cpu_available_bytes", lambda: 512 * 2**20)


def sampler_with_nan_weights():
    model, cond = opensora()
    model.model.x_embedder.proj.weight.data.fill_(float("nan"))
    return run("CharMotionSampler", model=model, positive=cond, **SAMPLE)


def link_out_of_output(root, monkeypatch):
    (root / "elsewhere").mkdir()
    (root / "output" / "shared").symlink_to(root / "elsewhere", target_is_directory=True)


def locked_output(root, monkeypatch):
    unwritable(root / "output" / "locked", monkeypatch)


def load_model(name):
    return run("CharMotionModelLoader", model_name=name, dtype="fp32", attention="sdpa")


def damaged(**damage):
    def setup(root, monkeypatch):
        golden_without(root, **damage).rename(root / "models" / "diffusion_models" / "damaged.safetensors")
    return setup


def motion(**change):
    kwargs = dict(use_motion=True, motion_strength=5.0, use_aesthetic=True, aesthetic=6.5, camera_motion="none")
    return run("CharMotionMotionControl", **{**kwargs, **change})


NAN, INF = float("nan"), float("inf")

# (id, setup(root, monkeypatch) or None, call(), words the message must hold)
NODE_CASES = [
    ("sampler-cfg-nan", None, lambda: sampler(cfg=NAN), ["cfg", "finite number of 0 or more", "nan"]),
    ("sampler-cfg-inf", None, lambda: sampler(cfg=INF), ["cfg", "finite number", "inf"]),
    ("sampler-fps-nan", None, lambda: sampler(fps=NAN), ["fps", "finite number above 0"]),
    ("sampler-denoise-nan", None, lambda: sampler(denoise=NAN), ["denoise", "above 0 and at most 1", "pure noise"]),
    ("sampler-seed", None, lambda: sampler(seed=2**70), ["seed", "from 0 to 18446744073709551615"]),
    ("sampler-frames", None, lambda: sampler(frames=5), ["5 frames", "17 and more"]),
    ("sampler-memory", short_of_memory, lambda: sampler(width=4096, height=4096),
     ["4096x4096 pixels at 17 frames", "needs about", "512.0 MB free", "use at most"]),
    ("sampler-reference-frame", None, lambda: sampler_with_reference_at(-999),
     ["frame -999 is outside a clip of 17 frames", "0 to 16", "-1 to -17"]),
    ("sampler-model-nan", None, sampler_with_nan_weights, ["produced NaN or infinite values", "step 1"]),
    ("reference-empty", None, lambda: reference(torch.zeros(1, 0, 0, 3)), ["image is empty", "0x0"]),
    ("reference-nan", None, lambda: reference(nan_at(torch.rand(1, 24, 24, 3))), ["1 of the 1728 values in image is NaN", "valid pixels"]),
    ("reference-strength-nan", None, lambda: reference(strength=NAN), ["strength", "from 0 to 1"]),
    ("reference-strength-big", None, lambda: reference(strength=2.0), ["strength", "from 0 to 1", "2.0"]),
    ("reference-mask-nan", None, lambda: reference(mask=torch.full((24, 24), NAN)), ["576 of the 576 values in mask are NaN"]),
    ("reference-frames-text", None, lambda: reference(frames="first"), ["frame positions", "whole numbers"]),
    ("decode-nan", None, lambda: run("CharMotionVAEDecode", vae=pool_vae(), samples={
        "samples": nan_at(torch.zeros(1, 4, 5, 4, 4)), LATENT_KEY: {"num_frames": 17}}), ["values in the LATENT is NaN or infinite", "sample it again"]),
    ("export-nan", None, lambda: export(nan_at(FRAMES)), ["1 of the 2304 values in images is NaN"]),
    ("export-empty", None, lambda: export(torch.zeros(0, 16, 16, 3)), ["images is empty"]),
    ("export-fps-nan", None, lambda: export(fps=NAN), ["fps", "from 0 to 240", "clip's own rate"]),
    ("export-fps-negative", None, lambda: export(fps=-1.0), ["fps", "from 0 to 240"]),
    ("export-tolerance", None, lambda: export(tolerance=INF), ["tolerance", "from 0 to 1"]),
    ("export-prefix-nul", None, lambda: export(prefix="cl\x00ip"), ["filename_prefix", "NUL character"]),
    ("export-prefix-long", None, lambda: export(prefix="c" * 300), ["filename_prefix", "300 characters", "shorten"]),
    ("export-prefix-parent", None, lambda: export(prefix="../clip"), ["filename prefix '../clip'", "output folder"]),
    ("export-prefix-link", link_out_of_output, lambda: export(prefix="shared/clip"),
     ["leads outside", "elsewhere", "inside that folder"]),
    ("export-unwritable", locked_output, lambda: export(prefix="locked/clip"), ["not writable", "choose a folder"]),
    ("loader-escape", None, lambda: load_model("../../../tmp/x.safetensors"),
     ["model name '../../../tmp/x.safetensors' points outside the model folders", "pick a file from the list"]),
    ("loader-missing-key", damaged(drop="y_embedder.y_embedding"), lambda: load_model("damaged.safetensors"),
     ["damaged.safetensors is missing y_embedder.y_embedding", "Open-Sora 1.2 STDiT3"]),
    ("loader-nan-weights", damaged(nan="final_layer.linear.weight"), lambda: load_model("damaged.safetensors"),
     ["damaged.safetensors holds NaN", "final_layer.linear.weight", "download it again"]),
    ("motion-nan", None, lambda: motion(motion_strength=NAN), ["motion_strength", "from 0 to 100"]),
    ("aesthetic-inf", None, lambda: motion(aesthetic=INF), ["aesthetic", "from 4 to 7"]),
    ("loop-edit-nan", None, lambda: run("CharMotionLoopControl", loops=2, condition_frames=0, seamless=False,
                                        condition_edit=NAN), ["condition_edit", "from 0 to 1"]),
    ("text-motion-range", None, lambda: run("CharMotionTextEncode", model=opensora()[0], text="a knight jumps",
                                            clip=FakeT5Clip(dim=32), motion=MotionControl(motion=150.0)),
     ["motion strength 150", "(0-100)", "motion_strength within 0-100"]),
    ("palette-nan", None, lambda: run("CharMotionPaletteLock", frames=nan_at(FRAMES), reference=FRAMES[:1],
                                      colors=16), ["1 of the 2304 values in frames is NaN"]),
]


@pytest.mark.parametrize("setup,call,words", [pytest.param(s, c, w, id=i) for i, s, c, w in NODE_CASES])
def test_nodes_refuse_bad_input(comfy, monkeypatch, setup, call, words):
    if setup is not None:
        setup(comfy, monkeypatch)
    before = snapshot(comfy)
    with pytest.raises(CharMotionError) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message
    assert "\n" not in message
    assert_untouched(comfy, before)


# ----------------------------------------------------------------------------- pieces


def test_error_types_read_as_charmotion_in_comfyui():
    """ComfyUI reports a failed node as ``f"{type.__module__}.{type.__qualname__}"`` (execution.full_type_name)."""
    from charmotion.dit_core.attention import AttentionBackendError
    from charmotion.dit_core.errors import GenerationCancelled
    from charmotion.dit_core.export import ExportError, FFmpegNotFoundError

    for cls in (CharMotionError, InvalidInputError, GenerationCancelled, NonFiniteError, CheckpointError,
                ExportError, FFmpegNotFoundError, AttentionBackendError):
        assert f"{cls.__module__}.{cls.__qualname__}" == f"CharMotion.{cls.__name__}"
    assert issubclass(InvalidInputError, ValueError) and issubclass(CheckpointError, CharMotionError)


@pytest.mark.parametrize("size,words", [
    ("30000", ["30000x30000 pixels at 16 frames needs about", "use at most"]),  # too large to draw
    ("7x64", ["size 7x64 is too small", "at least 8 pixels"]),  # too small to show a motion
])
def test_the_command_refuses_a_size_it_cannot_animate(tmp_path, capsys, size, words):
    slime = Path(__file__).resolve().parents[1] / "assets" / "samples" / "slime.png"
    out = tmp_path / "clip.png"
    status, err = run_cli(["animate", "--image", slime, "--prompt", "it jumps", "--size", size, "--out", out],
                          capsys)
    assert status == 2 and all(w in err for w in words), err
    assert "Traceback" not in err and not out.exists()


def test_a_sprite_smaller_than_the_smallest_size_animates_on_its_grown_canvas(tmp_path, capsys):
    """The size checks see the canvas the built-in model animates: a 5x9 sprite grows to 16x16 and is not refused."""
    sprite = np.zeros((9, 5, 4), np.uint8)
    sprite[1:8, 1:4] = (200, 40, 40, 255)
    Image.fromarray(sprite, "RGBA").save(tmp_path / "tiny.png")
    out = tmp_path / "tiny.gif"
    status, err = run_cli(["animate", "--image", tmp_path / "tiny.png", "--prompt", "it jumps", "--frames", "4",
                           "--steps", "2", "--out", out], capsys)
    assert status == 0 and "the canvas grew from 5x9 to 14x14" in err, err
    with Image.open(out) as im:
        assert im.size == (14, 14)


def test_a_canvas_grown_too_large_names_the_way_to_keep_the_image_size(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(memory, "cpu_available_bytes", lambda: 512 * 2**20)
    sprite = np.zeros((12, 400, 4), np.uint8)
    sprite[2:10, 4:396] = (200, 40, 40, 255)  # a long, flat figure: its square working frame is 400 wide
    Image.fromarray(sprite, "RGBA").save(tmp_path / "wide.png")
    out = tmp_path / "wide.gif"
    status, err = run_cli(["animate", "--image", tmp_path / "wide.png", "--prompt", "it jumps", "--frames", "64",
                           "--out", out], capsys)
    assert status == 2 and "the canvas grew from 400x12" in err, err
    assert err.rstrip().endswith("or keep the image's own 400x12 canvas: --canvas keep") and not out.exists()


def test_model_names_stay_inside_the_model_folders(comfy):
    outside = comfy / "secret.safetensors"
    outside.write_bytes(b"x")
    for name in ("../secret.safetensors", "../../secret.safetensors", str(outside), "a/../../secret.safetensors"):
        with pytest.raises(InvalidInputError, match="points outside the model folders"):
            host.model_path(("diffusion_models",), name)
    assert host.model_path(("diffusion_models",), "dit.safetensors").endswith("dit.safetensors")


def test_reading_model_file_names_the_file():
    with pytest.raises(CheckpointError, match=r"^my\.safetensors has damaged metadata .*a CharMotion built-in model file"):
        with reading_model_file("models/my.safetensors", "a CharMotion built-in model file"):
            json.loads("{'a': 1}")
    with pytest.raises(CheckpointError, match="the built-in model file lacks 'dit.x' that a bundle needs"):
        with reading_model_file(None, "a bundle"):
            raise KeyError("dit.x")
