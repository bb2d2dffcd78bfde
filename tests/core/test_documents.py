"""Files to items: stable ids, cached thumbnails, references, metadata, full views, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mediafixtures
from vlm2vec_core import (
    FakeEncoder,
    Input,
    InputError,
    Item,
    file_digest,
    input_for_metadata,
    input_for_reference,
    iter_items,
    parse_reference,
    read_clip_frames,
    video_clips,
    walk,
)
from vlm2vec_core.media.documents import THUMB_SIDE, full_image
from vlm2vec_core.media.pdf import pdf_pages


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
        if item.kind != "image":  # a page's or a clip's display thumbnail: small WebP, its size recorded
            with Image.open(meta["image_path"]) as thumb:
                assert thumb.format == "WEBP" and max(thumb.size) <= THUMB_SIDE
                assert thumb.size == (meta["thumbnail_width"], meta["thumbnail_height"])
        else:
            assert meta["image_path"] == str((folder / "photo.png").resolve()) and "thumbnail_width" not in meta
    assert items[0].metadata()["dpi"] == 144 and "dpi" not in items[4].metadata()
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


def test_input_for_metadata_renders_a_page_from_its_pdf_never_its_thumbnail(folder: Path, tmp_path: Path):
    items = list(iter_items(folder / "a.pdf", cache_dir=tmp_path / "c", dpi=72))
    meta = items[1].metadata()
    assert Path(meta["image_path"]).is_file()  # the thumbnail is there, yet the model gets the page itself
    again = input_for_metadata(meta)
    assert isinstance(again.image, Image.Image) and again.image.size == (612, 792)  # at the dpi it was indexed at
    assert np.array_equal(np.asarray(again.image), np.asarray(items[1].content.image))  # type: ignore[union-attr]
    assert input_for_metadata(meta, dpi=36).image.size == (306, 396)
    (folder / "a.pdf").unlink()  # the source gone: an error naming it, not the thumbnail
    with pytest.raises(InputError, match=r"a\.pdf: file not found"):
        input_for_metadata(meta)
    clip = next(iter(iter_items(folder / "sub" / "talk.mp4", cache_dir=tmp_path / "c", clip_seconds=1.0)))
    assert input_for_metadata(clip.metadata()).video == clip.reference
    photo = next(iter(iter_items(folder / "photo.png", cache_dir=tmp_path / "c")))
    assert input_for_metadata(photo.metadata()).image == folder / "photo.png"
    with pytest.raises(ValueError, match="no 'reference'"):
        input_for_metadata({"kind": "page"})


def _legacy_metadata(item: Item, cache: Path) -> dict:
    """What an index written before thumbnails holds: image_path is the page rendered at full size (PNG)."""
    png = cache / f"{item.digest[:32]}-p{item.page}-144dpi.png"
    item.content.image.save(png)  # type: ignore[union-attr]
    meta = {k: v for k, v in item.metadata().items() if k not in ("dpi", "thumbnail_width", "thumbnail_height")}
    return {**meta, "image_path": str(png)}


def test_an_old_index_with_full_size_pngs_keeps_working(folder: Path, tmp_path: Path):
    item = list(iter_items(folder / "a.pdf", cache_dir=tmp_path / "c"))[2]
    old = _legacy_metadata(item, tmp_path / "c")
    assert input_for_metadata(old).image == Path(old["image_path"])  # the cached render, as before
    pixels = np.asarray(item.content.image)  # type: ignore[union-attr]
    assert np.array_equal(np.asarray(full_image(old)), pixels)
    Path(old["image_path"]).unlink()  # cache cleared: rendered again from the reference at 144 dpi
    assert np.array_equal(np.asarray(input_for_metadata(old).image), pixels)
    assert np.array_equal(np.asarray(full_image(old)), pixels)


def test_full_image_of_pages_clips_and_images(folder: Path, tmp_path: Path):
    pdf, video, photo = folder / "a.pdf", folder / "sub" / "talk.mp4", folder / "photo.png"
    page = next(iter(iter_items(pdf, cache_dir=tmp_path / "c", dpi=72)))
    expected = np.asarray(next(pdf_pages(pdf, dpi=72, pages=[1])).image)
    assert np.array_equal(np.asarray(full_image(page.metadata())), expected)  # the stored dpi
    assert np.array_equal(np.asarray(full_image(page)), expected)
    assert full_image(f"{pdf}#page=1").size == (1224, 1584)  # a bare reference: 144 dpi
    assert full_image(f"{pdf}#page=1", dpi=36).size == (306, 396)
    clip = list(iter_items(video, cache_dir=tmp_path / "c", clip_seconds=1.0))[1]
    frame = full_image(clip.metadata())
    assert frame.size == (160, 120)  # the video's own frame, not the thumbnail
    frames, _ = read_clip_frames(video, 1.0, 2.0, 1)
    assert np.array_equal(np.asarray(frame), np.asarray(frames[0]))
    image = next(iter(iter_items(photo, cache_dir=tmp_path / "c")))
    assert np.array_equal(np.asarray(full_image(image.metadata())), np.asarray(Image.open(photo).convert("RGB")))
    with pytest.raises(InputError, match=r"a\.pdf, page 9: no such page"):
        full_image(f"{pdf}#page=9")
    with pytest.raises(ValueError, match="no 'reference'"):  # a page's thumbnail alone is never its full view
        full_image({"kind": "page", "image_path": page.metadata()["image_path"], "thumbnail_width": 1})


def test_a_range_of_pages_gives_the_items_a_whole_file_run_gives(folder: Path, tmp_path: Path):
    pdf = mediafixtures.make_pdf(tmp_path / "five.pdf", n_pages=5)
    whole = list(iter_items(pdf, cache_dir=tmp_path / "whole"))
    errors: list[InputError] = []
    part = list(iter_items(pdf, cache_dir=tmp_path / "part", pages=[4, 2, 9], errors=errors))
    assert [i.page for i in part] == [4, 2]
    for got, want in zip(part, [whole[3], whole[1]], strict=True):
        assert (got.id, got.page_count, got.thumbnail_size, got.image_path.name) == (
            want.id,
            5,
            want.thumbnail_size,
            want.image_path.name,
        )
        assert {**got.metadata(), "image_path": ""} == {**want.metadata(), "image_path": ""}
    assert sorted(p.name for p in (tmp_path / "part").iterdir()) == sorted(i.image_path.name for i in part)
    assert [str(e) for e in errors] == [f"{pdf}, page 9: no such page: the PDF has 5 pages (pages are 1-based)"]
    for other in (folder / "photo.png", folder / "sub" / "talk.mp4"):  # pages mean nothing there
        with_pages = list(iter_items(other, cache_dir=tmp_path / "c", clip_seconds=1.0, pages=[2]))
        assert [i.id for i in with_pages] == [
            i.id for i in iter_items(other, cache_dir=tmp_path / "c", clip_seconds=1.0)
        ]
        assert with_pages


def test_full_views_in_a_worker_process_equal_those_made_here(tmp_path: Path) -> None:
    import numpy as np

    from mediafixtures import make_pdf, make_video
    from vlm2vec_core.errors import InputError
    from vlm2vec_core.index.store import Hit
    from vlm2vec_core.media.documents import full_image, iter_items

    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    video = make_video(tmp_path / "talk.mp4", seconds=2, fps=5, size=(64, 48))
    page = next(iter(iter_items(pdf, cache_dir=tmp_path / "cache", dpi=72))).metadata()
    clip = next(iter(iter_items(video, cache_dir=tmp_path / "cache", clip_seconds=1))).metadata()
    here, there = full_image(page), full_image(page, isolated=60)
    assert here.size == there.size and np.array_equal(np.asarray(here), np.asarray(there))
    frames_here = Hit("c", 1.0, clip).clip_frames(3)
    frames_there = Hit("c", 1.0, clip).clip_frames(3, isolated=60)
    assert frames_here and frames_there
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(frames_here, frames_there, strict=True))
    pdf.unlink()  # an error in the worker comes back as the same InputError, naming the file
    with pytest.raises(InputError, match="doc.pdf"):
        full_image(page, isolated=60)
    video.unlink()
    assert Hit("c", 1.0, clip).clip_frames(3, isolated=60) is None
