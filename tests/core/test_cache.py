"""The cache holds display thumbnails only (bounded in pixels and bytes) and survives a killed run."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mediafixtures
from vlm2vec_core import InputError, iter_items
from vlm2vec_core.media import documents
from vlm2vec_core.media.documents import (
    STALE_SECONDS,
    THUMB_BUDGET,
    THUMB_SIDE,
    cache_image,
    cache_thumbnail,
    sweep_cache,
)

_TEXT = (
    "the index stores one vector per page and per clip so that a question finds the right place in a document "
    "quickly revenue grew by twelve percent in the third quarter while costs fell model encoder retrieval table"
)
_WORDS = _TEXT.split(" ")


def text_pdf(path: Path, n_pages: int, *, lines: int = 58, words: int = 15, seed: int = 0) -> Path:
    """A text-heavy letter-size PDF as a word processor writes one: Helvetica 10 pt lines (real PDF text, not a
    picture of text), a 16 pt heading a page; about 850 words a page by default, denser than most documents."""
    rng = random.Random(seed)
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    kids = []
    for p in range(n_pages):
        body = [b"BT /F1 16 Tf 72 740 Td (Section %d: results and discussion) Tj ET" % (p + 1)]
        body.append(b"BT /F1 10 Tf 12 TL 72 716 Td")
        body += [b"(%s) '" % " ".join(rng.choice(_WORDS) for _ in range(words)).encode() for _ in range(lines)]
        body.append(b"ET")
        stream = b"\n".join(body)
        page, content = 4 + 2 * p, 5 + 2 * p
        objects[content] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        objects[page] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % content
        )
        kids.append(b"%d 0 R" % page)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), n_pages)
    return mediafixtures.write_raw_pdf(path, objects)


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def test_text_pages_cache_a_legible_thumbnail_of_at_most_40_kib(tmp_path: Path) -> None:
    pdf = text_pdf(tmp_path / "text.pdf", 20)
    cache = tmp_path / "cache"
    items = list(iter_items(pdf, cache_dir=cache))
    assert len(items) == 20
    files = _cache_files(cache)
    assert len(files) == 20 and all(p.suffix == ".webp" for p in files)  # one small file a page, nothing else
    assert max(p.stat().st_size for p in files) <= THUMB_BUDGET == 40 * 1024
    for item in items:
        with Image.open(item.image_path) as thumb:
            # shrunk for the byte budget only as far as needed: 10 pt text stays readable (about 5 px x-height)
            assert 640 <= max(thumb.size) <= THUMB_SIDE
            assert item.thumbnail_size == thumb.size
    sparse = list(iter_items(text_pdf(tmp_path / "sparse.pdf", 2, lines=30, words=10), cache_dir=cache))
    assert all(max(i.thumbnail_size or (0, 0)) == THUMB_SIDE for i in sparse)  # a typical page: the full side


def test_clip_thumbnails_are_bounded_too(tmp_path: Path) -> None:
    video = mediafixtures.make_video(tmp_path / "wide.mp4", seconds=1, fps=5, size=(1920, 1080))
    (clip,) = list(iter_items(video, cache_dir=tmp_path / "cache", clip_seconds=1))
    with Image.open(clip.image_path) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (THUMB_SIDE, 432)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8))
    path, size = cache_thumbnail(noise, tmp_path / "cache", "noise.webp")  # the worst case for any codec
    assert path.stat().st_size <= THUMB_BUDGET and max(size) < THUMB_SIDE


def test_a_frame_65536_pixels_wide_gets_a_thumbnail_not_an_oserror(tmp_path: Path) -> None:
    strip = Image.new("RGB", (65536, 4), (200, 30, 30))
    path, size = cache_thumbnail(strip, tmp_path / "c", "strip.webp", source="wide.mp4", location="0.00-1.00 s")
    assert size == (THUMB_SIDE, 1) and Image.open(path).size == size
    with pytest.raises(ValueError, match="cannot write the image as JPEG") as info:  # the old full-size writer
        cache_image(strip, tmp_path / "c", "strip.jpg")
    assert not isinstance(info.value, OSError)
    with pytest.raises(InputError, match=r"wide\.mp4, 0\.00-1\.00 s: nothing to show: the image is 0x0"):
        cache_thumbnail(
            Image.new("RGB", (0, 0)), tmp_path / "c", "empty.webp", source="wide.mp4", location="0.00-1.00 s"
        )
    assert not list((tmp_path / "c").glob(".tmp-*"))


def test_a_thumbnail_the_encoder_refuses_is_an_input_error_and_the_rest_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = mediafixtures.make_pdf(tmp_path / "a.pdf", n_pages=3, size=(200, 300))
    real = documents._webp
    calls = {"n": 0}

    def refuses_the_second(image: Image.Image, quality: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("encoder error -2 when writing image file")  # what Pillow raises on a refused frame
        return real(image, quality)

    monkeypatch.setattr(documents, "_webp", refuses_the_second)
    errors: list[InputError] = []
    items = list(iter_items(pdf, cache_dir=tmp_path / "cache", errors=errors))
    assert [i.page for i in items] == [1, 3]
    assert [str(e) for e in errors] == [
        f"{pdf}, page 2: cannot make its thumbnail (encoder error -2 when writing image file)"
    ]
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_a_damaged_cached_thumbnail_is_written_again(tmp_path: Path) -> None:
    pdf = mediafixtures.make_pdf(tmp_path / "a.pdf", n_pages=1, size=(200, 300))
    (first,) = list(iter_items(pdf, cache_dir=tmp_path / "cache"))
    first.image_path.write_bytes(b"")  # e.g. a crash of the machine before the data reached the disk
    (again,) = list(iter_items(pdf, cache_dir=tmp_path / "cache"))
    assert again.image_path == first.image_path and Image.open(again.image_path).size == again.thumbnail_size


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_stale_temp_files_are_removed_when_the_cache_is_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    stale, fresh, kept = cache / ".tmp-a1b2.webp", cache / ".tmp-c3d4.webp", cache / "notes.txt"
    for path in (stale, fresh, kept):
        path.write_bytes(b"")
    _age(stale, STALE_SECONDS + 60)
    _age(kept, STALE_SECONDS + 60)
    pdf = mediafixtures.make_pdf(tmp_path / "a.pdf", n_pages=1, size=(100, 100))
    assert len(list(iter_items(pdf, cache_dir=cache))) == 1
    assert not stale.exists()
    assert fresh.exists()  # young: maybe another process's write in progress
    assert kept.exists()  # not a temp file
    _age(fresh, STALE_SECONDS + 1)
    assert sweep_cache(cache) == 0  # once per process and folder...
    assert sweep_cache(cache, force=True) == 1 and not fresh.exists()  # ...unless asked again
    assert sweep_cache(tmp_path / "no-such-folder") == 0


_KILLED_WRITER = """
import os, sys, time
from vlm2vec_core import iter_items
from vlm2vec_core.media import documents
def stuck(src, dst):  # the process dies between writing a temp file and renaming it
    print("writing", flush=True)
    time.sleep(60)
os.replace = stuck
list(iter_items(sys.argv[1], cache_dir=sys.argv[2]))
"""


def test_a_run_killed_mid_write_leaves_nothing_the_next_run_keeps(tmp_path: Path) -> None:
    pdf = mediafixtures.make_pdf(tmp_path / "a.pdf", n_pages=2, size=(200, 300))
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(pdf), str(cache)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    (leftover,) = list(cache.glob(".tmp-*"))  # what the killed run left
    assert _cache_files(cache) == []  # and no half-written thumbnail under a real name
    _age(leftover, STALE_SECONDS + 60)  # as a later run finds it
    items = list(iter_items(pdf, cache_dir=cache))
    assert not list(cache.glob(".tmp-*"))
    assert [p.name for p in _cache_files(cache)] == sorted(i.image_path.name for i in items)
    for item in items:
        with Image.open(item.image_path) as thumb:
            thumb.load()


def _hits(items: list) -> list:
    from vlm2vec_core.index.store import Hit

    return [Hit(item.id, 0.9 - n / 100, item.metadata()) for n, item in enumerate(items)]


def test_a_chat_model_gets_the_page_rendered_again_never_its_thumbnail(tmp_path: Path) -> None:
    import base64

    from vlm2vec_core.apps.chat import build_messages, hit_images

    pdf = text_pdf(tmp_path / "notes.pdf", 2)
    hits = _hits(list(iter_items(pdf, cache_dir=tmp_path / "cache")))
    (url,) = hit_images(hits[1], max_side=2000)
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (1224, 1584)  # the page at its 144 dpi, where the thumbnail is 593x768
    assert len(build_messages("q?", hits)[-1]["content"]) == 1 + 2 * 2  # the question, then a label and a page each
    pdf.unlink()  # the PDF gone: its label goes, its thumbnail does not
    assert hit_images(hits[1]) == []


def _text_lines(tile: np.ndarray) -> int:
    """How many separate lines of text a picture shows (bands of rows with ink)."""
    inked = (tile < 128).any(axis=1)
    return int(np.count_nonzero(inked[1:] & ~inked[:-1]) + inked[0])


def test_the_contact_sheet_shows_the_query_and_the_top_of_a_page_at_a_readable_size(tmp_path: Path) -> None:
    from vlm2vec_core.apps.sheet import HEADER, LABEL, TILE, contact_sheet

    pdf = text_pdf(tmp_path / "notes.pdf", 2)
    hits = _hits(list(iter_items(pdf, cache_dir=tmp_path / "cache")))
    out = contact_sheet(hits, tmp_path / "sheet.png", query="where did revenue grow?")
    sheet = np.asarray(Image.open(out).convert("L"))
    assert sheet.shape == (HEADER + TILE + LABEL, 2 * TILE)
    assert (sheet[:HEADER, :400] < 100).any()  # the query's words in the band
    page = sheet[HEADER + 4 : HEADER + TILE - 4, 4 : TILE - 4]
    # 10 pt lines, 12 pt apart: the whole page at this size would be 58 lines blurred into ~45 px-high stripes;
    # the top of the page at about 1 px a point shows some 35 of them, each line apart from the next
    assert 25 <= _text_lines(page) <= 45
    pdf.unlink()  # the PDF gone: the thumbnail stands in, the tile is not blank
    gone = np.asarray(Image.open(contact_sheet(hits[:1], tmp_path / "gone.png")).convert("L"))
    assert gone.shape == (TILE + LABEL, TILE) and _text_lines(gone[4 : TILE - 4, 4 : TILE - 4]) > 10


def test_a_thumbnail_shrunk_from_the_fitted_page_has_the_size_and_looks_of_one_from_the_full_render(
    tmp_path: Path,
) -> None:
    from vlm2vec_core import FakeEncoder
    from vlm2vec_core.index.pipeline import fitting_of

    fitting = fitting_of(FakeEncoder())
    assert fitting is not None
    fitted: list[Image.Image] = []

    def fit(image: Image.Image) -> Image.Image:
        fitted.append(fitting.family.fit_image(image, fitting.limits))
        return fitted[-1]

    sparse = text_pdf(tmp_path / "sparse.pdf", 3, lines=30, words=10)
    dense = text_pdf(tmp_path / "dense.pdf", 2, seed=1)
    for pdf in (sparse, dense):
        plain = list(iter_items(pdf, cache_dir=tmp_path / "plain"))
        fitted.clear()
        quick = list(iter_items(pdf, cache_dir=tmp_path / "fit", fit=fit))
        assert len(fitted) == len(quick)
        assert all(max(f.size) < max(p.content.image.size) for f, p in zip(fitted, quick, strict=True))
        for a, b in zip(quick, plain, strict=True):
            assert a.thumbnail_size == b.thumbnail_size and a.metadata().keys() == b.metadata().keys()
            assert a.image_path.stat().st_size <= THUMB_BUDGET
            with Image.open(a.image_path) as x, Image.open(b.image_path) as y:
                assert x.size == a.thumbnail_size
                mine, theirs = np.asarray(x.convert("L"), float), np.asarray(y.convert("L"), float)
            if pdf == sparse:  # shrunk from the fitted page: other bytes, the same page to the eye
                assert a.image_path.read_bytes() != b.image_path.read_bytes()
                assert np.abs(mine - theirs).mean() < 4, np.abs(mine - theirs).mean()
            else:  # too dense for the budget at full size: made from the full render, as ever
                assert a.image_path.read_bytes() == b.image_path.read_bytes()
                assert max(a.thumbnail_size or (0, 0)) < THUMB_SIDE
