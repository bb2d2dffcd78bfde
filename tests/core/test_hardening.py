"""Forged and damaged inputs end as an InputError naming the file (and location), never another exception."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm2vec_core import FakeEncoder, Input, InputError
from vlm2vec_core.media.images import load_image


def _png_with_truncated_ihdr() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    data = buf.getvalue()
    return data[:8] + struct.pack(">I", 5) + b"IHDR" + data[16:21] + b"\0\0\0\0" + data[33:]  # Pillow: ValueError


def test_a_truncated_png_header_is_an_input_error(tmp_path: Path):
    forged = tmp_path / "forged.png"
    forged.write_bytes(_png_with_truncated_ihdr())
    with pytest.raises(InputError, match=r"forged\.png.*cannot open image"):
        load_image(forged)
    errors: list[InputError] = []
    assert FakeEncoder().encode([Input(image=forged), "fine"], errors=errors).shape == (1, 64)
    assert errors[0].index == 0


def test_a_shape_the_family_refuses_names_the_file(tmp_path: Path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (7000, 30)).save(strip)
    errors: list[InputError] = []
    FakeEncoder(family="qwen3-vl-embedding").encode([Input(image=strip)], errors=errors)
    assert "strip.png" in str(errors[0]) and "aspect ratio" in str(errors[0])


def test_implausible_video_timing_is_reported_once_not_looped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mediafixtures import make_video
    from vlm2vec_core.media import video

    path = make_video(tmp_path / "v.mp4", seconds=1, fps=9, size=(64, 48))

    def absurd(reader, source, count):  # type: ignore[no-untyped-def]
        fps = 4.7e-10  # what a damaged header said in the fuzzing run: 9 frames over about 2e10 s
        return video._Timeline(np.arange(count) / fps, count / fps, 1 / fps)

    monkeypatch.setattr(video, "_timeline", absurd)
    errors: list[InputError] = []
    assert list(video.video_clips(path, clip_seconds=10, errors=errors)) == []
    assert len(errors) == 1 and "implausible timing" in str(errors[0]) and "v.mp4" in str(errors[0])


def test_a_video_whose_every_clip_fails_is_not_recorded_as_indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mediafixtures import make_video
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore
    from vlm2vec_core.media import video

    (tmp_path / "docs").mkdir()
    make_video(tmp_path / "docs" / "v.mp4", seconds=2, fps=5, size=(64, 48))

    def broken(reader, source, indices, location):  # type: ignore[no-untyped-def]
        raise InputError("frames failed to decode", source=source, location=location)

    monkeypatch.setattr(video, "_decode", broken)
    store = ChromaStore.open(db=tmp_path / "db")
    # in this process (workers=0), where the patched decoder is; the worker path is covered by test_pipeline's
    # crashing-file tests, which end in the same "not recorded" rule
    report = index_paths(
        [tmp_path / "docs"], FakeEncoder(), store, cache_dir=tmp_path / "cache", clip_seconds=1, workers=0
    )
    assert report.errors and report.files_indexed == 0
    assert store.files() == []  # the next run tries the file again instead of skipping it


def test_clip_thumbnails_stay_small(tmp_path: Path):
    from mediafixtures import make_video
    from vlm2vec_core.media.documents import THUMB_SIDE, iter_items

    path = make_video(tmp_path / "wide.mp4", seconds=1, fps=5, size=(1600, 64))
    (clip,) = list(iter_items(path, cache_dir=tmp_path / "cache", clip_seconds=1))
    assert max(Image.open(clip.image_path).size) <= THUMB_SIDE


def test_an_edited_file_replaces_its_old_entries_without_prune(tmp_path: Path):
    from mediafixtures import make_pdf
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore

    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", n_pages=3, seed=1)
    store = ChromaStore.open(db=tmp_path / "db")
    index_paths([docs], FakeEncoder(), store, cache_dir=tmp_path / "cache", dpi=36)
    assert store.count() == 3
    make_pdf(docs / "report.pdf", n_pages=2, seed=2)  # edited in place: other content, fewer pages
    report = index_paths([docs], FakeEncoder(), store, cache_dir=tmp_path / "cache", dpi=36)
    assert store.count() == 2 and report.pruned == 3  # only the new version is found
    assert [r.items for r in store.files()] == [2]
