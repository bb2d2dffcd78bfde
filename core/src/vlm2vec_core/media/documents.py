"""From files to stored items: stable ids, cached thumbnails, references, metadata, full views.

Everything the framework adapters and the CLI share about turning a folder of PDFs, videos and images into
embeddable items lives here, so the adapters stay thin and agree on ids and metadata. The cache holds only what
display needs (a small WebP thumbnail a page and a clip); a full view (for a model: reranking, a chat model; or a
reader) is rendered again from the item's source through its reference: :func:`full_image`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from ..errors import InputError, report
from ..types import Input, Page, VideoClip, clock

log = logging.getLogger(__name__)

PDF_SUFFIXES = frozenset({".pdf"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpeg", ".mpg", ".ts", ".wmv"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
Kind = Literal["page", "clip", "image"]
_FRAGMENT = re.compile(r"^(?P<path>.+)#(?:t=(?P<start>[0-9.]+),(?P<end>[0-9.]+)|page=(?P<page>[0-9]+))$")


def kind_of(path: str | os.PathLike[str]) -> Literal["pdf", "video", "image"] | None:
    """What a file is, by its suffix (None for anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix in PDF_SUFFIXES:
        return "pdf"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return None


def walk(
    paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True, skipped: list[Path] | None = None
) -> Iterator[Path]:
    """The PDFs, videos and images among ``paths`` and inside the folders among them, in a stable order.
    ``skipped``: the other files found inside the folders (not hidden ones) are added to it."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            files = sorted(p for p in found if p.is_file() and not p.name.startswith("."))
            if skipped is not None:
                skipped.extend(p for p in files if kind_of(p) is None)
            yield from (p for p in files if kind_of(p))
        else:
            yield path


def file_digest(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's content (hex): ids stay stable when a file moves, change when it changes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise InputError("file not found", source=path) from exc
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", source=path) from exc
    return digest.hexdigest()


def parse_reference(reference: str) -> tuple[Path, float | None, float | None, int | None]:
    """Split ``talk.mp4#t=10,20`` or ``doc.pdf#page=3`` into (path, start, end, page); plain paths pass."""
    match = _FRAGMENT.match(reference)
    if match is None or Path(reference).exists():
        return Path(reference), None, None, None
    path = Path(match["path"])
    if match["page"] is not None:
        return path, None, None, int(match["page"])
    start, end = float(match["start"]), float(match["end"])
    if not start < end:
        raise ValueError(f"clip reference {reference!r}: start must be before end")
    return path, start, end, None


def input_for_reference(reference: str | os.PathLike[str], *, dpi: float = 144, password: str | None = None) -> Input:
    """The Input a stored reference stands for: a clip (``#t=``) as video over its span, a PDF page (``#page=``)
    rendered, a video file as the whole video, anything else as an image file."""
    path, start, _end, page = parse_reference(str(reference))
    if start is not None:
        return Input(video=str(reference))
    if page is not None:
        return Input(image=_render_page(path, page, dpi, password))
    if kind_of(path) == "video":
        return Input(video=path)
    return Input(image=path)


def _render_page(path: Path, page: int, dpi: float, password: str | None) -> Image.Image:
    from .pdf import pdf_pages

    for rendered in pdf_pages(path, dpi=dpi, pages=[page], password=password):
        return rendered.image
    raise InputError("the page could not be rendered", source=path, location=f"page {page}")  # not reached


def _is_thumbnail(metadata: dict[str, Any]) -> bool:
    """Whether ``image_path`` is a display thumbnail (this version's items) rather than the full page render an
    older version cached (indexes written before thumbnails: their ``image_path`` is the model's own pixels)."""
    return "thumbnail_width" in metadata


def _legacy_render(metadata: dict[str, Any]) -> Path | None:
    """An older index's cached full-resolution page render, when it is still there."""
    image_path = metadata.get("image_path")
    if metadata.get("kind") == "page" and image_path and not _is_thumbnail(metadata) and Path(image_path).is_file():
        return Path(image_path)
    return None


def input_for_metadata(metadata: dict[str, Any], *, dpi: float | None = None, password: str | None = None) -> Input:
    """The Input a stored item stands for, from its metadata (as ``Item.metadata()`` wrote it): what a model
    judging the item (a reranker) must see.

    A page is rendered again from its PDF (the reference) at the resolution it was indexed at (its ``dpi``, else
    ``dpi``, else 144), never from its display thumbnail; an older index's cached full-size render is used as it
    is. An image is its file, a clip its reference (frames over its span). ``password``: for an encrypted PDF.
    """
    reference = metadata.get("reference")
    kind = metadata.get("kind")
    legacy = _legacy_render(metadata)
    if legacy is not None:
        return Input(image=legacy)
    if kind == "image" and not reference and metadata.get("image_path"):
        return Input(image=Path(metadata["image_path"]))
    if not reference:
        raise ValueError("metadata has no 'reference' (was it written by vlm2vec's loaders?)")
    return input_for_reference(str(reference), dpi=_dpi_of(metadata, dpi), password=password)


def _dpi_of(metadata: dict[str, Any], dpi: float | None) -> float:
    if dpi is not None:
        return dpi
    stored = metadata.get("dpi")
    return float(stored) if isinstance(stored, (int, float)) and stored > 0 else 144.0


def full_image(
    item: dict[str, Any] | str | os.PathLike[str] | Item,
    *,
    dpi: float | None = None,
    password: str | None = None,
    isolated: float | None = None,
) -> Image.Image:
    """The full view of a stored item as an RGB PIL image: what a chat model, a reranker, a contact sheet or a
    reader opening a hit should see (never the display thumbnail).

    ``isolated``: decode in a worker process with this many seconds' limit (a long-running server, such as the
    search page or the MCP server, does so: a file replaced since indexing by one that crashes its decoder or
    hangs then costs that request an InputError, not the server).

    ``item``: the item's metadata (as ``Item.metadata()`` wrote it), its reference (``doc.pdf#page=3``,
    ``talk.mp4#t=10,20``, ``photo.png``) or the Item. A page is rendered again from its PDF at ``dpi`` (default:
    the resolution it was indexed at, else 144); an older index's cached full-size render is used when still
    there. A clip gives the frame at the middle of its span, read from the video; an image its file. A source
    that is gone or broken raises InputError naming it.
    """
    from .images import load_image

    if isinstance(item, Item):
        item = item.metadata()
    if isolated is not None:
        import functools

        from .isolate import run_isolated

        where = str(item.get("source") or item.get("reference") or "") if isinstance(item, dict) else os.fspath(item)
        view = functools.partial(full_image, dpi=dpi, password=password)
        return run_isolated(view, item if isinstance(item, dict) else os.fspath(item), timeout=isolated, source=where)
    if isinstance(item, dict):
        legacy = _legacy_render(item)
        if legacy is not None:
            return load_image(legacy)
        reference = item.get("reference")
        if not reference and item.get("kind") == "image":
            reference = item.get("image_path")  # an image is its own full view
        if not reference:
            raise ValueError("metadata has no 'reference' (was it written by vlm2vec's loaders?)")
        dpi = _dpi_of(item, dpi)
    else:
        reference = os.fspath(item)
        dpi = 144.0 if dpi is None else dpi
    path, start, end, page = parse_reference(str(reference))
    if page is not None:
        return _render_page(path, page, dpi, password)
    if start is not None and end is not None:
        from .video import read_clip_frames

        frames, _ = read_clip_frames(path, start, end, 1)
        return load_image(frames[0], name=str(reference))
    return load_image(path)


def clip_sampler(encoder: Any, num_frames: int | None = None) -> Callable[[int], list[int]] | None:
    """How clips pick their frames for ``encoder`` (or a family profile): its family's sampler over
    ``num_frames`` (default: the encoder's frame count, i.e. the family's unless overridden), e.g. GME's middle
    frame; None without a family (then the loaders use VLM2Vec's two-stage sampling)."""
    from ..families import Profile

    family = encoder if isinstance(encoder, Profile) else getattr(encoder, "family", None)
    if not isinstance(family, Profile):
        return None
    if num_frames is None:
        own = getattr(getattr(encoder, "limits", None), "num_frames", None)
        num_frames = own if isinstance(own, int) else family.num_frames
    return family.sampler(num_frames)


def default_cache_dir() -> Path:
    """Where page images and clip thumbnails go: $VLM2VEC_CACHE, else $XDG_CACHE_HOME/vlm2vec, else ~/.cache."""
    if env := os.environ.get("VLM2VEC_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vlm2vec"


THUMB_SIDE = 768  # thumbnails (pages and clips) are at most this many pixels a side...
THUMB_BUDGET = 40 * 1024  # ...and about this many bytes: the side shrinks for the densest pages
THUMB_QUALITY = (30, 10)  # WebP qualities: the first, the second when that fits; then the side shrinks
# libwebp's effort: 0 and 1 take a fifth to a third less time than 2, but their larger files make dense text pages
# shrink under 640 px a side for the budget (measured: 616-636 px against 663-680 px at 2), so 2 it is.
WEBP_METHOD = 2
# A thumbnail shrunk from a fitted copy is kept when within this share of the budget (the full render's thumbnail
# bytes were within 7% of the fitted copy's on every page measured: text manuals, dense text, drawings).
SMALLER_MARGIN = 0.9
DENSE_RUN = 16  # after a page too dense for its fitted copy, the next pages' thumbnails are made from the full render
_LOW_RATIO = 0.73  # bytes at the second quality over bytes at the first (measured on text pages and frames)
STALE_SECONDS = 15 * 60  # a cache's temp file this old is a killed run's leftover
_swept: set[Path] = set()


def thumbnail_bytes(
    image: Image.Image, *, side: int = THUMB_SIDE, budget: int = THUMB_BUDGET
) -> tuple[bytes, tuple[int, int]]:
    """A display thumbnail of ``image`` as WebP bytes and its (width, height): at most ``side`` pixels a side,
    about ``budget`` bytes at most (the quality drops, then the side shrinks, until it fits).

    WebP because it keeps text legible at a third less size than JPEG (measured with OCR on text pages: at 768
    px a side a letter page's 10 pt text reads back nearly word for word at 20-35 KiB). May raise ValueError or
    OSError from the encoder for an image it cannot take.
    """
    high, low = THUMB_QUALITY
    thumb = _shrunk(image, side)
    data, quality = _webp(thumb, high), high
    if len(data) > budget and len(data) * _LOW_RATIO <= budget:  # the lower quality alone will do
        data, quality = _webp(thumb, low), low
    for _ in range(6):  # then a smaller side (bytes follow the area); rarely more than once
        if len(data) <= budget or max(thumb.size) <= 32:
            break
        expected = len(data) * (1.0 if quality == low else _LOW_RATIO)
        scale = min(0.9, math.sqrt(budget * 0.9 / expected))
        thumb = _shrunk(image, max(32, int(max(thumb.size) * scale)))
        data, quality = _webp(thumb, low), low
    return data, thumb.size


def thumbnail_size(size: tuple[int, int], side: int = THUMB_SIDE) -> tuple[int, int]:
    """The (width, height) a picture of ``size`` is shrunk to for at most ``side`` pixels a side."""
    width, height = size
    if max(width, height) <= side:
        return size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrunk(image: Image.Image, side: int, full: tuple[int, int] | None = None) -> Image.Image:
    """``image`` at the size a picture of ``full`` pixels (default: ``image``'s own) gets for ``side`` pixels a
    side (box filter: as legible as Lanczos here, 3x faster)."""
    size = thumbnail_size(full or image.size, side)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BOX)
    return image if image.mode == "RGB" else image.convert("RGB")


def _webp(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=WEBP_METHOD)
    return buffer.getvalue()


def cache_thumbnail(
    image: Image.Image,
    cache_dir: Path,
    name: str,
    *,
    source: str | os.PathLike[str] | None = None,
    location: str | None = None,
    smaller: Image.Image | None = None,
) -> tuple[Path, tuple[int, int]]:
    """Write a display thumbnail of ``image`` (see :func:`thumbnail_bytes`) as ``cache_dir/name`` once
    (content-addressed names: an existing file is reused) and return its path and (width, height).
    ``smaller``: a smaller copy of ``image`` (e.g. the page fitted to a model's size) to shrink instead, when
    it lies between the thumbnail and ``image`` in size on each side: fewer pixels, the same thumbnail size.

    A frame or page the encoder cannot take is an InputError naming ``source`` and ``location``; failing to write
    the cache (a full disk) is the OSError it is.
    """
    path = cache_dir / name
    if path.is_file():
        size = _image_size(path)
        if size is not None:
            return path, size
    if 0 in image.size:
        raise InputError(
            f"nothing to show: the image is {image.width}x{image.height}", source=source, location=location
        )
    try:
        data, size = _from_smaller(image, smaller) or thumbnail_bytes(image)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot make its thumbnail ({exc})", source=source, location=location) from exc
    _write_atomic(path, data)
    return path, size


def _from_smaller(image: Image.Image, smaller: Image.Image | None) -> tuple[bytes, tuple[int, int]] | None:
    """``image``'s thumbnail shrunk from ``smaller`` (see :func:`cache_thumbnail`) when that is safe, else None.

    Safe: ``smaller`` lies between the thumbnail and ``image`` in size, and its encoding fits the budget with room
    to spare (``SMALLER_MARGIN``) at the first quality, or at the second where :func:`thumbnail_bytes` would try
    that: the thumbnail of ``image`` itself then keeps its full size too (its bytes are within a few percent of
    these), so both have the size ``thumbnail_size(image.size)`` and an item's metadata does not depend on which
    was made. A page too dense for that is shrunk from ``image`` for the budget, as ever.
    """
    target = thumbnail_size(image.size)
    if smaller is None or not all(t <= s <= i for t, s, i in zip(target, smaller.size, image.size, strict=True)):
        return None
    high, low = THUMB_QUALITY
    room = SMALLER_MARGIN * THUMB_BUDGET
    thumb = _shrunk(smaller, THUMB_SIDE, image.size)
    data = _webp(thumb, high)
    if len(data) > room and len(data) * _LOW_RATIO <= room:
        data = _webp(thumb, low)
    return (data, thumb.size) if len(data) <= room else None


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as existing:
            return existing.size
    except (OSError, ValueError, SyntaxError):  # damaged: written again
        return None


def cache_image(image: Image.Image, cache_dir: Path, name: str) -> Path:
    """Write ``image`` as ``cache_dir/name`` once (content-addressed names: an existing file is reused), in the
    format of its suffix (PNG, JPEG or WebP). An image the encoder cannot take is a ValueError.

    The file appears atomically (written aside, then renamed), so a crash never leaves half an image.
    """
    path = cache_dir / name
    if path.is_file():
        return path
    fmt = {".png": "PNG", ".webp": "WEBP"}.get(path.suffix.lower(), "JPEG")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt, quality=90)
    except OSError as exc:  # e.g. JPEG refuses a side over 65,535 px
        raise ValueError(f"cannot write the image as {fmt} ({exc})") from exc
    _write_atomic(path, buffer.getvalue())
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path``: aside first (``.tmp-*``), then renamed, so a crash never leaves half a file."""
    cache_dir = path.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    sweep_cache(cache_dir)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_cache(cache_dir: str | os.PathLike[str], *, older_than: float = STALE_SECONDS, force: bool = False) -> int:
    """Remove the temp files (``.tmp-*``) a killed run left in ``cache_dir``, those older than ``older_than``
    seconds (younger ones may be another process's write in progress); return how many went.

    Done once per cache folder and process (``force``: again): the cache is used through it on first write.
    """
    folder = Path(cache_dir)
    key = folder.absolute()
    if key in _swept and not force:
        return 0
    _swept.add(key)
    removed = 0
    deadline = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(".tmp-"):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < deadline:
                os.unlink(entry.path)
                removed += 1
        except OSError:  # gone meanwhile (another process swept it), or not ours to remove
            continue
    if removed:
        log.info("removed %d stale temp file(s) from %s", removed, folder)
    return removed


@dataclass(frozen=True, eq=False)
class Item:
    """One embeddable unit of a file: a PDF page, a video clip or a whole image, with a stable id."""

    id: str
    kind: Kind
    source: Path
    digest: str
    image_path: Path  # for display: a page's or a clip's thumbnail (WebP, small), or the image file itself
    page: int | None = None
    page_count: int | None = None
    start: float | None = None
    end: float | None = None
    clip_index: int | None = None
    content: Page | VideoClip | None = field(default=None, repr=False)  # what to embed (None: the image file)
    thumbnail_size: tuple[int, int] | None = None  # (width, height) of image_path when it is a thumbnail
    dpi: float | None = None  # a page's render resolution (what full_image renders again)

    @property
    def reference(self) -> str:
        """``doc.pdf#page=3``, ``talk.mp4#t=10,20`` or the image path: enough to find the item again."""
        if self.kind == "page":
            return f"{self.source}#page={self.page}"
        if self.kind == "clip":
            return f"{self.source}#t={self.start:g},{self.end:g}"
        return str(self.source)

    @property
    def label(self) -> str:
        """Short human form: ``report.pdf p.3``, ``talk.mp4 0:10-0:20``, ``photo.png``."""
        if self.kind == "page":
            return f"{self.source.name} p.{self.page}"
        if self.kind == "clip":
            return f"{self.source.name} {clock(self.start or 0.0)}-{clock(self.end or 0.0)}"
        return self.source.name

    def to_input(self) -> Input:
        if isinstance(self.content, VideoClip):
            return Input(video=self.content)
        if isinstance(self.content, Page):
            return Input(image=self.content.image)
        return Input(image=self.image_path)

    def metadata(self) -> dict[str, str | int | float]:
        """Flat metadata (no None values, as vector stores such as Chroma require)."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "source": str(self.source),
            "file_name": self.source.name,
            "content_sha256": self.digest,
            "image_path": str(self.image_path),
            "reference": self.reference,
            "page": self.page,
            "page_count": self.page_count,
            "start_seconds": self.start,
            "end_seconds": self.end,
            "clip_index": self.clip_index,
            "dpi": self.dpi,
            "thumbnail_width": self.thumbnail_size[0] if self.thumbnail_size else None,
            "thumbnail_height": self.thumbnail_size[1] if self.thumbnail_size else None,
        }
        return {k: v for k, v in data.items() if v is not None}


def iter_items(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dpi: float = 144,
    clip_seconds: float = 10.0,
    stride_seconds: float | None = None,
    num_frames: int = 8,
    password: str | None = None,
    errors: list[InputError] | None = None,
    digest: str | None = None,
    sampler: Callable[[int], list[int]] | None = None,
    pages: Iterable[int] | None = None,
    clips: tuple[int, int | None] | None = None,
    fit: Callable[[Image.Image], Image.Image | None] | None = None,
) -> Iterator[Item]:
    """Stream a file as items: a PDF's pages, a video's clips, or an image; page and clip thumbnails (for
    display only, see :func:`full_image`) are written once to ``cache_dir`` (content-addressed). Bad files and
    pages raise InputError, or, with an ``errors`` list, are recorded there while the rest goes on. ``digest``:
    the file's ``file_digest`` when the caller has it already (the file is then not read twice).
    ``sampler`` (frame count -> indices) picks each clip's frames instead of ``num_frames`` by VLM2Vec's rule: a
    model family's, see :func:`clip_sampler`. ``pages``: for a PDF, only these 1-based pages (in that order), as
    the same items (ids, ``page_count``, cache files) a run over the whole file gives them; ignored for videos
    and images. A page out of range is reported like a bad page. ``clips=(first, stop)``: for a video, only its
    clips ``first`` to ``stop - 1`` (0-based, ``stop`` None: to the end), as the same items a whole run gives
    (see :func:`~vlm2vec_core.media.video.video_clips`); ignored for PDFs and images. ``fit``: called with each
    page's render before its thumbnail is made; a smaller copy it returns (the page fitted to the model's size,
    which the caller keeps; None: none) is what the thumbnail is shrunk from (see :func:`cache_thumbnail`)."""
    from .pdf import pdf_pages
    from .video import video_clips

    source = Path(path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    kind = kind_of(source)
    if kind is None:
        report(InputError("not a PDF, video or image (by its suffix)", source=source), errors)
        return
    if digest is None:
        try:
            digest = file_digest(source)
        except InputError as err:
            report(err, errors)
            return
    key = digest[:32]
    sweep_cache(cache)  # a killed run's leftovers (once per process)
    if kind == "pdf":
        wanted = None if pages is None else list(pages)
        dense = 0  # pages left whose thumbnails are made from the full render (a page before was too dense)
        for page in pdf_pages(source, dpi=dpi, pages=wanted, password=password, errors=errors):
            name = f"{key}-p{page.page_number}-{dpi:g}dpi.webp"
            smaller = fit(page.image) if fit is not None else None
            try:
                image_path, size = cache_thumbnail(
                    page.image, cache, name, source=source, location=page.location, smaller=None if dense else smaller
                )
            except InputError as err:
                report(err, errors)
                continue
            if dense:
                dense -= 1
            elif smaller is not None and size != thumbnail_size(page.image.size):  # shrunk for the budget
                dense = DENSE_RUN
            yield Item(
                f"{key}-p{page.page_number}",
                "page",
                source,
                digest,
                image_path,
                page=page.page_number,
                page_count=page.page_count,
                content=page,
                thumbnail_size=size,
                dpi=dpi,
            )
    elif kind == "video":
        found = video_clips(
            source,
            clip_seconds=clip_seconds,
            stride_seconds=stride_seconds,
            num_frames=num_frames,
            errors=errors,
            sampler=sampler,
            clips=clips,
        )
        for clip in found:
            span = f"t{clip.start:.3f}-{clip.end:.3f}"
            middle = clip.frames[len(clip.frames) // 2]
            try:
                thumb, size = cache_thumbnail(
                    middle, cache, f"{key}-{span}.webp", source=source, location=clip.location
                )
            except InputError as err:
                report(err, errors)
                continue
            yield Item(
                f"{key}-{span}",
                "clip",
                source,
                digest,
                thumb,
                start=clip.start,
                end=clip.end,
                clip_index=clip.index,
                content=clip,
                thumbnail_size=size,
            )
    else:
        from .images import load_image

        try:
            load_image(source)  # fail here, naming the file, rather than at encode time
        except InputError as err:
            report(err, errors)
            return
        yield Item(key, "image", source, digest, source.resolve())
