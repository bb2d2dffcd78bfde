"""pdf_pages: rendering, page selection, streaming and bad input."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pypdfium2
import pytest

import mediafixtures
from vlm2vec_core.errors import InputError
from vlm2vec_core.media.pdf import pdf_pages
from vlm2vec_core.types import Page


@pytest.fixture
def pdf3(tmp_path: Path) -> Path:
    return mediafixtures.make_pdf(tmp_path / "three.pdf", n_pages=3, size=(200, 300))


def _zero_page_pdf(path: Path) -> Path:
    """A syntactically valid PDF whose page tree is empty (Pillow cannot write one)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    return mediafixtures.write_raw_pdf(path, objects)


def test_pages_numbers_count_and_mode(pdf3: Path) -> None:
    pages = list(pdf_pages(pdf3))
    assert [p.page_number for p in pages] == [1, 2, 3]
    assert all(isinstance(p, Page) for p in pages)
    assert {p.page_count for p in pages} == {3}
    assert all(p.source == pdf3 for p in pages)
    assert all(p.image.mode == "RGB" for p in pages)


@pytest.mark.parametrize(("dpi", "size"), [(72, (200, 300)), (144, (400, 600)), (36, (100, 150))])
def test_size_follows_dpi(pdf3: Path, dpi: int, size: tuple[int, int]) -> None:
    page = next(iter(pdf_pages(pdf3, dpi=dpi)))
    assert page.image.size == size


def test_colours_are_rgb_not_bgr(tmp_path: Path) -> None:
    # Page 2 of the fixture has a big blue (40, 80, 220) triangle; read as BGR it would come out orange.
    path = mediafixtures.make_pdf(tmp_path / "blue.pdf", n_pages=2, size=(200, 300))
    image = next(pdf_pages(path, dpi=72, pages=[2])).image
    r, g, b = np.asarray(image)[150, 100].tolist()
    assert b > 180
    assert r < 90
    assert g < 120


def test_pages_look_different(pdf3: Path) -> None:
    arrays = [np.asarray(p.image, dtype=np.int16) for p in pdf_pages(pdf3, dpi=72)]
    assert np.abs(arrays[0] - arrays[1]).mean() > 5
    assert np.abs(arrays[1] - arrays[2]).mean() > 5


def test_pages_selection_in_given_order(pdf3: Path) -> None:
    pages = list(pdf_pages(pdf3, pages=[3, 1], dpi=72))
    assert [p.page_number for p in pages] == [3, 1]
    whole = {p.page_number: np.asarray(p.image) for p in pdf_pages(pdf3, dpi=72)}
    assert np.array_equal(np.asarray(pages[0].image), whole[3])


@pytest.mark.parametrize("bad", [0, 4, -1])
def test_page_out_of_range_names_file_and_page(pdf3: Path, bad: int) -> None:
    expected = rf"three\.pdf, page {bad}: no such page: the PDF has 3 pages"
    with pytest.raises(InputError, match=expected) as info:
        list(pdf_pages(pdf3, pages=[1, bad]))
    assert info.value.location == f"page {bad}"


def test_page_out_of_range_is_collected(pdf3: Path) -> None:
    errors: list[InputError] = []
    pages = list(pdf_pages(pdf3, pages=[2, 9], errors=errors))
    assert [p.page_number for p in pages] == [2]
    assert [str(e) for e in errors] == [f"{pdf3}, page 9: no such page: the PDF has 3 pages (pages are 1-based)"]


def test_bad_arguments_raise_at_call(pdf3: Path) -> None:
    with pytest.raises(ValueError, match="dpi"):
        pdf_pages(pdf3, dpi=0)
    with pytest.raises(TypeError, match="page numbers"):
        pdf_pages(pdf3, pages=["1"])  # type: ignore[list-item]


class _RenderSpy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rendered: list[int] = []
        self.closed = 0
        original_render, original_close = pypdfium2.PdfPage.render, pypdfium2.PdfPage.close
        spy = self

        def render(page: pypdfium2.PdfPage, *args: object, **kwargs: object) -> object:
            spy.rendered.append(len(spy.rendered) + 1)
            return original_render(page, *args, **kwargs)

        def close(page: pypdfium2.PdfPage) -> None:
            spy.closed += 1
            original_close(page)

        monkeypatch.setattr(pypdfium2.PdfPage, "render", render)
        monkeypatch.setattr(pypdfium2.PdfPage, "close", close)


def _count_document_closes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    closed: list[int] = []
    original = pypdfium2.PdfDocument.close

    def close(document: pypdfium2.PdfDocument) -> None:
        closed.append(1)
        original(document)

    monkeypatch.setattr(pypdfium2.PdfDocument, "close", close)
    return closed


def test_streaming_renders_only_what_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = mediafixtures.make_pdf(tmp_path / "fifty.pdf", n_pages=50, size=(60, 80))
    spy = _RenderSpy(monkeypatch)
    closed_docs = _count_document_closes(monkeypatch)
    gen = pdf_pages(path, dpi=36)
    assert spy.rendered == []  # nothing happens before iteration starts
    first = next(gen)
    assert (first.page_number, first.page_count) == (1, 50)
    assert len(spy.rendered) == 1
    assert spy.closed == 1  # the page object was closed right after rendering
    assert closed_docs == []
    gen.close()
    assert closed_docs == [1]  # closing the generator closes the document
    assert len(spy.rendered) == 1


def test_document_closed_when_exhausted(pdf3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = _count_document_closes(monkeypatch)
    assert len(list(pdf_pages(pdf3, dpi=36))) == 3
    assert closed == [1]


def test_image_outlives_document(pdf3: Path) -> None:
    images = [p.image for p in pdf_pages(pdf3, dpi=72)]
    gc.collect()
    assert np.asarray(images[0]).mean() > 100  # pixel data was copied out of the freed bitmap


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.pdf: file not found"):
        list(pdf_pages(tmp_path / "nope.pdf"))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pdf: empty file"):
        list(pdf_pages(path))


def test_not_a_pdf(tmp_path: Path) -> None:
    renamed = mediafixtures.make_image(tmp_path / "image.png").rename(tmp_path / "image.pdf")
    with pytest.raises(InputError, match=r"image\.pdf: not a PDF"):
        list(pdf_pages(renamed))


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_pdf(pdf3: Path, fraction: float) -> None:
    mediafixtures.truncate(pdf3, fraction)
    with pytest.raises(InputError, match=r"three\.pdf: corrupt or truncated PDF") as info:
        list(pdf_pages(pdf3))
    assert isinstance(info.value.__cause__, pypdfium2.PdfiumError)


def test_zero_pages(tmp_path: Path) -> None:
    path = _zero_page_pdf(tmp_path / "zero.pdf")
    with pytest.raises(InputError, match=r"zero\.pdf: the PDF has no pages"):
        list(pdf_pages(path))


def test_zero_pages_after_another_failure(tmp_path: Path) -> None:
    # PDFium's last-error code is stale after a failed open: the zero-page diagnosis must not inherit it.
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4\nnot a pdf body")
    with pytest.raises(InputError, match="corrupt"):
        list(pdf_pages(bad))
    with pytest.raises(InputError, match="no pages"):
        list(pdf_pages(_zero_page_pdf(tmp_path / "zero.pdf")))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        list(pdf_pages(tmp_path))


@pytest.fixture
def encrypted(tmp_path: Path) -> Path:
    return mediafixtures.make_encrypted_pdf(tmp_path / "secret.pdf", "s3cret")


def test_encrypted_without_password(encrypted: Path) -> None:
    with pytest.raises(InputError, match=r"secret\.pdf: the PDF is encrypted: pass --password \(password= in Python\)"):
        list(pdf_pages(encrypted))


def test_encrypted_wrong_password(encrypted: Path) -> None:
    with pytest.raises(InputError, match=r"secret\.pdf: wrong password.*password="):
        list(pdf_pages(encrypted, password="guess"))


def test_encrypted_right_password(encrypted: Path) -> None:
    pages = list(pdf_pages(encrypted, password="s3cret", dpi=36))
    assert [p.page_number for p in pages] == [1, 2]


def test_max_pixels_checked_before_render(pdf3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _RenderSpy(monkeypatch)
    # 200x300 pt at 144 dpi = 400x600 = 240,000 pixels
    with pytest.raises(InputError, match=r"three\.pdf, page 1: .*400 x 600 = 240,000 pixels.*max_pixels"):
        list(pdf_pages(pdf3, max_pixels=239_999))
    assert spy.rendered == []
    assert len(list(pdf_pages(pdf3, max_pixels=240_000))) == 3


def test_render_failure_names_page_and_carries_on(pdf3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = pypdfium2.PdfPage.render
    calls = {"n": 0}

    def flaky(page: pypdfium2.PdfPage, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise pypdfium2.PdfiumError("Failed to render")
        return original(page, *args, **kwargs)

    monkeypatch.setattr(pypdfium2.PdfPage, "render", flaky)
    errors: list[InputError] = []
    pages = list(pdf_pages(pdf3, dpi=36, errors=errors))
    assert [p.page_number for p in pages] == [1, 3]
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{pdf3}, page 2: failed to render the page")
    assert isinstance(errors[0].__cause__, pypdfium2.PdfiumError)

    calls["n"] = 0
    with pytest.raises(InputError, match="page 2: failed to render"):
        list(pdf_pages(pdf3, dpi=36))


def test_bad_file_between_good_ones_is_collected(tmp_path: Path) -> None:
    good1 = mediafixtures.make_pdf(tmp_path / "a.pdf", n_pages=2, size=(60, 80))
    bad = tmp_path / "b.pdf"
    bad.write_text("this is not a pdf")
    good2 = mediafixtures.make_pdf(tmp_path / "c.pdf", n_pages=3, size=(60, 80), seed=1)
    errors: list[InputError] = []
    pages = [page for path in (good1, bad, good2) for page in pdf_pages(path, dpi=36, errors=errors)]
    assert [(p.source.name, p.page_number) for p in pages] == [
        ("a.pdf", 1),
        ("a.pdf", 2),
        ("c.pdf", 1),
        ("c.pdf", 2),
        ("c.pdf", 3),
    ]
    assert len(errors) == 1
    assert (errors[0].source, errors[0].location) == (str(bad), None)


def test_bad_file_raises_without_errors_list(tmp_path: Path) -> None:
    bad = tmp_path / "b.pdf"
    bad.write_bytes(b"%PDF-1.4\ngarbage that is not a pdf body")
    with pytest.raises(InputError, match=r"b\.pdf: corrupt or truncated PDF") as info:
        list(pdf_pages(bad))
    assert isinstance(info.value.__cause__, pypdfium2.PdfiumError)
