"""Loaders: one Document per PDF page or video clip, pointing at the page image or the clip (no pixels inside)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from vlm2vec_core import Encoder, InputError, Item, iter_items, walk
from vlm2vec_core.errors import report
from vlm2vec_core.media.documents import clip_sampler, kind_of

PathArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def item_to_document(item: Item) -> Document:
    """A loader Document for a core Item: a short caption as text, where to find the page or clip as metadata."""
    if item.kind == "page":
        caption = f"{item.source.name}, page {item.page} of {item.page_count}"
    elif item.kind == "clip":
        caption = f"{item.source.name}, {item.label.rsplit(' ', 1)[1]} (clip {item.clip_index})"
    else:
        caption = item.source.name
    return Document(id=item.id, page_content=caption, metadata=item.metadata())


class _MediaLoader(BaseLoader):
    """Streams files as page or clip Documents; with ``skip_errors`` bad files and pages are logged and kept in
    ``self.errors`` (``InputError`` s naming file, page or time, and why) while the rest loads."""

    _kind: str = ""

    def __init__(self, file_path: PathArg, *, skip_errors: bool = False, **options: Any) -> None:
        paths = [file_path] if isinstance(file_path, (str, os.PathLike)) else list(file_path)
        if not paths:
            raise ValueError("file_path is empty: pass a file, a folder or a list of them")
        self.file_paths = paths
        self.skip_errors = skip_errors
        self.options = options
        self.errors: list[InputError] = []

    def lazy_load(self) -> Iterator[Document]:
        self.errors = []
        errors = self.errors if self.skip_errors else None
        for raw in self.file_paths:
            if Path(raw).is_dir():  # a folder: its files of this loader's kind, in a stable order
                files = [p for p in walk([raw]) if kind_of(p) == self._kind]
            elif kind_of(raw) not in (self._kind, None):
                report(InputError(f"not a {_NAMES[self._kind]} (by its suffix)", source=raw), errors)
                continue
            else:
                files = [Path(raw)]
            for path in files:
                for item in iter_items(path, errors=errors, **self._item_options()):
                    yield item_to_document(item)

    def _item_options(self) -> dict[str, Any]:
        return self.options


_NAMES = {"pdf": "PDF", "video": "video"}


class VLM2VecPDFLoader(_MediaLoader):
    """One Document per PDF page (``kind="page"``); ``metadata["image_path"]`` is a cached display picture of it,
    the embeddings render the page itself again from ``metadata["reference"]``.

    ``file_path`` is a PDF, a folder of them or a list. Metadata: ``id`` (content hash + page, stable across
    runs and moves), ``source``, ``file_name``, ``page``, ``page_count``, ``image_path``, ``reference``
    (``"doc.pdf#page=3"``), ``content_sha256``. Options: ``dpi``, ``password``, ``cache_dir``.
    """

    _kind = "pdf"

    def __init__(
        self,
        file_path: PathArg,
        *,
        dpi: float = 144,
        password: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        skip_errors: bool = False,
    ) -> None:
        super().__init__(file_path, skip_errors=skip_errors, dpi=dpi, password=password, cache_dir=cache_dir)


class VLM2VecVideoLoader(_MediaLoader):
    """One Document per video clip (``kind="clip"``) of ``clip_seconds`` (every ``stride_seconds``).

    Metadata: ``id`` (content hash + span), ``source``, ``start_seconds``, ``end_seconds``, ``clip_index``,
    ``image_path`` (a cached thumbnail: the clip's middle frame), ``reference`` (``"talk.mp4#t=10,20"``: the
    embeddings read the clip's frames over that span from it). With ``encoder`` (e.g. ``embeddings.encoder``)
    clips pick their frames as its model family does (GME: the middle one), ``num_frames`` of them (default:
    the family's; 8 without an encoder).
    """

    _kind = "video"

    def __init__(
        self,
        file_path: PathArg,
        *,
        clip_seconds: float = 10.0,
        stride_seconds: float | None = None,
        num_frames: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        skip_errors: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        super().__init__(
            file_path,
            skip_errors=skip_errors,
            clip_seconds=clip_seconds,
            stride_seconds=stride_seconds,
            num_frames=num_frames or 8,
            cache_dir=cache_dir,
        )
        self.encoder = encoder
        self._num_frames = num_frames

    def _item_options(self) -> dict[str, Any]:
        if self.encoder is None:
            return self.options
        return {**self.options, "sampler": clip_sampler(self.encoder, self._num_frames)}
