"""The export node: every format written into the output folder and read back."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from charmotion.dit_core.errors import InvalidInputError
from charmotion.dit_core.export import FFmpegNotFoundError, read_metadata
from charmotion.nodes import NODE_CLASS_MAPPINGS as N
from charmotion.nodes.handles import ClipInfo
from media import ffmpeg_frames, pil_frames
from node_fixtures import builtin_weights, env, one_thread  # noqa: F401 (fixtures)

KEY = (255, 0, 255)
T, H, W = 6, 21, 33  # odd sizes on purpose


def clip_frames() -> torch.Tensor:
    """A blue block moving over a magenta key background, as IMAGE [T, H, W, 3] 0..1."""
    frames = np.zeros((T, H, W, 3), np.float32)
    frames[...] = np.array(KEY) / 255.0
    for i in range(T):
        frames[i, 5:15, 3 + 2 * i : 13 + 2 * i] = (0.1, 0.2, 0.8)
    return torch.from_numpy(frames)


def export(**kwargs):
    args = dict(filename_prefix="CharMotion/test", format="webp", fps=0.0, loop_count=0, pingpong=False, quality=-1,
                lossless=True, transparency="auto", key_color="auto", tolerance=0.1, despill=True)
    args.update(kwargs)
    return N["CharMotionExport"]().export(images=args.pop("images", clip_frames()), **args)


def only_file(ui, output):
    (entry,) = ui["images"]
    return output / entry["subfolder"] / entry["filename"]


def frames_in(path) -> np.ndarray:
    """The RGBA frames of an animated image."""
    return pil_frames(path)[0]


INFO = ClipInfo(fps=8.0, key_color=KEY, had_alpha=True, metadata={"seed": 5})


@pytest.mark.parametrize("fmt", ["gif", "webp", "apng"])
def test_animated_images_are_transparent_when_the_reference_was(env, fmt):
    out = export(format=fmt, clip_info=INFO, loop_count=2, prompt={"1": {"class_type": "X"}},
                 extra_pnginfo={"workflow": {"nodes": []}})
    path = only_file(out["ui"], env["output"])
    assert out["ui"]["animated"] == [True] and out["ui"]["images"][0]["type"] == "output"
    assert path.name == f"test_00001_.{'apng' if fmt == 'apng' else fmt}" and path.parent.name == "CharMotion"
    frames, durations, info, _ = pil_frames(path)
    assert frames.shape == (T, H, W, 4)
    assert frames[0, 0, 0, 3] == 0 and frames[0, 10, 5, 3] == 255  # key colour keyed out, the block kept
    assert sum(durations) == pytest.approx(T * 1000 / 8.0, abs=10)
    meta = read_metadata(path)
    assert meta["workflow"] == {"nodes": []} and meta["prompt"] == {"1": {"class_type": "X"}}
    assert meta["charmotion"] == {"seed": 5}


def test_opaque_when_the_reference_was_opaque_or_transparency_off(env):
    frames = frames_in(only_file(export(format="webp", clip_info=ClipInfo(fps=8.0, key_color=KEY))["ui"],
                                      env["output"]))
    assert (frames[..., 3] == 255).all()
    frames = frames_in(only_file(export(format="gif", clip_info=INFO, transparency="off")["ui"], env["output"]))
    assert (frames[..., 3] == 255).all()
    # "on" without clip info keys out the frames' own edge colour
    frames = frames_in(only_file(export(format="apng", transparency="on")["ui"], env["output"]))
    assert frames[0, 0, 0, 3] == 0
    # a MASK gives the alpha directly (1 = transparent)
    mask = torch.zeros(T, H, W)
    mask[:, :, :4] = 1.0
    frames = frames_in(only_file(export(format="webp", mask=mask)["ui"], env["output"]))
    assert (frames[:, :, :4, 3] == 0).all() and (frames[:, :, 4:, 3] == 255).all()


def test_mp4_and_webm(env):
    out = export(format="mp4", clip_info=INFO, fps=12.0)
    path = only_file(out["ui"], env["output"])
    clip, meta = ffmpeg_frames(path)
    assert len(clip) == T and meta["size"] == (W + 1, H + 1) and meta["fps"] == pytest.approx(12.0)  # even size
    out = export(format="webm", clip_info=INFO, pingpong=True)
    path = only_file(out["ui"], env["output"])
    clip, meta = ffmpeg_frames(path)
    assert len(clip) == 2 * T - 2 and meta["fps"] == pytest.approx(8.0) and meta["size"] == (W + 1, H + 1)
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgba", bpp=4, input_params=["-c:v", "libvpx-vp9"])
    gen.__next__()
    first = np.frombuffer(next(gen), np.uint8).reshape(H + 1, W + 1, 4)
    assert first[0, 0, 3] < 16 and first[10, 8, 3] > 240  # VP9 keeps the keyed-out alpha


def test_png_sequence_and_sprite_sheet(env):
    out = export(format="png_sequence", clip_info=INFO, filename_prefix="seq/walk")
    (entry,) = out["ui"]["images"]
    folder = env["output"] / "seq" / "walk_00001_"
    assert entry == {"filename": "frame_00000.png", "subfolder": "seq/walk_00001_", "type": "output"}
    assert out["ui"]["animated"] == [False]
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"frame_{i:05d}.png" for i in range(T)]
    with Image.open(files[0]) as im:
        assert im.mode == "RGBA" and im.size == (W, H) and im.getpixel((0, 0))[3] == 0
    out = export(format="sprite_sheet", clip_info=INFO, fps=0.0, pingpong=True, filename_prefix="sheet")
    sheet = only_file(out["ui"], env["output"])
    assert out["ui"]["animated"] == [False]
    atlas = json.loads(sheet.with_suffix(".json").read_text())
    assert atlas["meta"]["fps"] == 8.0 and atlas["meta"]["frame_count"] == T
    assert atlas["meta"]["frameTags"][0]["direction"] == "pingpong"
    rect = atlas["frames"]["frame_00001"]["frame"]
    assert (rect["w"], rect["h"]) == (W, H)
    with Image.open(sheet) as im:
        assert im.mode == "RGBA" and im.size == (atlas["meta"]["size"]["w"], atlas["meta"]["size"]["h"])
        assert im.getpixel((rect["x"], rect["y"]))[3] == 0


def test_files_are_never_overwritten(env):
    first = only_file(export(format="gif")["ui"], env["output"])
    second = only_file(export(format="gif")["ui"], env["output"])
    assert first != second and first.exists() and second.exists()
    assert second.name == "test_00002_.gif"


def test_export_errors(env, monkeypatch):
    with pytest.raises(InvalidInputError, match="sub-folders"):
        export(filename_prefix="../outside")
    with pytest.raises(InvalidInputError, match="no key colour"):
        noisy = torch.rand(T, H, W, 3)
        export(images=noisy, format="webp", transparency="on")
    with pytest.raises(InvalidInputError, match="IMAGE"):
        export(images=torch.rand(H, W, 3))

    def no_ffmpeg():
        raise RuntimeError("No ffmpeg exe could be found.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    with pytest.raises(FFmpegNotFoundError, match="pip install imageio-ffmpeg"):
        export(format="mp4")
    assert list(env["output"].rglob("*.mp4")) == [] and list(env["output"].rglob("*.part")) == []


def test_opaque_output_of_a_transparent_reference_is_over_the_background_colour(env):
    frames = frames_in(only_file(export(format="gif", clip_info=INFO, transparency="off",
                                             background_color="#204060")["ui"], env["output"]))
    assert (frames[..., 3] == 255).all() and tuple(frames[0, 0, 0, :3]) == (32, 64, 96)  # not the magenta key
    assert tuple(frames[0, 10, 5, :3]) == (26, 51, 204)  # the character as it was
    with pytest.raises(InvalidInputError, match="background_color: unknown colour 'nope': write '#rrggbb'"):
        export(format="gif", clip_info=INFO, background_color="nope")


def test_soft_edges_keep_their_own_colours_and_opacity(env):
    """Frames over the key with a known opacity (the built-in decoder's clip_info, or a MASK) are un-mixed from
    the key, not keyed: a half-transparent dark edge stays dark and half transparent, with no tint of the key."""
    frames = clip_frames()
    alpha = torch.zeros(T, H, W)
    alpha[:, 5:15, 3:30] = 1.0
    alpha[:, 4, 3:30] = 0.5  # a soft top edge
    edge = torch.tensor([0.1, 0.1, 0.1])
    frames[:, 4, 3:30] = 0.5 * edge + 0.5 * torch.tensor(KEY) / 255.0
    frames[:, 5:15, 3:30] = torch.tensor([0.1, 0.2, 0.8])
    known = ClipInfo(fps=8.0, key_color=KEY, had_alpha=True, alpha=alpha)
    for given in (dict(clip_info=known), dict(clip_info=INFO, mask=1.0 - alpha)):
        shown = frames_in(only_file(export(images=frames, format="apng", **given)["ui"], env["output"]))
        assert shown[:, 4, 3:30, 3].tolist() == [[128] * 27] * T  # the edge's own opacity
        assert np.abs(shown[:, 4, 3:30, :3].astype(int) - 26).max() <= 1  # and its own colour: no magenta
        assert shown[:, 0, 0, 3].max() == 0 and (shown[:, 10, 3:30, 3] == 255).all()


def test_a_built_in_clip_exports_the_reference_pixels_exactly(env):
    from node_fixtures import builtin, run, sprite_image

    model, vae = builtin(env)
    cond, = run("CharMotionTextEncode", model=model, text="the knight jumps")
    image, mask = sprite_image(32)
    mask[:, 8:12, 12:20] = 0.6  # a see-through part: 40 % opaque
    refs, _ = run("CharMotionReferenceEncode", vae=vae, image=image, resolution="image", width=8, height=8,
                  fit="crop", pixel_art=False, background="auto", frames="0", strength=1.0, mask=mask)
    latent, = run("CharMotionSampler", model=model, positive=cond, references=refs, seed=3, steps=2, cfg=1.5,
                  frames=4, width=0, height=0, fps=8.0, denoise=1.0)
    frames, _, info = run("CharMotionVAEDecode", vae=vae, samples=latent)
    shown = frames_in(only_file(export(images=frames, clip_info=info, format="apng")["ui"], env["output"]))
    reference = np.concatenate([image[0].numpy(), 1.0 - mask[0].numpy()[..., None]], axis=-1)
    assert np.abs(shown[0, ..., 3].astype(int) - np.rint(reference[..., 3] * 255)).max() <= 1  # frame 0's alpha
    visible = reference[..., 3] > 0
    assert np.abs(shown[0][visible][:, :3].astype(int) - np.rint(reference[visible][:, :3] * 255)).max() <= 1


def test_core_load_image_zero_mask_of_an_opaque_image_keeps_the_clip_opaque(env):
    shown = frames_in(only_file(export(format="apng", mask=torch.zeros(1, 64, 64))["ui"], env["output"]))
    assert shown.shape == (T, H, W, 4) and (shown[..., 3] == 255).all()  # 64x64 of zeros: nothing transparent


def test_frames_changed_after_decoding_are_keyed_not_given_the_old_opacity(env):
    frames = clip_frames()  # a block moving right over the key
    alpha = (torch.abs(frames - torch.tensor(KEY) / 255.0).amax(-1) > 0.1).float()
    known = ClipInfo(fps=8.0, key_color=KEY, had_alpha=True, alpha=alpha)
    reversed_frames = frames.flip(0)  # same size, other order: the stored opacity no longer fits
    out = export(images=reversed_frames, clip_info=known, format="apng")
    shown = frames_in(only_file(out["ui"], env["output"]))
    assert (shown[0, 10, 3 + 2 * (T - 1), 3] == 255) and (shown[0, 10, 3, 3] == 0)  # the frames' own block
    assert any("no longer match their clip info's opacity" in note for note in out["ui"]["text"])  # said in the node


def test_rgba_images_keep_their_own_alpha(env):
    """Four-channel images (core Join Image with Alpha) are exported with their alpha, unless transparency is off."""
    frames = clip_frames()
    alpha = torch.zeros(T, H, W)
    alpha[:, 5:15, 3:13] = 1.0
    alpha[:, 5:15, 13] = 0.5  # a soft edge
    rgba = torch.cat([frames, alpha[..., None]], dim=-1)
    for transparency in ("auto", "on"):
        shown = frames_in(only_file(export(images=rgba, format="apng", transparency=transparency)["ui"], env["output"]))
        assert np.array_equal(shown[..., 3], np.rint(alpha.numpy() * 255).astype(np.uint8))
        assert (shown[0, 10, 5, :3] == np.rint(np.array([0.1, 0.2, 0.8]) * 255)).all()  # colours kept, not keyed
    opaque = frames_in(only_file(export(images=rgba, format="apng", transparency="off")["ui"], env["output"]))
    assert (opaque[..., 3] == 255).all()


def test_a_mask_of_the_wrong_size_or_frame_count_is_named_and_nothing_is_written(env):
    partial = torch.zeros(T - 2, H, W)
    partial[:, 0, 0] = 1.0  # not core Load Image's all-zero "no mask"
    with pytest.raises(InvalidInputError, match=f"the mask has {T - 2} frames but there are {T} images"):
        export(mask=partial)
    with pytest.raises(InvalidInputError, match=f"the mask is {W + 1}x{H} but the frames are {W}x{H}: connect a mask of the frames' size"):
        export(mask=torch.ones(1, H, W + 1))
    assert not any(env["output"].rglob("*.*"))
    shown = frames_in(only_file(export(format="apng", mask=partial[:1])["ui"], env["output"]))
    assert shown.shape == (T, H, W, 4) and (shown[:, 0, 0, 3] == 0).all() and (shown[:, 5, 5, 3] == 255).all()


def test_what_the_export_notes_is_shown_under_the_node(env):
    out = export(format="mp4", lossless=False)  # odd sizes: H.264 pads them
    assert len(out["ui"]["text"]) == 1 and "needs even sizes: padded 1 px right, 1 px bottom" in out["ui"]["text"][0]
    assert export(format="webp")["ui"]["text"] == []  # nothing to say: the notes of an earlier run go away
