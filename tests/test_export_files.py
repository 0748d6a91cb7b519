"""Export's files: names that never overwrite, writes that leave nothing half-written, a missing or failing
encoder."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

import imageio_ffmpeg
from charmotion.dit_core import export as ex
from charmotion.dit_core.errors import InvalidInputError
from media import T, listing, pil_frames, sprite_frames



def test_unique_path_counts_like_comfyui_and_never_reuses(tmp_path):
    first = ex.unique_path(tmp_path, "walk", "mp4")
    assert first == tmp_path / "walk_00001_.mp4"
    first.write_bytes(b"x")
    assert ex.unique_path(tmp_path, "walk", ".gif") == tmp_path / "walk_00002_.gif"
    (tmp_path / "walk_00007_.png").write_bytes(b"x")
    assert ex.unique_path(tmp_path, "walk", "mp4") == tmp_path / "walk_00008_.mp4"
    (tmp_path / "walk_00007_.png").unlink()
    (tmp_path / "walk_00001_.mp4").unlink()
    (tmp_path / "walk_00009_.json").write_bytes(b"x")
    assert ex.unique_path(tmp_path, "walk", "png", companions=[".json"]) == tmp_path / "walk_00010_.png"
    assert ex.unique_path(tmp_path, "walker", "mp4") == tmp_path / "walker_00001_.mp4"
    sub = ex.unique_path(tmp_path, "video/walk", "mp4")
    assert sub == tmp_path / "video" / "walk_00001_.mp4" and sub.parent.is_dir()
    for bad in ["../escape", "/abs/x", ""]:
        with pytest.raises(InvalidInputError, match="Invalid file name prefix"):
            ex.unique_path(tmp_path, bad, "mp4")


def test_exports_never_overwrite(tmp_path):
    a = ex.export_frames(sprite_frames(), tmp_path, fmt="gif", prefix="clip")
    b = ex.export_frames(sprite_frames(t=3), tmp_path, fmt="gif", prefix="clip")
    assert (a.path.name, b.path.name) == ("clip_00001_.gif", "clip_00002_.gif")
    assert len(pil_frames(a.path)[1]) == T  # the first file is untouched
    target = tmp_path / "mine.webp"
    target.write_bytes(b"precious")
    r = ex.export_frames(sprite_frames(), target)
    assert target.read_bytes() == b"precious" and r.path == tmp_path / "mine_00001_.webp"
    assert any("exists and is kept" in n for n in r.notes)
    # a sprite sheet also keeps an existing atlas of the same name
    (tmp_path / "sheet.json").write_text("{}")
    s = ex.export_frames(sprite_frames(), tmp_path / "sheet.png")
    assert (tmp_path / "sheet.json").read_text() == "{}" and s.path.name == "sheet_00001_.png"
    assert "'sheet.json' exists and is kept; wrote 'sheet_00001_.png' instead." in s.notes  # the file that is there
    assert json.loads(s.files[1].read_text())["meta"]["image"] == "sheet_00001_.png"
    # overwrite=True replaces the named file
    o = ex.export_frames(sprite_frames(), target, overwrite=True)
    assert o.path == target and target.read_bytes() != b"precious"


def test_name_taken_while_writing_is_not_overwritten(tmp_path, monkeypatch):
    real_save = Image.Image.save

    def racing_save(self, fp, *args, **kwargs):  # another program creates the names meanwhile
        for name in ("walk.gif", "hero.png"):
            if not (tmp_path / name).exists():
                (tmp_path / name).write_bytes(b"theirs")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", racing_save)
    r = ex.export_frames(sprite_frames(), tmp_path / "walk.gif")
    assert (tmp_path / "walk.gif").read_bytes() == b"theirs"
    assert r.path == tmp_path / "walk_00001_.gif" and len(pil_frames(r.path)[1]) == T
    assert any("appeared while writing" in n for n in r.notes)
    s = ex.export_frames(sprite_frames(), tmp_path / "hero.png")
    assert (tmp_path / "hero.png").read_bytes() == b"theirs" and not (tmp_path / "hero.json").exists()
    assert [f.name for f in s.files] == ["hero_00001_.png", "hero_00001_.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


# ----------------------------------------------------------------------------- failures


def test_missing_ffmpeg_gives_the_fix(tmp_path, monkeypatch):
    def no_ffmpeg():
        raise RuntimeError("No ffmpeg exe could be found. Install ffmpeg on your system.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    for name in ("a.mp4", "a.webm"):
        with pytest.raises(ex.FFmpegNotFoundError) as err:
            ex.export_frames(sprite_frames(), tmp_path / name)
        msg = str(err.value)
        assert "pip install imageio-ffmpeg" in msg and "IMAGEIO_FFMPEG_EXE" in msg
    assert listing(tmp_path) == []
    assert ex.export_frames(sprite_frames(), tmp_path / "a.gif").path.exists()  # no ffmpeg needed


@pytest.mark.skipif(sys.platform == "win32", reason="uses a shell script as a failing ffmpeg")
def test_failing_ffmpeg_leaves_no_partial_file(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor last; do :; done\nprintf partial > "$last"\n'
                    'echo "Error: encoder exploded" >&2\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setattr(ex.writers, "_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ex.ExportError, match=r"exit status 3.*encoder exploded"):
        ex.export_frames(sprite_frames(), out / "a.mp4", metadata={"workflow": {}})
    assert listing(out) == []


def test_failing_pillow_writer_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_save(self, fp, format=None, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"GIF89a half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    for name in ("a.gif", "a.webp", "a.apng", "a.png", "seq"):
        with pytest.raises(OSError, match="disk full"):
            ex.export_frames(sprite_frames(), tmp_path / name)
    with pytest.raises(OSError, match="disk full"):
        ex.export_frames(sprite_frames(), tmp_path, fmt="png_sequence", prefix="p")
    assert listing(tmp_path) == []
