"""Each node run on tiny inputs: the built-in model (random weights), Open-Sora's STDiT3 (golden weights)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from charmotion.dit_core.attention import AttentionBackendError
from charmotion.dit_core.checkpoint import CheckpointError
from charmotion.dit_core.errors import InvalidInputError
from charmotion.dit_core.conditioning import OPENSORA_VAE_LAYOUT
from charmotion.dit_core.pipeline import generate, infer_num_frames
from charmotion.nodes import NODE_CLASS_MAPPINGS as N
from charmotion.nodes import host
from charmotion.nodes.handles import LATENT_KEY, SPRITE_KEY, ClipInfo, LoopControl, MotionControl
from charmotion.nodes.text import LOOP_KEY, PROMPT_KEY, conditioning_segments, truncate_tokens
from node_fixtures import (  # noqa: F401 (fixtures)
    FakeT5Clip, FakeT5ClipLegacy, builtin_weights, env, one_thread, opensora_file, pool_vae, sprite_rgba,
)

BUILTIN_CHANNELS = 3  # displacement x, y and occupancy

BUILTIN = "CharMotion built-in"
CODEC = "CharMotion built-in warp decoder"


def run(name, **kwargs):
    cls = N[name]
    return getattr(cls(), cls.FUNCTION)(**kwargs)


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
    cond, = run("CharMotionTextEncode", model=model, text="The Knight WALKS!", motion=motion)
    assert len(cond) == 1
    features, extras = cond[0]
    assert features.shape == (1, 32, 64) and features.device.type == "cpu"
    assert extras[PROMPT_KEY] == "the knight walks! motion score: 7.0. camera motion: pan left."
    assert extras["pooled_output"] is None and extras[LOOP_KEY] == 0
    direct = model.text_encoder.encode_text(extras[PROMPT_KEY], clean=False)
    valid = int(direct.mask.sum())
    assert extras["attention_mask"].tolist() == [[1] * valid + [0] * (32 - valid)]
    torch.testing.assert_close(features[:, :valid], direct.y[0, :, :valid])
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="CharMotion"):
        cond, = run("CharMotionTextEncode", model=model, text="|0|the slime hops|2|the slime melts")
    assert [(c[1][LOOP_KEY], c[1][PROMPT_KEY]) for c in cond] == [(0, "the slime hops"), (2, "the slime melts")]
    # "melts" is no word the built-in model learned: the user is told, once, for that segment only
    assert [r.getMessage() for r in caplog.records] == [
        f"CharMotion Text Encode: {model.text_encoder.prompt_note('the slime melts')}"]
    with pytest.raises(InvalidInputError, match="0-10"):
        run("CharMotionTextEncode", model=model, text="walk", motion=MotionControl(motion=50.0))
    with pytest.raises(InvalidInputError, match="empty"):
        run("CharMotionTextEncode", model=model, text="   ")


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
    image, mask = run("CharMotionSampleSprite", sample="knight.png")
    assert image.shape == (1, 64, 64, 3) and mask.shape == (1, 64, 64)
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
    assert (grown.height, grown.width) == (95, 94) == (64 + top + bottom, 64 + left + right)
    assert top > bottom > 0  # the most room above: a jump must not leave the canvas
    assert shown.shape == (1, 95, 94, 3) and "grew from 64x64 to 94x95" in " ".join(grown.notes)
    assert torch.equal(grown.sprite.rgba[:, top:top + 64, left:left + 64], refs.sprite.rgba)  # the same pixels
    assert float(grown.sprite.rgba[3].sum()) == float(refs.sprite.rgba[3].sum())  # and nothing else
    # a pose chained on gets the same room
    posed, _ = run("CharMotionReferenceEncode", vae=vae, image=moved_image, resolution="auto", width=8, height=8,
                   fit="pad", pixel_art=False, background="auto", frames="-1", strength=1.0, references=grown,
                   mask=moved_mask)
    assert (posed.height, posed.width) == (95, 94) and posed.sprite is grown.sprite
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


# ----------------------------------------------------------------------------- sampler


def test_sampler_is_generate(env):
    """The node adds nothing to the numbers: same result as calling dit_core.generate directly."""
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    refs = sprite_refs(vae)
    latent, = run("CharMotionSampler", model=model, positive=cond, vae=vae, references=refs, **SAMPLER)
    samples, info = latent["samples"], latent[LATENT_KEY]
    grid = vae.codec.config.grid
    assert samples.shape == (1, BUILTIN_CHANNELS, 4, grid, grid) and samples.device.type == "cpu"
    assert latent[SPRITE_KEY] is refs.sprite  # what VAE Decode moves
    assert info["num_frames"] == 4 and info["total_frames"] == 4 and info["fps"] == 8.0 and info["seed"] == 3
    assert info["denoise"] == 0.7 and (info["height"], info["width"]) == (32, 32)
    assert info["key_color"] == [255, 0, 255] and info["had_alpha"] is True
    assert info["prompts"] == {"0": "the knight jumps"}
    text = conditioning_segments(cond, model)[0][1]
    direct = generate(model.model, text, references=refs.references, context=refs.context, num_frames=4, height=32,
                      width=32, fps=8.0, seed=3, steps=2, cfg_scale=4.0, denoise=0.7, profile=model.profile,
                      decode=False)
    torch.testing.assert_close(samples, direct.latents)
    again, = run("CharMotionSampler", model=model, positive=cond, vae=vae, references=refs, **SAMPLER)
    torch.testing.assert_close(again["samples"], samples)  # same seed, same clip
    other, = run("CharMotionSampler", model=model, positive=cond, vae=vae, references=refs, **{**SAMPLER, "seed": 4})
    assert not torch.allclose(other["samples"], samples)
    # the reference frame is kept exactly (strength 1)
    torch.testing.assert_close(samples[0, :, 0], refs.references[0].latents[:, 0])


def test_sampler_size_rules(env):
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    refs = sprite_refs(vae)
    with pytest.raises(InvalidInputError, match="set width and height to 0"):
        run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLER, "width": 40})
    with pytest.raises(InvalidInputError, match="set both width and height"):
        run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLER, "width": 0})
    latent, = run("CharMotionSampler", model=model, positive=cond, references=refs,
                  **{**SAMPLER, "width": 0, "height": 0})
    assert latent[LATENT_KEY]["width"] == 32 and latent["samples"].shape[-1] == vae.codec.config.grid
    with pytest.raises(InvalidInputError, match="moves the pixels of a reference image"):
        run("CharMotionSampler", model=model, positive=cond, **SAMPLER)
    with pytest.raises(InvalidInputError, match="cannot make a clip of 100 frames"):
        run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLER, "frames": 100})


def test_negative_prompt_changes_the_clip(env):
    model, vae = builtin(env)
    refs = sprite_refs(vae)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    neg, = run("CharMotionTextEncode", model=model, text="blurry")
    plain, = run("CharMotionSampler", model=model, positive=cond, references=refs, **SAMPLER)
    with_neg, = run("CharMotionSampler", model=model, positive=cond, negative=neg, references=refs, **SAMPLER)
    assert not torch.allclose(plain["samples"], with_neg["samples"])


def test_opensora_image_to_video_through_the_nodes(env, opensora_file):
    """Open-Sora path: T5 conditioning, a reference at the first and last frame (snapped to chunk starts), CFG."""
    model, = run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="auto")
    vae = pool_vae()
    motion, = run("CharMotionMotionControl", use_motion=True, motion_strength=5.0, use_aesthetic=True,
                  aesthetic=6.5, camera_motion="none")
    cond, = run("CharMotionTextEncode", model=model, text="a knight swings his sword", clip=FakeT5Clip(dim=32),
                motion=motion)
    image = torch.rand(1, 40, 60, 3)
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="custom", width=64, height=48,
                  fit="crop", pixel_art=False, background="auto", frames="0, -1", strength=1.0)
    latent, = run("CharMotionSampler", model=model, positive=cond, vae=vae, references=refs,
                  seed=1024, steps=2, cfg=7.0, frames=34, width=0, height=0, fps=24.0)
    samples = latent["samples"]
    assert samples.shape == (1, 4, 10, 6, 8)  # 34 frames -> 10 latent frames, 48x64 -> 6x8
    torch.testing.assert_close(samples[0, :, 0], refs.references[0].latents[:, 0])
    torch.testing.assert_close(samples[0, :, 5], refs.references[1].latents[:, 0])  # -1 snaps to the last chunk
    assert latent[LATENT_KEY]["family"] == "opensora12" and latent[LATENT_KEY]["fps"] == 24.0
    frames, fps, info = run("CharMotionVAEDecode", vae=vae, samples=latent)
    assert frames.shape == (34, 48, 64, 3) and fps == 24.0
    assert info.key_color is None and not info.had_alpha  # a noise image has no flat background to key out


@pytest.mark.parametrize("family", ["builtin", "opensora12"])
def test_looped_clip_decodes_like_generate(env, opensora_file, family):
    """Per-loop decoding of the joined latents gives exactly the frames generate() keeps."""
    refs = codec = context = None
    if family == "builtin":
        model, vae = builtin(env)
        cond, = run("CharMotionTextEncode", model=model, text="|0|walk|1|jump")
        frames, size, cfl = 5, 32, 2
        refs = sprite_refs(vae)
        codec, context = vae.codec.bind(refs.sprite), refs.context
    else:
        model, = run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="sdpa")
        vae = pool_vae()
        clip = FakeT5Clip(dim=32)
        cond, = run("CharMotionTextEncode", model=model, text="|0|walk|1|jump", clip=clip)
        frames, size, cfl = 35, 64, 5  # 35 frames: not a whole number of 17-frame chunks
    loop = run("CharMotionLoopControl", loops=3, condition_frames=cfl, seamless=False, condition_edit=0.0)[0]
    params = dict(seed=11, steps=2, cfg=3.0, frames=frames, width=size, height=size, fps=8.0, denoise=0.6)
    latent, = run("CharMotionSampler", model=model, positive=cond, vae=vae, loop=loop, references=refs, **params)
    decoded, fps, info = run("CharMotionVAEDecode", vae=vae, samples=latent)
    segments = conditioning_segments(cond, model)
    direct = generate(model.model, [segments[0][1], segments[1][1], segments[1][1]], codec=codec or vae.codec,
                      references=refs.references if refs else (), context=context, num_frames=frames,
                      height=size, width=size, fps=8.0, seed=11, steps=2, cfg_scale=3.0, denoise=0.6,
                      loop=LoopControl(loops=3, condition_frames=cfl), profile=model.profile)
    expected = ((direct.video.clamp(-1, 1) + 1) / 2)[0].permute(1, 2, 3, 0)
    assert decoded.shape == (direct.num_frames, size, size, 3)
    assert latent[LATENT_KEY]["total_frames"] == direct.num_frames
    torch.testing.assert_close(decoded, expected)
    assert fps == 8.0 and isinstance(info, ClipInfo) and info.metadata["loops"] == 3


def test_seamless_and_default_condition_frames(env):
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    loop, = run("CharMotionLoopControl", loops=2, condition_frames=0, seamless=True, condition_edit=0.0)
    refs = sprite_refs(vae)
    latent, = run("CharMotionSampler", model=model, positive=cond, loop=loop, references=refs,
                  **{**SAMPLER, "frames": 6})  # the built-in model continues from its latents: no VAE needed
    info = latent[LATENT_KEY]
    assert info["condition_frames"] == 4  # the built-in model's default
    assert info["total_frames"] == 6 + (6 - 4) and latent["samples"].shape[2] == 8 and info["seamless"]
    frames, _, _ = run("CharMotionVAEDecode", vae=vae, samples=latent)
    assert frames.shape[0] == 8
    torch.testing.assert_close(frames[0], frames[-1] * 0 + frames[0])
    first = vae.codec.warp(latent["samples"][:, :, :1], refs.sprite)
    torch.testing.assert_close(first, refs.sprite.rgba[None, :, None])  # frame 0 is the reference exactly


def test_a_grown_canvas_goes_through_sampler_and_decode(env):
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    image, mask = sprite_image(32)  # placed tightly: auto gives it room
    refs, shown = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="auto", width=8, height=8,
                      fit="crop", pixel_art=False, background="auto", frames="0", strength=1.0, mask=mask)
    assert (refs.height, refs.width) == (48, 48) and any("room to move" in n for n in refs.notes)
    latent, = run("CharMotionSampler", model=model, positive=cond, references=refs,
                  **{**SAMPLER, "width": 0, "height": 0})  # 0: the references' (grown) size
    frames, _, _ = run("CharMotionVAEDecode", vae=vae, samples=latent)
    assert frames.shape == (4, 48, 48, 3)
    torch.testing.assert_close(frames[0], shown[0])  # frame 0 is the prepared reference, margins included
    with pytest.raises(InvalidInputError, match="prepared at 48x48"):
        run("CharMotionSampler", model=model, positive=cond, references=refs, **SAMPLER)  # set to the image's 32x32


class Interrupted(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


def test_cancel_stops_within_one_step(env, monkeypatch):
    model, _ = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    calls = {"checks": 0, "forwards": 0}

    def interrupt_after_two():
        calls["checks"] += 1
        if calls["checks"] == 3:
            raise Interrupted()

    forward = model.model.forward

    def counting_forward(*args, **kwargs):
        calls["forwards"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(host, "throw_if_interrupted", interrupt_after_two)
    monkeypatch.setattr(model.model, "forward", counting_forward)
    refs = sprite_refs(run("CharMotionVAELoader", vae_name=CODEC, dtype="auto", tile_size=0)[0])
    with pytest.raises(Interrupted):
        run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLER, "steps": 10})
    assert calls == {"checks": 3, "forwards": 2}  # the user pressed cancel during step 2: step 3 never ran


class RecordingProgress:
    made: list = []

    def __init__(self, total, description=""):
        self.total, self.updates, self.previews = total, [], []
        RecordingProgress.made.append(self)

    wants_previews = True

    def update(self, value, preview=None):
        self.updates.append(value)
        self.previews.append(preview)

    def close(self):
        pass


def test_progress_with_previews_counts_every_step(env, monkeypatch):
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="walk")
    RecordingProgress.made = []
    monkeypatch.setattr(host, "Progress", RecordingProgress)
    loop = LoopControl(loops=2, condition_frames=1)
    latent, = run("CharMotionSampler", model=model, positive=cond, vae=vae, loop=loop, references=sprite_refs(vae),
                  **{**SAMPLER, "steps": 3})
    bar = RecordingProgress.made[0]
    assert bar.total == 6 and bar.updates == [1, 2, 3, 4, 5, 6]
    assert all(p is not None and p.size == (32, 32) for p in bar.previews)
    frames, _, _ = run("CharMotionVAEDecode", vae=vae, samples=latent)
    decode_bar = RecordingProgress.made[1]
    assert decode_bar.total == frames.shape[0] == 4 + 3 and decode_bar.updates[-1] == 7


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
                raise Exception("Saving image outside the output folder is not allowed.")
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
    with pytest.raises(InvalidInputError, match="cannot be used: Saving image outside"):
        host.save_location("../x")


def test_palette_lock_keeps_the_reference_colours_and_the_key(env):
    image, mask = run("CharMotionSampleSprite", sample="knight.png")
    colours = {(40, 60, 200), (240, 200, 160), (30, 30, 30)}  # the sprite's opaque colours (node_fixtures)
    noisy = (image.repeat(3, 1, 1, 1) + 0.04 * torch.randn(3, 64, 64, 3, generator=torch.Generator().manual_seed(0)))
    clip = ClipInfo(fps=8.0, key_color=(255, 0, 255))
    (locked,) = run("CharMotionPaletteLock", frames=noisy.clamp(0, 1), reference=image, colors=256, mask=mask,
                    clip_info=clip)
    assert locked.shape == (3, 64, 64, 3) and locked.dtype == torch.float32
    found = {tuple(v) for v in (locked * 255).round().to(torch.uint8).reshape(-1, 3).tolist()}
    assert found <= colours | {(255, 0, 255)}
    assert torch.equal((locked[:, 32, 30] * 255).round(), torch.tensor([[40.0, 60, 200]] * 3))  # the body
    # without the mask the colours under the transparent pixels (black here) join the palette
    (unmasked,) = run("CharMotionPaletteLock", frames=image, reference=image, colors=256)
    assert torch.equal(unmasked, image)
    with pytest.raises(InvalidInputError, match="connect the MASK that came with the reference"):
        run("CharMotionPaletteLock", frames=image, reference=image, colors=256, mask=mask[:, :32])
    with pytest.raises(InvalidInputError, match="connect the MASK that came with the reference"):
        run("CharMotionPaletteLock", frames=image, reference=image.repeat(2, 1, 1, 1), colors=256,
            mask=mask.repeat(3, 1, 1))
    with pytest.raises(InvalidInputError, match="frames must be an IMAGE batch"):
        run("CharMotionPaletteLock", frames=image[0], reference=image, colors=256)
