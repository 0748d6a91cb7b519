"""The loader, text and reference nodes run on tiny inputs: the built-in model (random weights), Open-Sora's
STDiT3 (golden weights)."""

from __future__ import annotations

import logging

import pytest
import torch

from charmotion.dit_core.attention import AttentionBackendError
from charmotion.dit_core.checkpoint import CheckpointError
from charmotion.dit_core.errors import InvalidInputError
from charmotion.nodes import NODE_CLASS_MAPPINGS as N
from charmotion.nodes.handles import MotionControl
from charmotion.nodes.text import LOOP_KEY, PROMPT_KEY, conditioning_segments, truncate_tokens
from node_fixtures import (  # noqa: F401 (fixtures)
    FakeT5Clip, FakeT5ClipLegacy, builtin_weights, env, one_thread, opensora_file, pool_vae,
)
from node_fixtures import BUILTIN, BUILTIN_CHANNELS, CODEC, builtin, run


# ----------------------------------------------------------------------------- loaders


def test_builtin_loaders(env):
    model, vae = builtin(env)
    assert model.family == "builtin" and model.dtype == torch.float32 and model.attention == "sdpa"
    assert model.default_size == (64, 64) and model.motion_range == (0.0, 10.0)
    assert model.caption_length == 32 and model.caption_channels == 64 and model.latent_channels == BUILTIN_CHANNELS
    assert vae.latent_channels == BUILTIN_CHANNELS and vae.codec.config.grid == 16  # the shipped file's field
    vae.check_model(model)
    legacy, = run("CharMotionModelLoader", model_name="CharMotion tiny (built-in)", dtype="auto", attention="auto")
    assert legacy.family == "builtin" and legacy.name == BUILTIN  # workflows saved by earlier versions still load
    assert N["CharMotionModelLoader"].VALIDATE_INPUTS(model_name="CharMotion tiny (built-in)") is True
    assert "not in the list" in N["CharMotionModelLoader"].VALIDATE_INPUTS(model_name="nothing.safetensors")


def test_opensora_loader_and_errors(env, opensora_file):
    model, = run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="sdpa")
    assert model.family == "opensora12" and model.default_size == (240, 426)
    assert model.caption_length == 8 and model.caption_channels == 32 and model.latent_channels == 4
    assert model.profile.steps == 30 and model.profile.cfg_scale == 7.0
    with pytest.raises(InvalidInputError, match="does not fit"):
        run("CharMotionVAELoader", vae_name=CODEC, dtype="auto", tile_size=0)[0].check_model(model)
    with pytest.raises(AttentionBackendError, match="CUDA"):
        run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="xformers")
    with pytest.raises(InvalidInputError, match="was not found: put it in .*diffusion_models"):
        run("CharMotionModelLoader", model_name="missing.safetensors", dtype="auto", attention="auto")
    from safetensors.torch import save_file

    save_file({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(2, 2), "shared.weight": torch.zeros(2, 2),
               "encoder.final_layer_norm.weight": torch.zeros(2)}, str(env["models"] / "diffusion_models" / "t5.safetensors"))
    with pytest.raises(CheckpointError, match="T5 text encoder.*OpenSora-STDiT-v3"):
        run("CharMotionModelLoader", model_name="t5.safetensors", dtype="auto", attention="auto")


def test_opensora_vae_loader_and_decode(env):
    """Open-Sora VAE v1.2 (golden tiny weights, config.json beside the file) through the loader and decode nodes."""
    pytest.importorskip("charmotion.dit_core.vae")
    import json
    import shutil

    from golden_data import golden_cases, golden_dir, load_case_tensors

    case = next(p.values[0] for p in golden_cases("vae_pipeline") if p.values[0]["num_frames"] == 17)
    folder = env["models"] / "vae" / "OpenSora-VAE-v1.2"
    folder.mkdir()
    shutil.copyfile(golden_dir() / case["weights"], folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(
        {k: case[k] for k in ("spatial_config", "temporal_config", "micro_frame_size", "shift", "scale")}))
    vae, = run("CharMotionVAELoader", vae_name="OpenSora-VAE-v1.2/model.safetensors", dtype="fp32", tile_size=0)
    tensors = load_case_tensors(case)
    assert vae.family == "opensora12" and vae.latent_channels == 4
    assert vae.codec.spatial_factor == tensors["x"].shape[-1] // tensors["z"].shape[-1]
    assert (vae.layout.frames_per_chunk, vae.layout.temporal_factor) == (17, 4)
    torch.testing.assert_close(vae.encode(tensors["x"]), tensors["z"], atol=case["tolerance"], rtol=0)
    frames, fps, _ = run("CharMotionVAEDecode", vae=vae, samples={"samples": tensors["z"]})
    expected = ((tensors["decoded"].clamp(-1, 1) + 1) / 2)[0].permute(1, 2, 3, 0)
    assert frames.shape == expected.shape and fps == 24.0
    torch.testing.assert_close(frames, expected, atol=case["tolerance"], rtol=0)


# ----------------------------------------------------------------------------- text


def test_text_encode_builtin_decorates_cleans_and_splits_loops(env, caplog):
    model, _ = builtin(env)
    motion, = run("CharMotionMotionControl", use_motion=True, motion_strength=7.0, use_aesthetic=False,
                  aesthetic=6.5, camera_motion="pan left")
    shown = N["CharMotionTextEncode"]().encode(model=model, text="The Knight WALKS!", motion=motion)
    cond, = shown["result"]
    assert len(cond) == 1
    features, extras = cond[0]
    assert features.shape == (1, 32, 64) and features.device.type == "cpu"
    assert extras[PROMPT_KEY] == "the knight walks! motion score: 7.0."  # no camera phrase: it never saw one
    assert shown["ui"]["text"] == ["CharMotion built-in knows no camera motion: 'pan left' is left out of the prompt"]
    assert extras["pooled_output"] is None and extras[LOOP_KEY] == 0
    direct = model.text_encoder.encode_text(extras[PROMPT_KEY], clean=False)
    valid = int(direct.mask.sum())
    assert extras["attention_mask"].tolist() == [[1] * valid + [0] * (32 - valid)]
    torch.testing.assert_close(features[:, :valid], direct.y[0, :, :valid])
    assert [r.getMessage() for r in caplog.records] == [f"CharMotion Text Encode: {shown['ui']['text'][0]}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="CharMotion"):
        cond, = run("CharMotionTextEncode", model=model, text="|0|the slime hops|2|the slime melts")
    assert [(c[1][LOOP_KEY], c[1][PROMPT_KEY]) for c in cond] == [(0, "the slime hops"), (2, "the slime melts")]
    # "melts" is no word the built-in model learned: the user is told, once, for that segment only
    assert [r.getMessage() for r in caplog.records] == [
        f"CharMotion Text Encode: {model.text_encoder.prompt_note('the slime melts')}"]
    node = N["CharMotionTextEncode"]()  # and under the node in the editor; a prompt with known actions says nothing
    shown = node.encode(model=model, text="|0|the slime hops|2|the slime melts")
    assert shown["ui"] == {"text": [model.text_encoder.prompt_note("the slime melts")]}
    assert [c[1][PROMPT_KEY] for c in shown["result"][0]] == ["the slime hops", "the slime melts"]
    assert node.encode(model=model, text="the slime hops")["ui"] == {"text": []}  # clears an earlier note
    with pytest.raises(InvalidInputError, match="0-10"):
        run("CharMotionTextEncode", model=model, text="walk", motion=MotionControl(motion=50.0))
    with pytest.raises(InvalidInputError, match="empty"):
        run("CharMotionTextEncode", model=model, text="   ")
    with pytest.raises(InvalidInputError, match="^the prompt '骑士跳跃' is empty after cleaning: use plain words$"):
        run("CharMotionTextEncode", model=model, text="|0|walk|1|骑士跳跃")  # the command line says the same


def test_text_encode_t5_truncates_like_upstream_and_pads_with_a_mask(env, opensora_file):
    model, = run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="sdpa")
    clip = FakeT5Clip(dim=32)
    words = " ".join(f"w{i}" for i in range(20))
    cond, = run("CharMotionTextEncode", model=model, text=words, clip=clip)
    assert len(clip.seen[-1]) == 8 and clip.seen[-1][-1] == FakeT5Clip.END  # 7 words + end, cut before encoding
    expected = clip.encode_from_tokens(truncate_tokens(clip.tokenize(words.lower()), 8))
    torch.testing.assert_close(cond[0][0], expected)
    assert cond[0][1]["attention_mask"].tolist() == [[1] * 8]
    cond, = run("CharMotionTextEncode", model=model, text="a knight", clip=clip,
                motion=MotionControl(motion=5.0, aesthetic=6.5))
    assert cond[0][1][PROMPT_KEY] == "a knight aesthetic score: 6.5. motion score: 5.0."
    n = len(clip.seen[-1])
    assert n == 8  # 7 words of the decorated prompt + end
    # a padded CLIP type: the end token is kept, pads cut, its attention mask is the valid-token mask
    padded = FakeT5Clip(dim=32, min_length=16, with_mask=True)
    cond, = run("CharMotionTextEncode", model=model, text="a knight", clip=padded)
    assert padded.seen[-1][:3][-1] == FakeT5Clip.END and len(padded.seen[-1]) == 8
    assert cond[0][1]["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert cond[0][0].shape == (1, 8, 32)
    legacy = FakeT5ClipLegacy(dim=32)
    cond_legacy, = run("CharMotionTextEncode", model=model, text="a knight", clip=legacy)
    torch.testing.assert_close(cond_legacy[0][0], run("CharMotionTextEncode", model=model, text="a knight",
                                                      clip=FakeT5Clip(dim=32))[0][0][0])
    with pytest.raises(InvalidInputError, match="CLIPLoader"):
        run("CharMotionTextEncode", model=model, text="a knight")
    with pytest.raises(InvalidInputError, match="64-wide text features but the model takes 32"):
        run("CharMotionTextEncode", model=model, text="a knight", clip=FakeT5Clip(dim=64))


def test_truncate_tokens_keeps_the_end_token():
    batch = [(i, 1.0) for i in range(2, 12)] + [(1, 1.0)]
    assert [t[0] for t in truncate_tokens({"t5xxl": [batch]}, 5)["t5xxl"][0]] == [2, 3, 4, 5, 1]
    padded = [(5, 1.0), (1, 1.0)] + [(0, 1.0)] * 6
    assert [t[0] for t in truncate_tokens({"t5xxl": [padded]}, 4)["t5xxl"][0]] == [5, 1, 0, 0]
    short = {"t5xxl": [[(5, 1.0), (1, 1.0)]], "l": [[(1, 1.0)] * 3, [(1, 1.0)] * 3]}
    assert truncate_tokens(short, 4) == short


def test_core_clip_text_encode_conditioning_is_accepted(env, opensora_file):
    model, = run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="sdpa")
    features = torch.randn(1, 5, 32)
    segments = conditioning_segments([[features, {"pooled_output": None}]], model)
    (start, cond), = segments
    assert start == 0 and cond.y.shape == (1, 1, 8, 32) and cond.mask.tolist() == [[1] * 5 + [0] * 3]
    torch.testing.assert_close(cond.y[0, 0, :5], features[0])
    masked = conditioning_segments([[torch.randn(1, 12, 32), {"attention_mask": torch.tensor([[1] * 4 + [0] * 8])}]],
                                   model)[0][1]
    assert masked.mask.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]
    with pytest.raises(InvalidInputError, match="CONDITIONING"):
        conditioning_segments([["not a tensor", {}]], model)


# ----------------------------------------------------------------------------- references


def test_sample_sprite_and_reference_encode(env):
    model, vae = builtin(env)
    shown = N["CharMotionSampleSprite"]().load(sample="knight.png")
    image, mask = shown["result"]
    assert image.shape == (1, 64, 64, 3) and mask.shape == (1, 64, 64)
    (entry,) = shown["ui"]["images"]  # the sprite is shown in the node, from the temp folder the editor serves
    assert entry == {"filename": "knight.png", "subfolder": "CharMotion/samples", "type": "temp"}
    assert (env["root"] / "temp" / "CharMotion" / "samples" / "knight.png").read_bytes() == \
        (env["samples"] / "knight.png").read_bytes()
    assert float(mask[0, 0, 0]) == 1.0 and float(mask[0, 32, 30]) == 0.0  # LoadImage's convention
    assert N["CharMotionSampleSprite"].VALIDATE_INPUTS(sample="nope.png").startswith("sample sprite")
    refs, shown = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="image", width=8, height=8,
                      fit="crop", pixel_art=False, background="auto", frames="0, -1", strength=0.8, mask=mask)
    assert (refs.height, refs.width) == (64, 64) and len(refs.references) == 2  # image: the image's own size
    assert refs.had_alpha and refs.key_color == (255, 0, 255)
    assert [r.frame for r in refs.references] == [0, -1] and refs.references[0].strength == 0.8
    grid = vae.codec.config.grid
    assert refs.references[0].latents.shape == (BUILTIN_CHANNELS, 1, grid, grid)
    # the same image at both ends: the identity (no motion, its own occupancy) of the sprite whose pixels move
    for reference in refs.references:
        torch.testing.assert_close(reference.latents, vae.codec.identity(refs.sprite), atol=0, rtol=0)
    assert float(refs.references[0].latents[:2].abs().max()) == 0.0
    assert refs.context.shape == (1, vae.codec.config.appearance_channels, 1, grid, grid)
    assert shown.shape == (2, 64, 64, 3)
    assert torch.allclose(shown[0, 0, 0], torch.tensor([1.0, 0.0, 1.0]))  # composited on the key colour
    # another pose chained on: its field moves the first image's pixels into it (the custom size is ignored: a
    # chained set keeps the first set's size)
    moved_image, moved_mask = image.roll(3, dims=2), mask.roll(3, dims=2)
    more, _ = run("CharMotionReferenceEncode", vae=vae, image=moved_image, resolution="custom", width=128,
                  height=128, fit="pad", pixel_art=False, background="auto", frames="8", strength=1.0,
                  references=refs, mask=moved_mask)
    assert len(more.references) == 3 and (more.height, more.width) == (64, 64) and more.sprite is refs.sprite
    redrawn = vae.codec.warp(more.references[2].latents[None], refs.sprite)[0, :, 0]
    target = torch.cat([moved_image[0].permute(2, 0, 1) * (1 - moved_mask), 1 - moved_mask])
    before = (refs.sprite.rgba - target).abs().mean()
    assert (redrawn - target).abs().mean() < 0.35 * before  # the fitted field moves the sprite toward the pose
    # auto: this tightly placed sprite (7/8 of its canvas tall, feet on the bottom edge) gets transparent room
    grown, shown = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="auto", width=8, height=8,
                       fit="crop", pixel_art=False, background="auto", frames="0", strength=1.0, mask=mask)
    top, bottom, left, right = grown.sprite.margins
    assert (grown.height, grown.width) == (96, 94) == (64 + top + bottom, 64 + left + right)
    assert top > bottom > 0  # the most room above: a jump must not leave the canvas
    assert shown.shape == (1, 96, 94, 3) and "grew from 64x64 to 94x96" in " ".join(grown.notes)
    assert torch.equal(grown.sprite.rgba[:, top:top + 64, left:left + 64], refs.sprite.rgba)  # the same pixels
    assert float(grown.sprite.rgba[3].sum()) == float(refs.sprite.rgba[3].sum())  # and nothing else
    # a pose chained on gets the same room
    posed, _ = run("CharMotionReferenceEncode", vae=vae, image=moved_image, resolution="auto", width=8, height=8,
                   fit="pad", pixel_art=False, background="auto", frames="-1", strength=1.0, references=grown,
                   mask=moved_mask)
    assert (posed.height, posed.width) == (96, 94) and posed.sprite is grown.sprite
    two = torch.cat([image, image.flip(2)])
    refs2, _ = run("CharMotionReferenceEncode", vae=vae, image=two, resolution="custom", width=48, height=32,
                   fit="stretch", pixel_art=False, background="auto", frames="0;-1", strength=1.0)
    assert (refs2.height, refs2.width) == (32, 48) and not refs2.had_alpha
    with pytest.raises(InvalidInputError, match="one position per image"):
        run("CharMotionReferenceEncode", vae=vae, image=two, resolution="auto", width=8, height=8, fit="crop",
            pixel_art=False, background="auto", frames="0", strength=1.0)


def test_reference_buckets_for_opensora(env):
    vae = pool_vae()
    image = torch.rand(1, 300, 200, 3)  # portrait
    refs, shown = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="auto", width=8, height=8,
                      fit="crop", pixel_art=False, background="auto", frames="0", strength=1.0)
    assert (refs.height, refs.width) == (392, 262) and shown.shape == (1, 392, 262, 3)  # 240p, H/W 1.5
    assert refs.references[0].latents.shape == (4, 1, 49, 32)
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="144p", width=8, height=8,
                  fit="pad", pixel_art=False, background="auto", frames="0", strength=1.0)
    assert (refs.height, refs.width) == (235, 156)
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="image", width=8, height=8,
                  fit="pad", pixel_art=False, background="auto", frames="0", strength=1.0)
    assert (refs.height, refs.width) == (300, 200)  # the image's own size


def test_an_image_too_small_for_the_vae_is_named_as_the_image(env):
    tiny = torch.rand(1, 7, 9, 3)
    args = dict(width=8, height=8, fit="pad", pixel_art=False, background="auto", frames="0", strength=1.0)
    with pytest.raises(InvalidInputError, match=r"^the image \(9x7\) is too small for .*: use at least 8x8 pixels"):
        run("CharMotionReferenceEncode", vae=pool_vae(), image=tiny, resolution="image", **args)
    with pytest.raises(InvalidInputError, match=r"^custom size 4x6 is too small for "):
        run("CharMotionReferenceEncode", vae=pool_vae(), image=tiny, resolution="custom", **{**args, "width": 4,
                                                                                          "height": 6})
    _, vae = builtin(env)  # the warp decoder draws any size, as "auto" does
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=tiny, resolution="image", **args)
    assert (refs.height, refs.width) == (7, 9)
