"""Export: every format written and read back, chroma key, metadata, settings."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import imageio_ffmpeg
from charmotion.dit_core import export as ex
from charmotion.dit_core import images
from charmotion.dit_core.errors import InvalidInputError
from media import KEY, RED, H, T, W, ffmpeg_frames, flat_pixels, listing, pil_frames, sprite_frames, sprite_mask


# ----------------------------------------------------------------------------- formats


def test_format_table_is_consistent_and_codecs_exist_in_bundled_ffmpeg():
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"],
                         capture_output=True, text=True).stdout
    encoders = {line.split()[1] for line in out.splitlines() if line.startswith(" V")}
    assert set(ex.FORMATS) == {"mp4", "webm", "gif", "webp", "apng", "png_sequence", "sprite_sheet"}
    for name, f in ex.FORMATS.items():
        assert f.name == name
        assert f.writer in ("ffmpeg", "pillow", "png_sequence", "sprite_sheet")
        if f.writer == "ffmpeg":
            assert f.codec in encoders, f"{f.codec} missing from the bundled ffmpeg"
            assert f.muxer and f.pix_fmt and f.even_size
        if f.writer == "pillow":
            assert f.pillow_format
    assert ex.FORMATS["mp4"].codec == "libx264" and ex.FORMATS["mp4"].pix_fmt == "yuv420p"
    assert ex.FORMATS["webm"].codec == "libvpx-vp9"
    assert not ex.FORMATS["mp4"].alpha
    assert all(ex.FORMATS[n].alpha for n in ("gif", "webp", "apng", "png_sequence", "sprite_sheet"))


def test_format_for_path(tmp_path):
    assert ex.format_for_path("a/clip.mp4") == "mp4"
    assert ex.format_for_path("CLIP.WEBM") == "webm"
    assert ex.format_for_path("x.gif") == "gif"
    assert ex.format_for_path("x.webp") == "webp"
    assert ex.format_for_path("x.apng") == "apng"
    assert ex.format_for_path("x.png") == "sprite_sheet"
    assert ex.format_for_path(tmp_path) == "png_sequence"
    assert ex.format_for_path("out/frames/") == "png_sequence"
    assert ex.format_for_path("out/frames") == "png_sequence"
    with pytest.raises(ValueError, match=r"unknown extension '\.avi'.*\.mp4"):
        ex.format_for_path("clip.avi")


# ----------------------------------------------------------------------------- round trips


def test_mp4_odd_size_padded_fps_metadata(tmp_path):
    frames = sprite_frames()
    meta = {"prompt": {"3": {"class_type": "KSampler"}}, "workflow": {"nodes": [1, 2]}}
    r = ex.export_frames(frames, tmp_path / "walk.mp4", fps=12, metadata=meta)
    assert r.path == tmp_path / "walk.mp4" and r.files == [r.path]
    assert (r.width, r.height, r.padded) == (16, 14, (1, 1))
    assert r.frame_count == T and r.has_alpha is False and r.bytes == r.path.stat().st_size
    assert r.settings["crf"] == 19 and r.duration_s == pytest.approx(T / 12)
    got, info = ffmpeg_frames(r.path)
    assert got.shape == (T, 14, 16, 3)
    assert info["fps"] == pytest.approx(12.0)
    err = np.abs(got[:, :H, :W].astype(int) - frames.astype(int))
    flat = flat_pixels(frames)
    assert flat.sum() > 300 and err[flat].mean() < 4
    # the padding repeats the last column / row
    assert np.abs(got[:, :H, W].astype(int) - got[:, :H, W - 1].astype(int)).mean() < 8
    assert np.abs(got[:, H, :W].astype(int) - got[:, H - 1, :W].astype(int)).mean() < 8
    assert ex.read_metadata(r.path) == meta
    with open(r.path, "rb") as fh:  # +faststart: the index (moov) comes before the data (mdat)
        head = fh.read()
    assert head.find(b"moov") < head.find(b"mdat")


def test_mp4_even_size_untouched_and_large_metadata(tmp_path):
    frames = sprite_frames(h=14, w=16)
    workflow = "line one\nkey=value; # not a comment \\ backslash " + "x" * 200_000
    r = ex.export_frames(frames, tmp_path / "big.mp4", metadata={"workflow": workflow, "n": 3})
    assert r.padded == (0, 0) and (r.width, r.height) == (16, 14)
    assert ex.read_metadata(r.path) == {"workflow": workflow, "n": 3}
    assert listing(tmp_path) == ["big.mp4"]  # the ffmetadata file is gone


def test_webm_alpha_and_opaque(tmp_path):
    frames = sprite_frames()
    r = ex.export_frames(frames, tmp_path / "a.webm", key_color=KEY, metadata={"prompt": "p"}, fps=10)
    assert r.has_alpha and r.settings["pix_fmt"] == "yuva420p" and r.padded == (1, 1)
    got, info = ffmpeg_frames(r.path, rgba=True)
    assert got.shape == (T, 14, 16, 4) and info["fps"] == pytest.approx(10.0)
    mask = sprite_mask()
    alpha = got[:, :H, :W, 3]
    assert alpha[mask].min() > 200 and alpha[~mask].max() < 60
    assert ex.read_metadata(r.path) == {"prompt": "p"}

    r2 = ex.export_frames(frames, tmp_path / "b.webm")
    assert not r2.has_alpha and r2.settings["pix_fmt"] == "yuv420p"
    got2, _ = ffmpeg_frames(r2.path, rgba=True)
    assert got2[..., 3].min() == 255


@pytest.mark.parametrize("fmt", ["gif", "webp", "apng"])
def test_animated_images_alpha_timing_loop_metadata(tmp_path, fmt):
    frames = sprite_frames()
    meta = {"prompt": {"a": [1, 2]}, "workflow": {"nodes": [], "note": "héllo"}, "title": "naïve ✓ 動き"}
    kwargs = {"lossless": True} if fmt == "webp" else {}
    r = ex.export_frames(frames, tmp_path, fmt=fmt, prefix="walk", fps=8, loop_count=3,
                         key_color="#00ff00", metadata=meta, **kwargs)
    assert r.path.name == f"walk_00001_{ex.FORMATS[fmt].extension}"
    assert (r.width, r.height, r.padded) == (W, H, (0, 0)) and r.has_alpha
    got, durations, info, _ = pil_frames(r.path)
    assert got.shape == (T, H, W, 4)
    mask = sprite_mask()
    assert (got[..., 3][mask] == 255).all() and (got[..., 3][~mask] == 0).all()
    # the sprite pixels come back exactly (GIF: 3 colours fit the palette)
    assert np.array_equal(got[..., :3][mask], frames[mask])
    tick = ex.FORMATS[fmt].frame_tick_ms  # GIF delays are whole 10 ms ticks
    assert sum(durations) == pytest.approx(T * 125, abs=tick / 2)
    assert max(durations) - min(durations) <= 10
    stored_loop = {"gif": 2, "webp": 3, "apng": 3}[fmt]  # GIF counts repeats after the first play
    assert info["loop"] == stored_loop
    assert ex.read_metadata(r.path) == meta


@pytest.mark.parametrize("fmt", ["gif", "webp", "apng", "png_sequence", "sprite_sheet"])
def test_no_alpha_unless_asked(tmp_path, fmt):
    r = ex.export_frames(sprite_frames(), tmp_path, fmt=fmt, prefix="x")
    assert not r.has_alpha
    path = r.files[1] if fmt == "png_sequence" else r.path
    with Image.open(path) as im:
        assert im.mode in ("RGB", "P")
        assert "transparency" not in im.info


def test_loop_once_and_forever(tmp_path):
    frames = sprite_frames()
    once = ex.export_frames(frames, tmp_path / "once.gif", loop_count=1)
    forever = ex.export_frames(frames, tmp_path / "forever.gif", loop_count=0)
    assert "loop" not in pil_frames(once.path)[2]  # no NETSCAPE block: plays once
    assert pil_frames(forever.path)[2]["loop"] == 0
    assert pil_frames(ex.export_frames(frames, tmp_path / "w.webp", loop_count=1).path)[2]["loop"] == 1
    assert pil_frames(ex.export_frames(frames, tmp_path / "a.apng", loop_count=0).path)[2]["loop"] == 0


def test_loop_is_a_deprecated_name_of_loop_count(tmp_path):
    frames = sprite_frames()
    with pytest.warns(DeprecationWarning, match="loop_count"):
        r = ex.export_frames(frames, tmp_path / "old.gif", loop=3)
    assert r.loop_count == 3 and pil_frames(r.path)[2]["loop"] == 2
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidInputError, match="pass only loop_count"):
        ex.export_frames(frames, tmp_path / "both.gif", loop=3, loop_count=2)
    assert not (tmp_path / "both.gif").exists()


def test_gif_timing_spreads_ticks_and_caps_fast_fps(tmp_path):
    r = ex.export_frames(sprite_frames(t=8), tmp_path / "a.gif", fps=8)
    durations = pil_frames(r.path)[1]
    assert sorted(set(durations)) == [120, 130] and sum(durations) == 1000
    fast = ex.export_frames(sprite_frames(), tmp_path / "b.gif", fps=100)
    assert pil_frames(fast.path)[1] == [20] * T
    assert any("50 fps" in n for n in fast.notes) and fast.fps == 50.0  # the rate the file plays at
    assert r.fps == 8


def test_gif_many_colours_uses_one_global_palette(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    r = ex.export_frames(frames, tmp_path / "noise.gif", quality=50)
    assert r.settings["colors"] == 129 and r.settings["palette_colors"] <= 129
    got = pil_frames(r.path)[0]
    assert len(np.unique(got[..., :3].reshape(-1, 3), axis=0)) <= 129
    assert np.abs(got[..., :3].astype(int) - frames.astype(int)).mean() < 20


def test_webp_lossy_quality_and_explicit_alpha_from_torch(tmp_path):
    frames = torch.from_numpy(sprite_frames()).float() / 255.0  # ComfyUI IMAGE layout
    alpha = torch.from_numpy(sprite_mask()).float()
    r = ex.export_frames(frames, tmp_path / "a.webp", alpha=alpha, quality=80)
    assert r.has_alpha and r.settings["quality"] == 80 and r.settings["lossless"] is False
    got = pil_frames(r.path)[0]
    assert np.array_equal(got[..., 3] > 127, sprite_mask())


def test_png_sequence(tmp_path):
    frames = np.concatenate([sprite_frames(), np.full((T, H, W, 1), 255, np.uint8)], axis=-1)
    frames[:, 0, 0, 3] = 0  # RGBA input keeps its alpha
    r = ex.export_frames(frames, tmp_path / "seq", metadata={"workflow": {"a": 1}})
    assert r.format == "png_sequence" and r.path == tmp_path / "seq" and r.path.is_dir()
    names = [p.name for p in r.files[1:]]
    assert names == [f"frame_{i:05d}.png" for i in range(T)]
    got = np.stack([np.asarray(Image.open(p)) for p in r.files[1:]])
    assert np.array_equal(got, frames)
    assert ex.read_metadata(r.path) == {"workflow": {"a": 1}}
    dotted = ex.export_frames(frames, tmp_path / "walk.v2", fmt="png_sequence")  # a dot in a folder's name
    assert dotted.path == tmp_path / "walk.v2" and len(dotted.files) == T + 1
    with pytest.raises(InvalidInputError, match="looks like a file name"):
        ex.export_frames(frames, tmp_path / "walk.gif", fmt="png_sequence")
    # an existing folder with files keeps them: a new numbered sub-folder is made inside it, and a note says so
    r2 = ex.export_frames(frames, tmp_path / "seq")
    assert r2.path == tmp_path / "seq" / "CharMotion_00001_"
    assert len(list(r2.path.iterdir())) == T
    assert r2.notes == ["'seq' already holds files, which are kept; wrote the frames to a new folder in it, "
                        "'CharMotion_00001_'."]
    (tmp_path / "empty").mkdir()  # an existing empty folder is filled
    r3 = ex.export_frames(frames, tmp_path / "empty")
    assert r3.path == tmp_path / "empty" and len(list(r3.path.iterdir())) == T and r3.notes == []


def test_sprite_sheet_grid_atlas_padding_pingpong(tmp_path):
    frames = sprite_frames()
    meta = {"workflow": {"x": 1}}
    r = ex.export_frames(frames, tmp_path / "hero.png", fps=10, loop_count=2, pingpong=True, key_color=KEY,
                         columns=2, padding=3, metadata=meta)
    png, js = r.files
    assert (png.name, js.name) == ("hero.png", "hero.json") and r.frame_count == T
    with Image.open(png) as im:
        sheet = np.asarray(im)
        assert im.mode == "RGBA"
    rows = 3
    assert sheet.shape == (rows * H + 2 * 3, 2 * W + 3, 4)
    atlas = json.loads(js.read_text())
    m = atlas["meta"]
    assert m["image"] == "hero.png" and m["size"] == {"w": 2 * W + 3, "h": rows * H + 6}
    assert (m["columns"], m["rows"], m["fps"], m["loop"], m["format"]) == (2, rows, 10.0, 2, "RGBA8888")
    assert m["frameTags"] == [{"name": "hero", "from": 0, "to": T - 1, "direction": "pingpong", "repeat": "2"}]
    names = list(atlas["frames"])
    assert atlas["animations"]["hero"] == names + names[-2:0:-1]
    assert sum(f["duration"] for f in atlas["frames"].values()) == T * 100
    mask = sprite_mask()
    for i, name in enumerate(names):
        f = atlas["frames"][name]
        assert f["rotated"] is False and f["trimmed"] is False
        assert f["sourceSize"] == {"w": W, "h": H}
        assert f["spriteSourceSize"] == {"x": 0, "y": 0, "w": W, "h": H}
        x, y, w, h = (f["frame"][k] for k in "xywh")
        assert (x, y, w, h) == ((i % 2) * (W + 3), (i // 2) * (H + 3), W, H)
        cell = sheet[y : y + h, x : x + w]
        assert np.array_equal(cell[..., :3][mask[i]], frames[i][mask[i]])
        assert (cell[..., 3][mask[i]] == 255).all() and (cell[..., 3][~mask[i]] == 0).all()
    assert (sheet[:, W : W + 3, 3] == 0).all()  # the padding gap is transparent
    assert ex.read_metadata(js) == meta


def test_pingpong_frame_counts(tmp_path):
    for t, expected in [(5, 8), (3, 4), (2, 2), (1, 1)]:
        r = ex.export_frames(sprite_frames(t=t), tmp_path, fmt="apng", prefix=f"p{t}", pingpong=True, fps=10)
        got, durations, _, _ = pil_frames(r.path)
        assert r.frame_count == expected and len(durations) == expected
        assert r.duration_s == pytest.approx(expected / 10)
        if t == 5:  # 0 1 2 3 4 3 2 1
            src = sprite_frames(t=t)
            for k, i in enumerate([0, 1, 2, 3, 4, 3, 2, 1]):
                assert np.array_equal(got[k, ..., :3], src[i])
    r = ex.export_frames(sprite_frames(), tmp_path / "v.mp4", pingpong=True)
    assert ffmpeg_frames(r.path)[0].shape[0] == 8


@pytest.mark.parametrize("fmt,options", [("gif", {}), ("apng", {}), ("webp", {}), ("webp", {"lossless": True}),
                                         ("webp", {"quality": 0})])
@pytest.mark.parametrize("alpha", [False, True])
def test_animated_files_keep_repeated_frames(tmp_path, fmt, options, alpha):
    """A game engine reads as many frames as the clip has, also when frames repeat."""
    rng = np.random.default_rng(0)
    a, b = (np.kron(rng.integers(0, 4, (4, 4, 3)) * 80, np.ones((4, 4, 1))).astype(np.uint8) for _ in range(2))
    clip = np.stack([a, a, a, b, b, a])
    kwargs = {"alpha": np.where(np.arange(16) < 4, 0.0, 1.0)[None, :, None].repeat(6, 0).repeat(16, 2)} if alpha else {}
    result = ex.export_frames(clip, tmp_path / f"clip.{fmt}", fmt=fmt, fps=10, **options, **kwargs)
    with Image.open(result.path) as im:
        assert im.n_frames == 6
        shown = []
        for i in range(6):
            im.seek(i)
            shown.append(np.asarray(im.convert("RGBA")).astype(int))
    if fmt != "webp" or options.get("lossless"):
        for i, frame in enumerate(clip):  # what is shown is the clip, repeated frames included
            visible = shown[i][..., 3] > 127
            assert np.abs(shown[i][..., :3][visible] - frame[visible]).max() <= (48 if fmt == "gif" else 1)
    assert np.array_equal(shown[1], shown[0]) or fmt == "webp"


@pytest.mark.parametrize("fmt,options", [("gif", {}), ("apng", {}), ("webp", {}), ("webp", {"lossless": True}),
                                         ("webp", {"quality": 0})])
@pytest.mark.parametrize("seen", [(3, 6), (0, 3), (2, 4)], ids=["comes", "goes", "passes"])
def test_frames_with_nothing_visible_are_kept(tmp_path, fmt, options, seen):
    """A character off the canvas for a few frames: the file still holds every frame (a GIF draws an empty frame
    in another transparent index, WebP with one pixel 1/255 opaque, APNG with the other disposal), and a GIF
    has one header (browsers stop at a second one, which Pillow writes for a frame equal to the cleared canvas)."""
    clip = np.zeros((6, 16, 16, 3), np.uint8)
    clip[seen[0] : seen[1], 4:12, 4:12] = (200, 50, 50)
    alpha = np.zeros((6, 16, 16))
    alpha[seen[0] : seen[1], 4:12, 4:12] = 1.0
    result = ex.export_frames(clip, tmp_path / f"clip.{fmt}", fmt=fmt, fps=10, alpha=alpha, **options)
    with Image.open(result.path) as im:
        frames = im.n_frames
        shown = []
        for i in range(frames):
            im.seek(i)
            shown.append(np.asarray(im.convert("RGBA")).astype(int))
    assert frames == result.frame_count == 6 and not any("repeat" in n for n in result.notes)
    assert result.path.read_bytes().count(b"GIF89a") == (1 if fmt == "gif" else 0)
    inside = range(*seen)
    assert all(frame[..., 3].max() <= 1 for i, frame in enumerate(shown) if i not in inside)  # nothing to see
    assert all((shown[i][4:12, 4:12, 3] > 127).all() for i in inside)
    if fmt != "webp" or options.get("lossless"):
        assert all(np.abs(shown[i][4:12, 4:12, :3] - (200, 50, 50)).max() <= 8 for i in inside)
    ghost = ex.export_frames(clip, tmp_path / f"ghost.{fmt}", fmt=fmt, fps=10, alpha=alpha * 0.4)
    assert any("nothing is at least 50 % opaque" in n for n in ghost.notes) == (fmt == "gif")


def test_rgba_into_mp4_is_composited_over_background(tmp_path):
    frames = np.concatenate([sprite_frames(h=14, w=16), np.zeros((T, 14, 16, 1), np.uint8)], axis=-1)
    frames[..., 3][sprite_mask(h=14, w=16)] = 255
    r = ex.export_frames(frames, tmp_path / "c.mp4", background="white")
    got, _ = ffmpeg_frames(r.path)
    outside = ~sprite_mask(h=14, w=16)
    outside[:, 2:11, :] = False  # stay clear of the coded edges
    assert got[outside].min() > 235
    assert any("composited over (255, 255, 255)" in n for n in r.notes)


def test_input_forms_give_the_same_file_content(tmp_path):
    u8 = sprite_frames()
    forms = {
        "u8": u8,
        "float": u8.astype(np.float32) / 255.0,
        "torch": torch.from_numpy(u8).to(torch.bfloat16) / 255.0,
        "list": [u8[i] for i in range(T)],
        "list_torch": [torch.from_numpy(u8[i : i + 1]).float() / 255.0 for i in range(T)],
    }
    for name, frames in forms.items():
        r = ex.export_frames(frames, tmp_path / f"{name}.apng")
        got = pil_frames(r.path)[0][..., :3]
        tol = 2 if name == "torch" else 0  # bfloat16 has 8 bits of mantissa
        assert np.abs(got.astype(int) - u8.astype(int)).max() <= tol, name
    grey = ex.export_frames(np.full((2, 4, 6, 1), 0.5, np.float32), tmp_path / "g.apng")
    assert (pil_frames(grey.path)[0][..., :3] == 128).all()
    with pytest.raises(ValueError, match=r"\[T, H, W, C\].*got shape \(2, 3\)"):
        ex.export_frames(np.zeros((2, 3)), tmp_path / "bad.gif")
    with pytest.raises(ValueError, match="fps must be a positive number"):
        ex.export_frames(u8, tmp_path / "bad.gif", fps=0)
    with pytest.raises(ValueError, match="does not fit format 'mp4'"):
        ex.export_frames(u8, tmp_path / "bad.gif", fmt="mp4")
    with pytest.raises(ValueError, match="With a prefix, path_or_dir is the output folder"):
        ex.export_frames(u8, tmp_path / "a.gif", prefix="walk")
    with pytest.raises(ValueError, match="Unknown export format 'avi'"):
        ex.export_frames(u8, tmp_path / "bad.gif", fmt="avi")


BAD_SETTINGS = [
    ("x.gif", dict(loop_count=-1), "loop_count must be a whole number of 0 or more"),
    ("x.gif", dict(loop_count=1.5), "loop_count must be a whole number"),
    ("x.gif", dict(fps="fast"), "fps must be a number"),
    ("x.gif", dict(fps=0.001), "fps 0.001 is too slow to store: use at least 0.01"),
    ("x.webp", dict(quality=101), "quality must be a finite number from 0 to 100"),
    ("x.webp", dict(quality="best"), "quality must be a finite number"),
    ("x.png", dict(columns=0), "columns must be a whole number of 1 or more"),
    ("x.png", dict(padding=-1), "padding must be a whole number of 0 or more"),
    ("x.gif", dict(metadata=["prompt"]), "metadata must be a dict"),
    ("x.gif", dict(metadata={"x": object()}), "JSON-serialisable.*pass strings, numbers"),
    ("x.apng", dict(metadata={"x": object()}), "JSON-serialisable.*pass strings, numbers"),
    ("x.gif", dict(key_color=KEY, key_tolerance=2), r"key tolerance must be a finite number from 0 to 1 \(got 2\); use e.g. 0.1"),
    ("x.gif", dict(key_color=KEY, key_tolerance="loose"), r"key tolerance must be a finite number from 0 to 1 \(got 'loose'\)"),
    ("x.gif", dict(key_color=KEY, key_softness=-0.5), r"key softness must be a finite number from 0 to 1 \(got -0.5\); use .*hard edge"),
    ("x.gif", dict(alpha=np.ones((2, 2))), r"alpha must be \[T, H, W\]"),
    ("x.gif", dict(fmt="avi"), "Unknown export format"),
    ("x.avi", {}, "unknown extension"),
    ("x.gif", dict(fmt="png_sequence"), "PNG sequence is written to a folder.*pass a folder path"),
]


@pytest.mark.parametrize("name,settings,words", BAD_SETTINGS)
def test_bad_settings_raise_the_input_error_and_write_nothing(tmp_path, name, settings, words):
    with pytest.raises(InvalidInputError, match=words):
        ex.export_frames(sprite_frames(), tmp_path / name, **settings)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("frames,words", [
    ([], "pass at least one frame"),
    ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)], "same size.*resize them"),
    (np.zeros((2, 0, 4, 3), np.uint8), "No pixels to export"),
    (np.full((2, 4, 4, 3), 4000, np.uint16), r"uint16 with values 4000\.\.4000.*divide 16-bit images by 65535"),
    (np.full((2, 4, 4, 3), -1, np.int32), "integers in 0..255, or floats in 0..1"),
])
def test_frames_that_cannot_be_exported_say_what_to_do(tmp_path, frames, words):
    with pytest.raises(InvalidInputError, match=words):
        ex.export_frames(frames, tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


def test_one_uint8_conversion_for_frames_and_images():
    values = {
        "float": np.array([[[-0.5, 0.5, 2.0]]], np.float32),
        "nan": np.array([[[np.nan, 0.0, 1.0]]], np.float64),
        "bool": np.array([[[True, False, True]]]),
        "int": np.array([[[0, 128, 255]]], np.int64),
        "bfloat16": torch.tensor([[[0.0, 0.5, 1.0]]], dtype=torch.bfloat16),
    }
    for name, v in values.items():
        frame = ex.frames_uint8(v)[0]
        assert frame.dtype == np.uint8 and np.array_equal(frame, images.to_uint8(v)), name
    assert ex.frames_uint8(values["float"])[0, 0, 0].tolist() == [0, 128, 255]
    for convert in (ex.frames_uint8, images.to_uint8):
        with pytest.raises(InvalidInputError, match="divide 16-bit images by 65535"):
            convert(np.full((1, 2, 3), 300, np.uint16))


def test_read_metadata_of_what_it_cannot_read_says_what_to_pass(tmp_path):
    with pytest.raises(InvalidInputError, match="No PNG frames.*pass a PNG sequence folder"):
        ex.read_metadata(tmp_path)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=r"unknown format\. Pass a file written by the export"):
        ex.read_metadata(tmp_path / "x.txt")


def test_quality_maps_onto_encoder_settings(tmp_path):
    frames = sprite_frames(h=14, w=16)
    best = ex.export_frames(frames, tmp_path / "q100.mp4", quality=100)
    worst = ex.export_frames(frames, tmp_path / "q0.mp4", quality=0)
    assert best.settings["crf"] == 1 and worst.settings["crf"] == 51  # 0 would need a profile few players play
    assert best.bytes > worst.bytes
    lossless = ex.export_frames(frames, tmp_path / "l.webm", lossless=True)
    assert lossless.settings["lossless"] == 1 and "crf" not in lossless.settings
    exact = ex.export_frames(frames, tmp_path / "l.mp4", lossless=True)
    assert exact.settings["qp"] == 0 and any("Safari, QuickTime and most hardware decoders" in n for n in exact.notes)
    assert not any("QuickTime" in n for n in best.notes)
    gif = ex.export_frames(frames, tmp_path / "l.gif", lossless=True)  # nothing to switch on: said, not ignored
    assert "GIF has no lossless mode: it keeps at most 256 colours (exactly, when the clip has no more)." in gif.notes


# ----------------------------------------------------------------------------- key_out


def test_key_out_alpha_ramp_and_key_colour_forms():
    img = np.zeros((1, 6, 8, 3), np.uint8)
    img[...] = KEY
    img[0, 0, 0] = (10, 245, 12)  # close to the key: transparent too
    img[0, 0, 1] = (60, 255, 0)  # distance 60/441.7 = 0.136: inside the soft ramp
    img[0, 2:5, 3:7] = RED
    rgba = ex.key_out(img, KEY, 0.1)
    a = rgba[0, ..., 3].astype(int)
    assert a[0, 0] == 0 and a[5, 0] == 0 and a[0, 7] == 0
    expected = round((60 / (255 * np.sqrt(3)) - 0.1) / 0.1 * 255)
    assert abs(a[0, 1] - expected) <= 1
    assert (a[2:5, 3:7] == 255).all()
    for form in ["#00ff00", "lime", (0, 255, 0), (0.0, 1.0, 0.0), np.array([0, 255, 0])]:
        assert np.array_equal(ex.key_out(img, form, 0.1), rgba)
    hard = ex.key_out(img, KEY, 0.1, softness=0.0)[0, ..., 3]
    assert hard[0, 1] == 255 and hard[0, 0] == 0


def test_despill_removes_key_cast_on_edges_only():
    img = np.zeros((1, 7, 9, 3), np.uint8)
    img[...] = KEY
    img[0, 1:6, 2:7] = RED
    img[0, 1:6, 2] = (100, 148, 20)  # left edge: half red, half key green
    img[0, 3, 4] = (40, 180, 60)  # interior pixel of a green hue: not an edge, must stay
    plain = ex.key_out(img, KEY, 0.1, despill=False)
    clean = ex.key_out(img, KEY, 0.1, despill=True)
    assert np.array_equal(plain[..., 3], clean[..., 3])
    assert np.array_equal(plain[..., :3], img)  # no despill: colours untouched

    def green_cast(p):
        p = p.astype(float)
        return p[1] - (p[0] + p[2]) / 2

    edge_before, edge_after = plain[0, 3, 2, :3], clean[0, 3, 2, :3]
    assert green_cast(edge_before) > 50 and green_cast(edge_after) <= 0.5
    assert abs(edge_after.astype(int).mean() - edge_before.astype(int).mean()) <= 1  # brightness kept
    assert np.array_equal(clean[0, 3, 4, :3], img[0, 3, 4])  # interior unchanged
    red = np.zeros((7, 9), bool)
    red[1:6, 3:7] = True
    red[3, 4] = False
    assert (clean[0][red] == np.array(RED + (255,))).all()  # red has no green cast: kept
    # transparent pixels take the colour of their visible neighbours (2 px), then black
    assert clean[0, 3, 1, 3] == 0 and np.array_equal(clean[0, 3, 1, :3], clean[0, 3, 2, :3])
    assert (clean[0, 0, :, :3] != np.array(KEY)).any(axis=-1).all()
    wide = np.zeros((1, 5, 12, 3), np.uint8)
    wide[...] = KEY
    wide[0, :, :2] = RED
    far = ex.key_out(wide, KEY, 0.1)[0]
    assert (far[:, 2:4, :3] == np.array(RED)).all() and (far[:, 4:, :3] == 0).all()


def test_key_out_in_chunks_matches_one_pass(monkeypatch):
    frames = sprite_frames(t=7)
    whole = ex.key_out(frames, KEY, 0.1)
    monkeypatch.setattr(ex.frames, "_KEY_CHUNK_PIXELS", H * W * 2)  # two frames at a time
    assert np.array_equal(ex.key_out(frames, KEY, 0.1), whole)


# ----------------------------------------------------------------------------- naming
def test_keyed_sprite_into_opaque_output_never_shows_the_key_colour(tmp_path):
    frames = sprite_frames()
    r = ex.export_frames(frames, tmp_path / "k.mp4", key_color=KEY)  # MP4 has no alpha: a grey, not the key
    got, _ = ffmpeg_frames(r.path)
    corner = got[:, :2, -3:].reshape(-1, 3).astype(int)
    assert np.abs(corner - np.array(ex.LIGHT_BACKGROUND)).max() <= 6, corner[:3]  # red sprite -> light grey
    assert any(f"composited over {ex.LIGHT_BACKGROUND}" in n for n in r.notes)
    # opaque GIF (a format with alpha) over a chosen colour: no transparency, the colour behind the sprite
    r = ex.export_frames(frames, tmp_path / "k.gif", key_color=KEY, opaque=True, background="#102030")
    got, _, info, _ = pil_frames(r.path)
    assert "transparency" not in info and (got[..., 3] == 255).all()
    assert tuple(got[0, 0, 0, :3]) == (16, 32, 48) and tuple(got[0, 6, 4, :3]) == RED


def test_a_light_character_gets_a_dark_background():
    rgb = np.full((8, 8, 3), 240, np.uint8)
    alpha = np.zeros((8, 8), np.uint8)
    alpha[2:6, 2:6] = 255
    assert ex.contrasting_background(rgb, alpha) == ex.DARK_BACKGROUND
    assert ex.contrasting_background(rgb // 4, alpha) == ex.LIGHT_BACKGROUND
