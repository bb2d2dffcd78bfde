"""From files to stored items: stable ids, cached page images and clip thumbnails, references, metadata.

Everything the framework adapters and the CLI share about turning a folder of PDFs, videos and images into
embeddable items lives here, so the adapters stay thin and agree on ids and metadata.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from .errors import InputError, report
from .types import Input, Page, VideoClip

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


def walk(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> Iterator[Path]:
    """The PDFs, videos and images among ``paths`` and inside the folders among them, in a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            yield from sorted(p for p in found if p.is_file() and kind_of(p) and not p.name.startswith("."))
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


def input_for_reference(reference: str | os.PathLike[str], *, dpi: float = 144) -> Input:
    """The Input a stored reference stands for: a clip (``#t=``) as video over its span, a PDF page (``#page=``)
    rendered, a video file as the whole video, anything else as an image file."""
    path, start, _end, page = parse_reference(str(reference))
    if start is not None:
        return Input(video=str(reference))
    if page is not None:
        from .pdf import pdf_pages

        return Input(image=next(iter(pdf_pages(path, dpi=dpi, pages=[page]))).image)
    if kind_of(path) == "video":
        return Input(video=path)
    return Input(image=path)


def input_for_metadata(metadata: dict[str, Any]) -> Input:
    """The Input a stored item stands for, from its metadata (as ``Item.metadata()`` wrote it).

    A page or image uses its cached image when it is still there (the same pixels, no re-render), a clip its
    reference (8 frames over its span); otherwise the reference is resolved as ``input_for_reference`` does.
    """
    reference = metadata.get("reference")
    image_path = metadata.get("image_path")
    if metadata.get("kind") in ("page", "image") and image_path and Path(image_path).is_file():
        return Input(image=Path(image_path))
    if not reference:
        raise ValueError("metadata has no 'reference' (was it written by vlm2vec's loaders?)")
    return input_for_reference(str(reference))


def clip_sampler(encoder: Any, num_frames: int | None = None) -> Callable[[int], list[int]] | None:
    """How clips pick their frames for ``encoder`` (or a family profile): its family's sampler over
    ``num_frames`` (default: the encoder's frame count, i.e. the family's unless overridden), e.g. GME's middle
    frame; None without a family (then the loaders use VLM2Vec's two-stage sampling)."""
    from .families import Profile

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


THUMB_SIDE = 1024  # clip thumbnails are at most this many pixels a side


def cache_image(image: Image.Image, cache_dir: Path, name: str) -> Path:
    """Write ``image`` as ``cache_dir/name`` once (content-addressed names: an existing file is reused).

    The file appears atomically (written aside, then renamed), so a crash never leaves half an image.
    """
    path = cache_dir / name
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG" if path.suffix == ".png" else "JPEG", quality=90)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True, eq=False)
class Item:
    """One embeddable unit of a file: a PDF page, a video clip or a whole image, with a stable id."""

    id: str
    kind: Kind
    source: Path
    digest: str
    image_path: Path  # the page image, the clip's thumbnail (its middle frame) or the image file itself
    page: int | None = None
    page_count: int | None = None
    start: float | None = None
    end: float | None = None
    clip_index: int | None = None
    content: Page | VideoClip | None = field(default=None, repr=False)  # what to embed (None: the image file)

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
            return f"{self.source.name} {_clock(self.start or 0.0)}-{_clock(self.end or 0.0)}"
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
        }
        return {k: v for k, v in data.items() if v is not None}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}" if secs % 1 else f"{int(minutes)}:{int(secs):02d}"


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
) -> Iterator[Item]:
    """Stream a file as items: a PDF's pages, a video's clips, or an image; page images and clip thumbnails
    are written once to ``cache_dir`` (content-addressed). Bad files and pages raise InputError, or, with an
    ``errors`` list, are recorded there while the rest goes on. ``digest``: the file's ``file_digest`` when the
    caller has it already (the file is then not read twice). ``sampler`` (frame count -> indices) picks each
    clip's frames instead of ``num_frames`` by VLM2Vec's rule: a model family's, see :func:`clip_sampler`."""
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
    if kind == "pdf":
        for page in pdf_pages(source, dpi=dpi, password=password, errors=errors):
            image_path = cache_image(page.image, cache, f"{key}-p{page.page_number}-{dpi:g}dpi.png")
            yield Item(
                f"{key}-p{page.page_number}",
                "page",
                source,
                digest,
                image_path,
                page=page.page_number,
                page_count=page.page_count,
                content=page,
            )
    elif kind == "video":
        clips = video_clips(
            source,
            clip_seconds=clip_seconds,
            stride_seconds=stride_seconds,
            num_frames=num_frames,
            errors=errors,
            sampler=sampler,
        )
        for clip in clips:
            span = f"t{clip.start:.3f}-{clip.end:.3f}"
            middle = clip.frames[len(clip.frames) // 2]
            if max(middle.size) > THUMB_SIDE:  # a thumbnail only shows the clip (and JPEG stops at 65,535 px)
                middle = middle.copy()
                middle.thumbnail((THUMB_SIDE, THUMB_SIDE))
            thumb = cache_image(middle, cache, f"{key}-{span}.jpg")
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
            )
    else:
        from .media import load_image

        try:
            load_image(source)  # fail here, naming the file, rather than at encode time
        except InputError as err:
            report(err, errors)
            return
        yield Item(key, "image", source, digest, source.resolve())
