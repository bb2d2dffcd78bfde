"""Forged PDFs: a page tree that lies about its size costs the pages the file holds and one report, not a
million; every failure is an InputError naming the file and the page."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from vlm2vec_core import FakeEncoder, InputError, iter_items
from vlm2vec_core.media.pdf import MAX_MISSING_RUN, page_count, pdf_pages


def _pillow_pdf(n_pages: int = 3) -> bytes:
    colours = ["red", "green", "blue", "orange", "purple"]
    pages = [Image.new("RGB", (60, 80), colours[i % len(colours)]) for i in range(n_pages)]
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:])
    return out.getvalue()


def _claiming(count: int, kids: bytes | None = None, n_pages: int = 3) -> bytes:
    """A small PDF written by Pillow whose page tree's /Count says ``count`` (and its /Kids ``kids``), rewritten in
    place with the same length, so the cross-reference table stays right (PDFium then trusts the tree)."""
    data = _pillow_pdf(n_pages)
    tree = re.search(rb"/Type /Pages\n/Count \d+\n/Kids \[ ([^\]]*) \]\n", data)
    assert tree is not None
    forged = b"/Type/Pages/Count %d/Kids[%s]" % (count, tree[1] if kids is None else kids)
    assert len(forged) <= len(tree[0])
    return data[: tree.start()] + forged.ljust(len(tree[0])) + data[tree.end() :]


@pytest.fixture
def bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.pdf"
    path.write_bytes(_claiming(1_000_000))
    assert len(path.read_bytes()) < 5000
    return path


def test_a_page_tree_claiming_a_million_pages_reads_the_three_it_holds_and_says_so_once(bomb: Path) -> None:
    import pypdfium2

    assert len(pypdfium2.PdfDocument(bomb)) == 1_000_000  # what PDFium believes
    errors: list[InputError] = []
    pages = list(pdf_pages(bomb, dpi=36, errors=errors))
    assert [(p.page_number, p.page_count) for p in pages] == [(1, 3), (2, 3), (3, 3)]
    assert [str(e) for e in errors] == [f"{bomb}: the page tree claims 1,000,000 pages but the file holds 3"]
    assert page_count(bomb) == 3  # e.g. a progress bar's total
    with pytest.raises(InputError, match=r"bomb\.pdf: the page tree claims 1,000,000 pages but the file holds 3"):
        list(pdf_pages(bomb, dpi=36))  # without an errors list: the file fails, once


def test_indexing_the_forged_file_stores_its_real_pages(bomb: Path, tmp_path: Path) -> None:
    errors: list[InputError] = []
    items = list(iter_items(bomb, cache_dir=tmp_path / "cache", dpi=36, errors=errors))
    assert [i.reference for i in items] == [f"{bomb}#page={n}" for n in (1, 2, 3)]
    assert len(errors) == 1 and "claims 1,000,000 pages" in str(errors[0])


def test_a_tree_claiming_pages_that_holds_none(tmp_path: Path) -> None:
    path = tmp_path / "hollow.pdf"
    path.write_bytes(_claiming(1_000_000, kids=b"").replace(b"/Type /Page\n", b"/Type /Leaf\n"))
    errors: list[InputError] = []
    assert list(pdf_pages(path, dpi=36, errors=errors)) == []
    assert [str(e) for e in errors] == [f"{path}: the page tree claims 1,000,000 pages but the file holds none"]
    assert page_count(path) == 0


def test_a_lie_the_cheap_scan_cannot_see_stops_after_a_run_of_missing_pages(tmp_path: Path) -> None:
    # An object stream could hide page objects from the byte scan: the scan gives up, the run limit bounds the work.
    path = tmp_path / "hidden.pdf"
    path.write_bytes(_claiming(1_000_000) + b"% /Type /ObjStm\n")
    errors: list[InputError] = []
    pages = list(pdf_pages(path, dpi=36, errors=errors))
    assert [p.page_number for p in pages] == [1, 2, 3]
    assert len(errors) == 1
    assert (errors[0].source, errors[0].location) == (str(path), f"page 4 to {3 + MAX_MISSING_RUN}")
    assert f"{MAX_MISSING_RUN} pages in a row cannot be loaded although the page tree claims 1,000,000" in str(
        errors[0]
    )


def test_a_page_missing_from_a_true_tree_is_reported_alone_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "gap.pdf"
    data = _pillow_pdf(3)
    image = re.search(rb"\n(\d) 0 obj<<\n/Type /XObject", data)  # an image, not a page
    assert image is not None
    path.write_bytes(data.replace(b"/Kids [ 1 0 R 3 0 R 5 0 R ]", b"/Kids [ 1 0 R %s 0 R 5 0 R ]" % image[1]))
    errors: list[InputError] = []
    pages = list(pdf_pages(path, dpi=36, errors=errors))
    assert [p.page_number for p in pages] == [1, 3]
    assert [(e.location, e.reason) for e in errors] == [("page 2", "cannot load the page (Failed to load page.)")]
    assert page_count(path) == 3


def test_a_page_shape_the_family_refuses_names_the_file_and_page(tmp_path: Path) -> None:
    path = tmp_path / "ribbon.pdf"
    pages = [Image.new("RGB", (200, 280), "white"), Image.new("RGB", (4200, 20), "white")]
    pages[0].save(path, format="PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    encoder = FakeEncoder(family="qwen3-vl-embedding")
    errors: list[InputError] = []
    assert encoder.encode(list(pdf_pages(path, dpi=36)), errors=errors).shape[0] == 1
    (error,) = errors
    assert "ribbon.pdf, page 2" in str(error) and "aspect ratio" in str(error)
