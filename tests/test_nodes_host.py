"""The nodes inside a ComfyUI host (stood in for): its model management, video type, folders and save paths."""

from __future__ import annotations

import pytest
import torch

from charmotion.dit_core.errors import InvalidInputError
from charmotion.dit_core.conditioning import OPENSORA_VAE_LAYOUT
from charmotion.dit_core.pipeline import infer_num_frames
from charmotion.nodes import NODE_CLASS_MAPPINGS as N
from charmotion.nodes import host
from charmotion.nodes.handles import SPRITE_KEY
from node_fixtures import (  # noqa: F401 (fixtures)
    builtin_weights, env, one_thread, pool_vae,
)
from node_fixtures import BUILTIN, BUILTIN_CHANNELS, CODEC, SAMPLER, builtin, run, sprite_refs


def test_host_model_management_is_used_when_present(env, monkeypatch):
    """With ComfyUI's model manager the denoiser is wrapped in a ModelPatcher and loaded with load_models_gpu."""
    events = []

    class FakePatcher:
        def __init__(self, model, load_device, offload_device, size=0):
            self.model, self.size = model, size
            events.append(("patcher", type(model).__name__, size > 0))

    class FakePatcherModule:
        ModelPatcher = FakePatcher

    class FakeManagement:
        @staticmethod
        def load_models_gpu(models, memory_required=0, force_full_load=False):
            events.append(("load", len(models), force_full_load))

        @staticmethod
        def get_torch_device():
            return torch.device("cpu")

        unet_offload_device = intermediate_device = vae_device = vae_offload_device = get_torch_device

        @staticmethod
        def xformers_enabled():
            return False

        @staticmethod
        def throw_exception_if_processing_interrupted():
            events.append("check")

    monkeypatch.setattr(host, "model_patcher", FakePatcherModule)
    monkeypatch.setattr(host, "model_management", FakeManagement)
    model, _ = builtin(env)
    assert events[0] == ("patcher", "_Holder", True)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    refs = sprite_refs(run("CharMotionVAELoader", vae_name=CODEC, dtype="auto", tile_size=0)[0])
    run("CharMotionSampler", model=model, positive=cond, references=refs, **SAMPLER)
    assert ("load", 1, True) in events and events.count("check") == 2


def test_decode_video_needs_a_host_with_video(env, monkeypatch):
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    latent, = run("CharMotionSampler", model=model, positive=cond, references=sprite_refs(vae), **SAMPLER)
    monkeypatch.setattr(host, "VideoFromComponents", None)
    with pytest.raises(InvalidInputError, match="0.3.30"):
        run("CharMotionDecodeVideo", vae=vae, samples=latent)

    class Components:
        def __init__(self, images, frame_rate, audio=None):
            self.images, self.frame_rate, self.audio = images, frame_rate, audio

    class Video:
        def __init__(self, components):
            self.components = components

    monkeypatch.setattr(host, "VideoFromComponents", Video)
    monkeypatch.setattr(host, "VideoComponents", Components)
    video, = run("CharMotionDecodeVideo", vae=vae, samples=latent)
    assert video.components.images.shape == (4, 32, 32, 3) and float(video.components.frame_rate) == 8.0
    assert N["CharMotionDecodeVideo"]().decode(vae=vae, samples=latent)["ui"]["text"] == []  # even: nothing to say
    odd = dict(SAMPLER, width=33, height=33)  # an odd-sized sprite: core SaveVideo's H.264 needs even sizes
    refs = sprite_refs(vae, size=33)
    latent, = run("CharMotionSampler", model=model, positive=cond, references=refs, **odd)
    shown = N["CharMotionDecodeVideo"]().decode(vae=vae, samples=latent)
    frames = shown["result"][0].components.images
    assert frames.shape == (4, 34, 34, 3) and torch.equal(frames[:, 33], frames[:, 32])  # the edge repeated
    assert shown["ui"]["text"] == ["the video needs even sizes (H.264): padded 1 px right, 1 px bottom (edge "
                                   "pixels repeated)"]


def test_decode_rejects_foreign_latents_and_infers_frames(env):
    _, vae = builtin(env)
    with pytest.raises(InvalidInputError, match="video latents"):
        run("CharMotionVAEDecode", vae=vae, samples={"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(InvalidInputError, match="channels"):
        run("CharMotionVAEDecode", vae=vae, samples={"samples": torch.zeros(1, 4, 3, 8, 8)})
    with pytest.raises(InvalidInputError, match="carries no reference sprite"):
        run("CharMotionVAEDecode", vae=vae, samples={"samples": torch.zeros(1, BUILTIN_CHANNELS, 3, 8, 8)})
    refs = sprite_refs(vae)
    still = vae.codec.identity(refs.sprite)[None].expand(1, -1, 3, -1, -1)
    frames, fps, info = run("CharMotionVAEDecode", vae=vae, samples={"samples": still, SPRITE_KEY: refs.sprite})
    assert frames.shape == (3, 32, 32, 3) and fps == 8.0 and info.key_color is None
    expected = torch.from_numpy(refs.sprite.composited()).float() / 255  # no motion: the reference in every frame
    torch.testing.assert_close(frames, expected[None].expand(3, -1, -1, -1), atol=1 / 255, rtol=0)
    pool = pool_vae()
    frames, fps, _ = run("CharMotionVAEDecode", vae=pool, samples={"samples": torch.zeros(1, 4, 10, 2, 2)})
    assert frames.shape == (34, 16, 16, 3) and fps == 24.0  # 10 latents: two 17-frame chunks
    assert [infer_num_frames(OPENSORA_VAE_LAYOUT, n) for n in (1, 5, 7, 15)] == [1, 17, 25, 51]


def test_host_uses_comfyui_folders_and_save_paths(env, monkeypatch, tmp_path):
    """With ComfyUI's folder_paths: the pack's own model folder is registered, files listed, prefixes resolved."""
    calls = []

    class FakeFolderPaths:
        models_dir = str(tmp_path / "comfy_models")
        folder_names_and_paths = {"diffusion_models": ([str(tmp_path / "comfy_models" / "diffusion_models")],
                                                       {".safetensors"})}

        @staticmethod
        def get_filename_list(folder):
            return {"diffusion_models": ["a.safetensors"], "charmotion": ["b.safetensors"]}.get(folder, [])

        @staticmethod
        def get_full_path(folder, name):
            return f"/models/{folder}/{name}" if name == "b.safetensors" and folder == "charmotion" else None

        @staticmethod
        def get_folder_paths(folder):
            return [f"/models/{folder}"]

        @staticmethod
        def get_output_directory():
            return str(tmp_path / "comfy_out")

        @staticmethod
        def get_temp_directory():
            return str(tmp_path / "comfy_temp")

        @staticmethod
        def get_save_image_path(prefix, output_dir, width=0, height=0):
            calls.append((prefix, output_dir, width, height))
            if prefix.startswith(".."):
                raise Exception("**** ERROR: Saving image outside the output folder is not allowed."
                                f"\n full_output_folder: /elsewhere\n         output_dir: {output_dir}")  # ComfyUI's text
            return output_dir + "/sub", "name", 1, "sub", prefix

    monkeypatch.setattr(host, "folder_paths", FakeFolderPaths)
    host.register_model_folders()
    paths, extensions = FakeFolderPaths.folder_names_and_paths["charmotion"]
    assert paths == [str(tmp_path / "comfy_models" / "charmotion")] and ".safetensors" in extensions
    FakeFolderPaths.folder_names_and_paths["charmotion"] = (["/extra/charmotion"], set())  # extra_model_paths.yaml
    host.register_model_folders()
    paths, extensions = FakeFolderPaths.folder_names_and_paths["charmotion"]
    assert paths == ["/extra/charmotion", str(tmp_path / "comfy_models" / "charmotion")] and ".pt" in extensions
    models = N["CharMotionModelLoader"].INPUT_TYPES()["required"]["model_name"][0]
    assert models == [BUILTIN, "a.safetensors", "b.safetensors"]
    assert host.model_path(("diffusion_models", "charmotion"), "b.safetensors") == "/models/charmotion/b.safetensors"
    with pytest.raises(InvalidInputError, match="/models/diffusion_models or /models/charmotion"):
        host.model_path(("diffusion_models", "charmotion"), "c.safetensors")
    folder, name, subfolder = host.save_location("CharMotion/x", 64, 32)
    assert (str(folder), name, subfolder) == (str(tmp_path / "comfy_out") + "/sub", "name", "sub")
    assert calls == [("CharMotion/x", str(tmp_path / "comfy_out"), 64, 32)]
    host.save_location("CharMotion\\x")  # a backslash is a sub-folder, as the writers read it, on every system
    assert calls[-1][0] == "CharMotion/x"
    for empty in ("", "  "):
        with pytest.raises(InvalidInputError, match="filename prefix is empty: give a name"):
            host.save_location(empty)
    with pytest.raises(InvalidInputError) as refused:
        host.save_location("../x")
    assert str(refused.value) == ("filename prefix '../x' cannot be used: Saving image outside the output folder is "
                                  "not allowed. Use a name, optionally inside sub-folders of the output folder "
                                  "(e.g. 'charmotion/walk').")
