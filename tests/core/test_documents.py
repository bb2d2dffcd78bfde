"""Files to items: stable ids, cached page images and thumbnails, references, metadata, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import mediafixtures
from vlm2vec_core import (
    FakeEncoder,
    Input,
    InputError,
    file_digest,
    input_for_reference,
    iter_items,
    parse_reference,
    read_clip_frames,
    video_clips,
    walk,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    mediafixtures.make_pdf(docs / "a.pdf", n_pages=3)
    mediafixtures.make_video(docs / "sub" / "talk.mp4", seconds=3.0, fps=10)
    mediafixtures.make_image(docs / "photo.png")
    (docs / "notes.txt").write_text("ignored")
    (docs / ".hidden.png").write_bytes(b"")
    return docs


def test_walk_finds_known_files_in_a_stable_order(folder: Path):
    names = [p.relative_to(folder).as_posix() for p in walk([folder])]
    assert names == ["a.pdf", "photo.png", "sub/talk.mp4"]
    assert [p.name for p in walk([folder], recursive=False)] == ["a.pdf", "photo.png"]


def test_items_have_stable_ids_metadata_and_cached_images(folder: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    items = [item for path in walk([folder]) for item in iter_items(path, cache_dir=cache, clip_seconds=1.0)]
    assert [i.kind for i in items] == ["page"] * 3 + ["image"] + ["clip"] * 3
    assert len({i.id for i in items}) == len(items)
    digest = file_digest(folder / "a.pdf")
    assert items[0].id == f"{digest[:32]}-p1" and items[0].reference.endswith("a.pdf#page=1")
    assert items[4].reference.endswith("talk.mp4#t=0,1") and items[4].label == "talk.mp4 0:00-0:01"
    for item in items:
        meta = item.metadata()
        assert None not in meta.values()
        assert Path(meta["image_path"]).is_file()
        assert meta["id"] == item.id and meta["kind"] == item.kind
    assert items[1].metadata()["page"] == 2 and items[1].metadata()["page_count"] == 3
    assert items[5].metadata()["start_seconds"] == 1.0
    # a second run writes nothing new and gives the same ids
    before = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = [item for path in walk([folder]) for item in iter_items(path, cache_dir=cache, clip_seconds=1.0)]
    assert [i.id for i in again] == [i.id for i in items]
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    assert not list(cache.glob(".tmp-*"))


def test_ids_follow_content_not_name(folder: Path, tmp_path: Path):
    moved = tmp_path / "renamed.pdf"
    shutil.copy(folder / "a.pdf", moved)
    original = [i.id for i in iter_items(folder / "a.pdf", cache_dir=tmp_path / "c")]
    assert [i.id for i in iter_items(moved, cache_dir=tmp_path / "c")] == original
    mediafixtures.make_pdf(moved, n_pages=3, seed=5)  # changed content
    assert [i.id for i in iter_items(moved, cache_dir=tmp_path / "c")] != original


def test_bad_files_are_reported_while_the_rest_goes_on(folder: Path, tmp_path: Path):
    bad_pdf = folder / "broken.pdf"
    bad_pdf.write_bytes(b"%PDF-1.4 garbage")
    bad_video = folder / "empty.mp4"
    bad_video.write_bytes(b"")
    errors: list[InputError] = []
    items = [i for p in walk([folder]) for i in iter_items(p, cache_dir=tmp_path / "c", errors=errors)]
    assert len(items) == 3 + 1 + 1  # pages, image, one 10-second clip
    assert sorted(Path(e.source or "").name for e in errors) == ["broken.pdf", "empty.mp4"]
    with pytest.raises(InputError, match="notes.txt: not a PDF, video or image"):
        list(iter_items(folder / "notes.txt"))


def test_references_round_trip(folder: Path):
    video = folder / "sub" / "talk.mp4"
    assert parse_reference(f"{video}#t=1,2.5") == (video, 1.0, 2.5, None)
    assert parse_reference("doc.pdf#page=3") == (Path("doc.pdf"), None, None, 3)
    assert parse_reference("plain.png") == (Path("plain.png"), None, None, None)
    with pytest.raises(ValueError, match="start must be before end"):
        parse_reference("x.mp4#t=5,2")
    clip = list(video_clips(video, clip_seconds=1.0))[1]
    frames, indices = read_clip_frames(video, clip.start, clip.end)
    assert indices == list(clip.frame_indices)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(frames, clip.frames, strict=True))
    fake = FakeEncoder(dim=8)
    by_ref = fake.encode([input_for_reference(clip_reference := f"{video}#t={clip.start:g},{clip.end:g}")])
    np.testing.assert_allclose(by_ref, fake.encode([Input(video=clip)]))
    assert input_for_reference(clip_reference).video == clip_reference
    page = input_for_reference(f"{folder / 'a.pdf'}#page=2")
    assert page.image is not None and page.image.size == (1224, 1584)  # letter at 144 dpi
    assert input_for_reference(video).video == video
    with pytest.raises(InputError, match="starts after the end"):
        read_clip_frames(video, 50, 60)


def test_input_for_metadata_prefers_the_cached_image(folder: Path, tmp_path: Path):
    from vlm2vec_core import input_for_metadata

    items = list(iter_items(folder / "a.pdf", cache_dir=tmp_path / "c"))
    meta = items[0].metadata()
    assert input_for_metadata(meta).image == Path(meta["image_path"])
    Path(meta["image_path"]).unlink()  # cache gone: the reference is rendered again
    again = input_for_metadata(meta)
    assert again.image is not None and not isinstance(again.image, Path)
    clip = next(iter(iter_items(folder / "sub" / "talk.mp4", cache_dir=tmp_path / "c", clip_seconds=1.0)))
    assert input_for_metadata(clip.metadata()).video == clip.reference
    with pytest.raises(ValueError, match="no 'reference'"):
        input_for_metadata({"kind": "page"})
