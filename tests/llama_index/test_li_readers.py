"""PDFPageReader and VideoClipReader: documents, metadata, stable ids, the image cache, bad files."""

from __future__ import annotations

import logging
import shutil
import types
from pathlib import Path

import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.schema import ImageDocument
from PIL import Image

import mediafixtures
from llama_index.readers.vlm2vec import PDFPageReader, VideoClipReader, file_extractor
from vlm2vec_core import InputError, file_digest

DPI = 72  # as the media fixture's pages are small, so are the rendered images
CLIP_SECONDS = 1.0


def snapshot(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_exports():
    import llama_index.readers.vlm2vec as readers

    assert sorted(readers.__all__) == ["ImageFileReader", "PDFPageReader", "VideoClipReader", "file_extractor"]


def test_pdf_pages_become_image_documents(media: Path, tmp_path: Path):
    pdf = media / "report.pdf"
    docs = PDFPageReader(cache_dir=tmp_path, dpi=DPI).load_data(pdf)
    assert len(docs) == 3
    assert all(isinstance(d, ImageDocument) for d in docs)
    for number, doc in enumerate(docs, start=1):
        meta = doc.metadata
        assert meta["page"] == number
        assert meta["page_label"] == str(number)
        assert meta["total_pages"] == meta["page_count"] == 3
        assert meta["file_name"] == "report.pdf"
        assert meta["source"] == str(pdf)
        assert meta["reference"] == f"{pdf}#page={number}"
        page_image = Path(meta["file_path"])
        assert page_image.parent == tmp_path
        assert doc.image_path == meta["reference"]  # what the embedding renders: the page, not the thumbnail
        with Image.open(page_image) as image:  # file_path opens as an image (ColPali's rerank does this)
            assert image.width <= 240 and image.height <= 320
        assert doc.text == ""
        assert "file_path" in doc.excluded_llm_metadata_keys
        assert "page_label" not in doc.excluded_llm_metadata_keys
    assert docs[0].id_ == f"{file_digest(pdf)[:32]}-p1"
    assert len({d.metadata["file_path"] for d in docs}) == 3


def test_ids_are_stable_and_the_cache_is_reused(media: Path, tmp_path: Path):
    copy = tmp_path / "elsewhere" / "renamed.pdf"
    copy.parent.mkdir()
    shutil.copy(media / "report.pdf", copy)
    cache = tmp_path / "cache"
    first = PDFPageReader(cache_dir=cache, dpi=DPI).load_data(media / "report.pdf")
    written = snapshot(cache)
    assert len(written) == 3
    again = PDFPageReader(cache_dir=cache, dpi=DPI).load_data(copy)  # another run, the same content moved
    assert [d.id_ for d in again] == [d.id_ for d in first]
    assert snapshot(cache) == written  # nothing new written, nothing rewritten
    other = PDFPageReader(cache_dir=cache, dpi=DPI).load_data(media / "memo.pdf")
    assert not {d.id_ for d in other} & {d.id_ for d in first}


def test_video_clips_become_documents(media: Path, tmp_path: Path):
    video = media / "talk.mp4"
    docs = VideoClipReader(cache_dir=tmp_path, clip_seconds=CLIP_SECONDS).load_data(video)
    assert len(docs) == 3
    for i, doc in enumerate(docs):
        meta = doc.metadata
        assert (meta["start_seconds"], meta["end_seconds"]) == pytest.approx((float(i), float(i + 1)), abs=0.11)
        assert meta["reference"] == doc.image_path == f"{video}#t={meta['start_seconds']:g},{meta['end_seconds']:g}"
        assert meta["file_path"] == meta["thumbnail_path"]
        with Image.open(meta["thumbnail_path"]) as thumb:
            assert thumb.size == (160, 120)
        assert meta["kind"] == "clip"
        assert meta["clip_index"] == i
    ids = [d.id_ for d in VideoClipReader(cache_dir=tmp_path, clip_seconds=CLIP_SECONDS).load_data(video)]
    assert ids == [d.id_ for d in docs]


def test_lazy_load_streams(media: Path, tmp_path: Path):
    stream = PDFPageReader(cache_dir=tmp_path, dpi=DPI).lazy_load_data([media / "report.pdf", media / "memo.pdf"])
    assert isinstance(stream, types.GeneratorType)
    first = next(stream)
    assert first.metadata["page"] == 1
    assert len(list(tmp_path.iterdir())) == 1  # only the first page rendered so far
    assert len(list(stream)) == 4


def test_a_bad_file_is_reported_and_the_rest_read(media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not really a pdf")
    reader = PDFPageReader(cache_dir=tmp_path / "cache", dpi=DPI)
    with caplog.at_level(logging.WARNING):
        docs = reader.load_data([media / "report.pdf", bad, media / "memo.pdf"])
    assert len(docs) == 5
    assert len(reader.errors) == 1
    assert isinstance(reader.errors[0], InputError)
    assert "broken.pdf" in str(reader.errors[0])
    assert "broken.pdf" in caplog.text
    with pytest.raises(InputError, match=r"broken\.pdf"):
        PDFPageReader(cache_dir=tmp_path / "cache", raise_on_error=True).load_data(bad)
    clips = VideoClipReader(cache_dir=tmp_path / "cache")
    assert clips.load_data([media / "report.pdf"]) == []
    assert "reads video files only" in str(clips.errors[0])


def test_simple_directory_reader_with_file_extractor(media: Path, tmp_path: Path):
    folder = tmp_path / "docs"
    shutil.copytree(media, folder)
    mediafixtures.truncate(mediafixtures.make_video(folder / "cut.mp4", seconds=2.0), 0.3)
    mediafixtures.make_image(folder / "photo.png", size=(40, 30))
    mediafixtures.make_image(folder / "shot.jpg", size=(30, 40), seed=3)
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature and nothing readable
    extractor = file_extractor(cache_dir=tmp_path / "cache", dpi=DPI, clip_seconds=CLIP_SECONDS)
    assert {extractor[s].__class__.__name__ for s in (".png", ".jpg", ".jpeg", ".webp")} == {"ImageFileReader"}
    reader = SimpleDirectoryReader(str(folder), file_extractor=extractor)
    docs = reader.load_data()
    kinds = sorted(d.metadata["kind"] for d in docs)
    assert kinds == ["clip"] * 3 + ["image"] * 2 + ["page"] * 5
    images = {d.metadata["file_name"]: d for d in docs if d.metadata["kind"] == "image"}
    for name, mime in (("photo.png", "image/png"), ("shot.jpg", "image/jpeg")):
        image = images[name]
        assert isinstance(image, ImageDocument) and image.text == ""  # a picture, not its bytes as text
        assert image.image_path == str((folder / name).resolve()) and image.image_mimetype == mime
        assert image.id_.startswith(file_digest(folder / name)[:32])
    assert [Path(str(e.source)).name for e in extractor[".png"].errors] == ["broken.png"]
    page = next(d for d in docs if d.metadata["kind"] == "page")
    assert Path(page.metadata["file_path"]).parent == tmp_path / "cache"  # the page image, not the PDF
    assert page.metadata["file_size"] == (folder / page.metadata["file_name"]).stat().st_size  # SDR's metadata kept
    assert [str(e.source) for e in extractor[".mp4"].errors] == [str(folder / "cut.mp4")]
    streamed = list(SimpleDirectoryReader(str(folder), file_extractor=extractor).iter_data())
    assert sum(len(batch) for batch in streamed) == 10
