"""The sampler and decode nodes run on tiny inputs: same numbers as ``generate()``, loops, seamless clips,
cancel, progress, a grown canvas, palette lock."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charmotion.dit_core.errors import InvalidInputError
from charmotion.dit_core.pipeline import generate
from charmotion.nodes import NODE_CLASS_MAPPINGS as N
from charmotion.nodes import host
from charmotion.nodes.handles import LATENT_KEY, SPRITE_KEY, ClipInfo, LoopControl
from charmotion.nodes.text import conditioning_segments
from node_fixtures import (  # noqa: F401 (fixtures)
    FakeT5Clip, builtin_weights, env, one_thread, opensora_file, pool_vae,
)
from node_fixtures import BUILTIN_CHANNELS, CODEC, SAMPLER, builtin, run, sprite_image, sprite_refs


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
    said = r"cannot make a clip of 100 frames: use 1 \(an image\) or 2 and more frames \(trained on 16\); at most 64"
    with pytest.raises(InvalidInputError, match=said):
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
    # what the run notes is shown under the node in the editor too
    shown = N["CharMotionSampler"]().sample(model=model, positive=cond, seed=1, steps=1, cfg=7.0, frames=17, width=60,
                                           height=48, fps=24.0)
    assert shown["result"][0]["samples"].shape[-2:] == (6, 7)  # 60 pixels -> 7 latent columns (56 pixels)
    assert shown["ui"]["text"] == shown["result"][0][LATENT_KEY]["notes"]
    assert any("rounded down" in note for note in shown["ui"]["text"])
    late, = run("CharMotionTextEncode", model=model, text="|0|a knight walks|3|a knight jumps", clip=FakeT5Clip(dim=32))
    shown = N["CharMotionSampler"]().sample(model=model, positive=late, seed=1, steps=1, cfg=7.0, frames=17, width=64,
                                           height=48, fps=24.0)
    assert any("text for loop 3 is never used: the clip has 1 loop (loop 0)" in note for note in shown["ui"]["text"])


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
    if family == "builtin":  # the clip's opacity, frame for frame: laid over the key it gives the decoded frames
        assert info.alpha.shape == decoded.shape[:3]
        key = torch.tensor(info.key_color) / 255.0
        rgba = codec.rgba_frames(direct.latents, direct.num_frames)  # straight colours and opacity
        relaid = rgba[..., :3] * rgba[..., 3:] + key * (1.0 - rgba[..., 3:])
        torch.testing.assert_close(info.alpha.float(), rgba[..., 3], atol=1e-3, rtol=0)
        torch.testing.assert_close(relaid, decoded, atol=1e-5, rtol=0)
    else:
        assert info.alpha is None


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


def test_an_opaque_sprite_stays_on_its_own_background_through_decode_and_export(env):
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    image, mask = sprite_image(32)
    white = image * (1.0 - mask[..., None]) + mask[..., None]  # the sprite flattened on white, as a JPEG or BMP
    refs, shown = run("CharMotionReferenceEncode", vae=vae, image=white, resolution="auto", width=8, height=8,
                      fit="crop", pixel_art=False, background="auto", frames="0", strength=1.0,
                      mask=torch.zeros_like(mask))  # core LoadImage's mask of an image without alpha
    assert not refs.had_alpha and refs.key_color == (255, 255, 255)
    latent, = run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLER, "width": 0,
                                                                                         "height": 0})
    frames, _, info = run("CharMotionVAEDecode", vae=vae, samples=latent)
    corners = frames[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # the grown canvas's margins and the image's background
    assert frames.shape[1:3] == shown.shape[1:3] and bool((corners == 1.0).all())
    run("CharMotionExport", images=frames, filename_prefix="opaque", format="gif", fps=8.0, loop_count=0,
              pingpong=False, quality=90, lossless=False, transparency="auto", key_color="auto", tolerance=0.1,
              despill=False, clip_info=info)
    written, = env["output"].rglob("opaque*.gif")
    from PIL import Image
    first = np.asarray(Image.open(written).convert("RGB"))
    assert tuple(first[0, 0]) == (255, 255, 255) and tuple(first[-1, -1]) == (255, 255, 255)


def test_decode_refuses_a_clip_too_large_to_draw_before_drawing_it(env, monkeypatch):
    from charmotion.dit_core import memory

    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    image, mask = sprite_image(32)
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="custom", width=1024, height=512,
                  fit="pad", pixel_art=False, background="auto", frames="0", strength=1.0, mask=mask)
    latent, = run("CharMotionSampler", model=model, positive=cond, references=refs,
                  **{**SAMPLER, "width": 0, "height": 0})  # the sampler only makes the (fixed-size) fields
    monkeypatch.setattr(memory, "available_bytes", lambda device: 300 * 2**20)
    with pytest.raises(InvalidInputError) as info:
        run("CharMotionVAEDecode", vae=vae, samples=latent)
    said = str(info.value)
    assert said.startswith("decoding 1024x512 pixels at 4 frames needs about") and "300.0 MB free" in said
    width, height = map(int, said.split("use at most ")[1].split(" ")[0].split("x"))
    assert width == 2 * height and width < 1024
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**40)
    frames, _, _ = run("CharMotionVAEDecode", vae=vae, samples=latent)
    assert frames.shape == (4, 512, 1024, 3)


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
    keyed = image * (1 - mask)[..., None] + torch.tensor([1.0, 0.0, 1.0]) * mask[..., None]  # as a decoder draws it
    (two,) = run("CharMotionPaletteLock", frames=keyed, reference=image, colors=2, mask=mask,
                 clip_info=clip)  # fewer colours than the sprite has: the key still stays the key
    assert torch.equal(two[mask > 0.5], keyed[mask > 0.5]) and len(two.reshape(-1, 3).unique(dim=0)) == 2
    shown = N["CharMotionPaletteLock"]().lock(frames=image, reference=image, colors=256, mask=mask)  # no clip_info
    assert shown["ui"]["text"] == ["the key background is not known, so it is redrawn in the sprite's colours and "
                                   "the export cannot make it transparent: connect clip_info from CharMotion VAE "
                                   "Decode"]
    assert N["CharMotionPaletteLock"]().lock(frames=image, reference=image, colors=256, mask=mask,
                                             clip_info=clip)["ui"]["text"] == []
    # without the mask the colours under the transparent pixels (black here) join the palette
    (unmasked,) = run("CharMotionPaletteLock", frames=image, reference=image, colors=256)
    assert torch.equal(unmasked, image)
    (opaque,) = run("CharMotionPaletteLock", frames=image, reference=image, colors=256,
                    mask=torch.zeros(1, 48, 48))  # core Load Image's mask of an image without alpha, any size
    assert torch.equal(opaque, unmasked)
    with pytest.raises(InvalidInputError, match="connect the MASK that came with the reference"):
        run("CharMotionPaletteLock", frames=image, reference=image, colors=256, mask=mask[:, :32])
    with pytest.raises(InvalidInputError, match="connect the MASK that came with the reference"):
        run("CharMotionPaletteLock", frames=image, reference=image.repeat(2, 1, 1, 1), colors=256,
            mask=mask.repeat(3, 1, 1))
    with pytest.raises(InvalidInputError, match="frames must be an IMAGE batch"):
        run("CharMotionPaletteLock", frames=image[0], reference=image, colors=256)
    # with the clip's opacity known (the built-in decoder's clip info), a soft edge keeps its own colour under it
    alpha = (1.0 - mask).repeat(3, 1, 1)
    alpha[:, 32, 24:40] = 0.5  # half-transparent body pixels, shown over the key
    key = torch.tensor([1.0, 0.0, 1.0])
    body = torch.tensor([40, 60, 200]) / 255.0
    frames = image.repeat(3, 1, 1, 1) * alpha[..., None] + key * (1.0 - alpha[..., None])
    frames[:, 32, 24:40] = 0.5 * body + 0.5 * key
    known = ClipInfo(fps=8.0, key_color=(255, 0, 255), alpha=alpha)
    (locked,) = run("CharMotionPaletteLock", frames=frames, reference=image, colors=256, mask=mask, clip_info=known)
    torch.testing.assert_close(locked[:, 32, 24:40], (0.5 * body + 0.5 * key).expand(3, 16, 3))  # body, not key
    torch.testing.assert_close(locked[:, 0, 0], key.expand(3, 3))  # the background stays the key


def test_another_built_in_model_file_needs_its_own_warp_decoder(env):
    """A built-in model file with another motion field (the README's grid-32 fine-tune) is refused with the shipped
    warp decoder, naming the file to pick in the VAE Loader, and runs end to end once it is picked there."""
    from charmotion.dit_core.builtin import model as builtin_model
    from charmotion.training.phrases import action_words

    name = "grid32.safetensors"
    bundle = builtin_model.build_builtin({"actions": action_words(), "field": {"grid": 32, "frame_pixels": 128}})
    builtin_model.save_builtin(bundle, env["models"] / "charmotion" / name)
    assert name in N["CharMotionVAELoader"].INPUT_TYPES()["required"]["vae_name"][0]
    model, = run("CharMotionModelLoader", model_name=name, dtype="auto", attention="auto")
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    shipped, = run("CharMotionVAELoader", vae_name=CODEC, dtype="auto", tile_size=0)
    fix = f"pick the model's own file, '{name}', in CharMotion VAE Loader too"
    with pytest.raises(InvalidInputError, match="another field than the model 'grid32.safetensors' makes \\(grid 16 "
                                                "there, 32 in the model, frame_pixels 64 there, 128 in the model\\): "
                                                + fix):
        run("CharMotionSampler", model=model, positive=cond, references=sprite_refs(shipped), **SAMPLER)
    with pytest.raises(InvalidInputError, match=fix):
        run("CharMotionSampler", model=model, positive=cond, vae=shipped, **SAMPLER)
    own, = run("CharMotionVAELoader", vae_name=name, dtype="auto", tile_size=0)
    latent, = run("CharMotionSampler", model=model, positive=cond, references=sprite_refs(own), vae=own, **SAMPLER)
    assert latent["samples"].shape[-2:] == (32, 32)
    frames, _, _ = run("CharMotionVAEDecode", vae=own, samples=latent)
    assert frames.shape == (4, 32, 32, 3)
    with pytest.raises(InvalidInputError, match="another VAE"):  # chaining references of the two fields
        refs = sprite_refs(own)
        image, mask = sprite_image(32)
        run("CharMotionReferenceEncode", vae=shipped, image=image, resolution="image", width=8, height=8, fit="crop",
            pixel_art=False, background="auto", frames="-1", strength=1.0, mask=mask, references=refs)


def test_sampler_and_decode_ask_the_host_for_room_before_loading(env, opensora_file, monkeypatch):
    """The host is told what sampling and decoding need beyond the weights, so it can unload other models (the
    T5 that just encoded the prompt) first, instead of the memory check refusing a clip that would fit."""
    from dataclasses import replace as replaced

    asked = []
    monkeypatch.setattr(host.ManagedModule, "load", lambda self, memory_required=0: asked.append(memory_required))
    model, = run("CharMotionModelLoader", model_name=opensora_file, dtype="fp32", attention="auto")
    cond, = run("CharMotionTextEncode", model=model, text="a knight jumps", clip=FakeT5Clip(dim=32))
    latents = [run("CharMotionSampler", model=model, positive=cond, seed=1, steps=1, cfg=7.0, frames=frames, width=64,
                   height=48, fps=24.0)[0] for frames in (17, 51)]
    assert len(asked) == 2 and 0 < asked[0] < asked[1]

    class Recorded:
        load_device = torch.device("cpu")

        def load(self, memory_required=0):
            asked.append(memory_required)

    vae = replaced(pool_vae(), managed=Recorded())
    run("CharMotionVAEDecode", vae=vae, samples=latents[0])
    run("CharMotionVAEDecode", vae=vae, samples=latents[1])
    assert len(asked) == 4 and 0 < asked[2] < asked[3]


def test_built_in_latents_changed_by_core_latent_nodes_are_refused_not_decoded_wrong(env):
    """Core latent nodes copy the LATENT's dict: batching another clip, flipping or resizing the motion fields
    would decode wrong pixels, so the decode refuses them; repeating or picking entries decodes as before."""
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    refs = sprite_refs(vae)
    clip, other = (run("CharMotionSampler", model=model, positive=cond, references=refs, **{**SAMPLER, "seed": seed})[0]
                   for seed in (3, 4))
    z = clip["samples"]

    def core(samples):  # what core latent nodes return: the dict copied, new samples
        return {**clip, "samples": samples}

    frames, _, _ = run("CharMotionVAEDecode", vae=vae, samples=clip)
    repeated, _, _ = run("CharMotionVAEDecode", vae=vae, samples=core(z.repeat(2, 1, 1, 1, 1)))  # RepeatLatentBatch
    torch.testing.assert_close(repeated, torch.cat([frames, frames]))
    picked, _, _ = run("CharMotionVAEDecode", vae=vae, samples=core(z[0:1].clone()))  # LatentFromBatch
    torch.testing.assert_close(picked, frames)
    for changed in (torch.cat([z, other["samples"]]),  # LatentBatch with another clip
                    z.flip(-1),  # LatentFlip
                    torch.nn.functional.interpolate(z.flatten(1, 2), scale_factor=2).unflatten(1, z.shape[1:3])):
        with pytest.raises(InvalidInputError, match="motion fields CharMotion Sampler did not make for its reference"):
            run("CharMotionVAEDecode", vae=vae, samples=core(changed))


def test_a_high_cfg_with_the_built_in_model_is_noted_under_the_sampler(env):
    """The Sampler's defaults are Open-Sora's (cfg 7), at which the built-in model does the asked action about half
    as often as at its own 1.5: a note under the node says so."""
    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    refs = sprite_refs(vae)
    said = {cfg: N["CharMotionSampler"]().sample(model=model, positive=cond, references=refs,
                                                 **{**SAMPLER, "cfg": cfg})["ui"]["text"] for cfg in (1.5, 3.0, 7.0)}
    assert not any("is high for" in note for note in said[1.5] + said[3.0])
    assert "cfg 7 is high for CharMotion built-in, which was made for cfg 1.5: above 3 it does the asked action less " \
           "often (about half as often at 7); set cfg 1.5" in said[7.0]
