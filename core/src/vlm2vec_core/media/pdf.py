"""Stream the pages of a PDF as RGB images, one page rendered at a time (pypdfium2)."""

from __future__ import annotations

import logging
import math
import mmap
import re
from collections.abc import Generator, Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, report
from ..types import Page

if TYPE_CHECKING:
    import pypdfium2
    from PIL import Image

__all__ = ["page_count", "pdf_pages"]

logger = logging.getLogger(__name__)

_PDF_MAGIC = b"%PDF-"
_HEADER_WINDOW = 1024  # PDF readers accept the header anywhere in the first KiB
_ERR_FORMAT, _ERR_PASSWORD, _ERR_SECURITY = 3, 4, 5  # FPDF_ERR_* codes
MAX_MISSING_RUN = 16  # this many pages in a row that cannot be loaded: the page tree lies, stop there
_SCAN_LIMIT = 256 << 20  # count page objects in files up to this size (larger ones: the run limit alone)
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9#])")
_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm(?![A-Za-z0-9#])")


def pdf_pages(
    path: str | PathLike[str],
    *,
    dpi: float = 144,
    pages: Iterable[int] | None = None,
    password: str | None = None,
    errors: list[InputError] | None = None,
    max_pixels: int = 100_000_000,
) -> Generator[Page, None, None]:
    """Yield the pages of the PDF at ``path`` as :class:`Page` objects holding RGB images rendered at ``dpi``.

    Pages are rendered lazily, one at a time, and the document is closed when the iterator is exhausted or
    closed. ``pages`` selects 1-based page numbers (in the order given). A page larger than ``max_pixels``
    once rendered is refused before rendering. Bad input raises :class:`InputError`; when ``errors`` is a
    list, failures are appended to it instead and iteration carries on with the next page (or yields
    nothing for a bad file). PDFium is not thread-safe: render from one thread at a time.
    """
    if not dpi > 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels!r}")
    wanted = None if pages is None else _page_numbers(pages)
    return _iter_pages(Path(path), dpi, wanted, password, errors, max_pixels)


def page_count(path: str | PathLike[str], *, password: str | None = None) -> int:
    """The pages :func:`pdf_pages` would read from the PDF at ``path`` (a forged page tree's claim is not
    trusted), counted without rendering: e.g. a progress bar's total. A file that cannot be opened raises
    InputError."""
    source = Path(path)
    document = _open(source, password)
    try:
        claimed = len(document)
        return _held_pages(source, document, claimed) if claimed else 0
    finally:
        document.close()


def _page_numbers(pages: Iterable[int]) -> list[int]:
    numbers = list(pages)
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError(f"pages must be 1-based int page numbers, got {number!r}")
    return numbers


def _iter_pages(
    source: Path,
    dpi: float,
    wanted: list[int] | None,
    password: str | None,
    errors: list[InputError] | None,
    max_pixels: int,
) -> Generator[Page, None, None]:
    try:
        document = _open(source, password)
    except InputError as err:
        report(err, errors)
        return
    try:
        claimed = len(document)
        if claimed == 0:
            report(InputError("the PDF has no pages", source=source), errors)
            return
        count = claimed if wanted is not None else _held_pages(source, document, claimed)
        if count < claimed:  # a forged or damaged page tree: said once, the pages it really holds are read
            held = f"holds {count:,}" if count else "holds none"
            report(InputError(f"the page tree claims {claimed:,} pages but the file {held}", source=source), errors)
            if count == 0:
                return
        missing: list[InputError] = []  # pages in a row that could not be loaded, reported once the run ends
        for number in _checked_numbers(source, wanted, count, errors):
            try:
                page = _render(document, source, number, count, dpi, max_pixels)
            except _MissingPage as gone:
                if errors is None:
                    raise gone.error from gone.__cause__
                missing.append(gone.error)
                if len(missing) >= MAX_MISSING_RUN:
                    reason = (
                        f"{len(missing)} pages in a row cannot be loaded although the page tree claims {claimed:,} "
                        "pages (a damaged or forged page tree): the rest of the file is skipped"
                    )
                    where = f"{missing[0].location} to {number}"
                    report(InputError(reason, source=source, location=where), errors)
                    return
                continue
            except InputError as err:
                _flush(missing, errors)
                report(err, errors)
                continue
            _flush(missing, errors)
            yield page
        _flush(missing, errors)
    finally:
        document.close()


class _MissingPage(Exception):
    """A page the page tree lists but PDFium cannot load (counted: a long run of them stops the file)."""

    def __init__(self, error: InputError) -> None:
        super().__init__(str(error))
        self.error = error


def _flush(missing: list[InputError], errors: list[InputError] | None) -> None:
    pending, missing[:] = list(missing), []
    for err in pending:
        report(err, errors)


def _held_pages(source: Path, document: pypdfium2.PdfDocument, claimed: int) -> int:
    """How many pages the file really holds: ``claimed`` (the page tree's count) unless the file shows fewer
    page objects than that and the first page past them cannot be loaded (then the page objects' count).

    PDFium trusts a page tree's ``/Count`` up to about a million pages; a 600-byte file claiming 1,000,000 pages
    would otherwise cost a failed load (and a report) per missing page. Files with object streams hide their page
    objects from this cheap scan: for them (and files over 256 MiB) the run limit in ``_iter_pages`` bounds it.
    """
    found = _count_page_objects(source)
    if found is None or found >= claimed:
        return claimed
    import pypdfium2

    try:
        document[found].close()  # the page after the last page object: there, the claim is not a lie
    except pypdfium2.PdfiumError:
        return found
    return claimed


def _count_page_objects(source: Path) -> int | None:
    """The ``/Type /Page`` objects in the file's bytes; None when that says nothing (object streams, too big)."""
    try:
        with source.open("rb") as handle:
            size = handle.seek(0, 2)
            if not size or size > _SCAN_LIMIT:
                return None
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if _OBJECT_STREAM.search(data):
                    return None
                return sum(1 for _ in _PAGE_OBJECT.finditer(data))
    except (OSError, ValueError):
        return None


def _checked_numbers(
    source: Path, wanted: list[int] | None, count: int, errors: list[InputError] | None
) -> Sequence[int]:
    """The page numbers to render; out-of-range ones are reported (all before any page is rendered)."""
    if wanted is None:
        return range(1, count + 1)
    valid = []
    for number in wanted:
        if 1 <= number <= count:
            valid.append(number)
        else:
            reason = f"no such page: the PDF has {count} page{'s' if count != 1 else ''} (pages are 1-based)"
            report(InputError(reason, source=source, location=f"page {number}"), errors)
    return valid


def _open(source: Path, password: str | None) -> pypdfium2.PdfDocument:
    """Open the document, or raise an InputError that says why it cannot be read."""
    import pypdfium2

    header = _read_header(source)
    if not header:
        raise InputError("empty file (0 bytes), not a PDF", source=source)
    if _PDF_MAGIC not in header:
        raise InputError("not a PDF (no %PDF- header)", source=source)
    try:
        return pypdfium2.PdfDocument(source, password=password)
    except pypdfium2.PdfiumError as exc:
        raise InputError(_open_failure(_diagnose(source, password), exc, password), source=source) from exc
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", source=source) from exc


def _read_header(source: Path) -> bytes:
    try:
        with source.open("rb") as handle:
            return handle.read(_HEADER_WINDOW)
    except FileNotFoundError as exc:
        raise InputError("file not found", source=source) from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory, not a PDF file", source=source) from exc
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", source=source) from exc


def _diagnose(source: Path, password: str | None) -> int | None:
    """PDFium's error code for a failed open, None when the document loads but has no pages, else -1.

    pypdfium2 also refuses documents without pages, and then reports PDFium's last error, which is stale
    (left over from an earlier failure); loading once more through the raw API tells the two cases apart.
    """
    import pypdfium2.raw as pdfium_c

    encoded = None if password is None else (password + "\x00").encode("utf-8")
    handle = pdfium_c.FPDF_LoadDocument((str(source) + "\x00").encode("utf-8", "surrogateescape"), encoded)
    if not handle:
        return int(pdfium_c.FPDF_GetLastError())
    try:
        return None if pdfium_c.FPDF_GetPageCount(handle) < 1 else -1
    finally:
        pdfium_c.FPDF_CloseDocument(handle)


def _open_failure(code: int | None, exc: Exception, password: str | None) -> str:
    if code is None:
        return "the PDF has no pages"
    if code == _ERR_PASSWORD:
        if password is None:
            return "the PDF is encrypted: pass --password (password= in Python) to open it"
        return "wrong password for this encrypted PDF: pass the right --password (password= in Python)"
    if code == _ERR_SECURITY:
        return f"unsupported security handler or encryption ({exc})"
    if code == _ERR_FORMAT:
        return "corrupt or truncated PDF (PDFium: data format error)"
    return f"cannot open the PDF ({exc})"


def _render(
    document: pypdfium2.PdfDocument, source: Path, number: int, count: int, dpi: float, max_pixels: int
) -> Page:
    """Render one page to an RGB image, closing the page object (and its bitmap) afterwards."""
    import pypdfium2

    location = f"page {number}"
    try:
        page = document[number - 1]
    except pypdfium2.PdfiumError as exc:
        error = InputError(f"cannot load the page ({exc})", source=source, location=location)
        error.__cause__ = exc
        raise _MissingPage(error) from exc
    try:
        _check_size(page, source, location, dpi, max_pixels)
        image = _to_rgb(page, dpi / 72.0)
    except pypdfium2.PdfiumError as exc:
        raise InputError(f"failed to render the page ({exc})", source=source, location=location) from exc
    finally:
        page.close()
    image.filename = f"{source}, {location}"  # type: ignore[attr-defined]  # errors downstream name the page
    return Page(source=source, page_number=number, page_count=count, image=image)


def _check_size(page: pypdfium2.PdfPage, source: Path, location: str, dpi: float, max_pixels: int) -> None:
    """Refuse, before rendering, a page whose bitmap would be empty or larger than ``max_pixels``."""
    width_pt, height_pt = page.get_size()
    width, height = math.ceil(width_pt * dpi / 72.0), math.ceil(height_pt * dpi / 72.0)
    if width < 1 or height < 1:
        raise InputError(f"the page has no area ({width_pt:g} x {height_pt:g} pt)", source=source, location=location)
    if width * height > max_pixels:
        raise InputError(
            f"the page would render at {width} x {height} = {width * height:,} pixels at {dpi:g} dpi, "
            f"over max_pixels={max_pixels:,} (lower dpi or raise max_pixels)",
            source=source,
            location=location,
        )


def _to_rgb(page: pypdfium2.PdfPage, scale: float) -> Image.Image:
    bitmap = page.render(scale=scale)  # BGR(x) bitmap; to_pil() gives a PIL image in RGB order
    try:
        image = bitmap.to_pil()
        # RGBA/RGBX/L images may share the bitmap's buffer: convert() copies them before the bitmap is freed.
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    finally:
        bitmap.close()
    return rgb
