"""Readers: one ``ImageDocument`` per PDF page, video clip or image file, with stable ids and cached thumbnails.

A document's image is its *reference* (``doc.pdf#page=3``, ``talk.mp4#t=10,20``, ``photo.png``), which
``VLM2VecEmbedding`` embeds as the page, the clip or the image itself; ``metadata["file_path"]`` is a small cached
picture to show (a page's or clip's thumbnail), never what a model judges.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document, ImageDocument, MediaResource

from vlm2vec_core import Encoder, InputError
from vlm2vec_core.media.documents import (
    IMAGE_SUFFIXES,
    PDF_SUFFIXES,
    VIDEO_SUFFIXES,
    Item,
    clip_sampler,
    iter_items,
    kind_of,
)

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
# Paths, hashes and file-system details: useful to code, noise to an LLM.
_NOT_FOR_LLM = [
    "id",
    "content_sha256",
    "image_path",
    "thumbnail_path",
    "file_path",
    "source",
    "file_type",
    "file_size",
    "creation_date",
    "last_modified_date",
    "last_accessed_date",
    "clip_index",
]


class _ItemReader(BaseReader):
    """Streams files through ``vlm2vec_core.media.documents.iter_items``; bad files are reported, not fatal."""

    kind: str = ""

    def __init__(self, *, cache_dir: PathLike | None = None, raise_on_error: bool = False) -> None:
        self.cache_dir = cache_dir
        self.raise_on_error = raise_on_error
        self.errors: list[InputError] = []  # every file, page or clip skipped so far (each also logged)

    def lazy_load_data(
        self,
        file: PathLike | Sequence[PathLike],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterator[Document]:
        """Yield documents for one file or a list of files. A bad file (or page, or clip) raises ``InputError``
        when ``raise_on_error``; otherwise it is logged, appended to ``self.errors``, and the rest is read."""
        if fs is not None:
            raise ValueError(f"{type(self).__name__} reads local files only (got a file system {fs!r})")
        paths = [file] if isinstance(file, (str, os.PathLike)) else list(file)
        errors = None if self.raise_on_error else self.errors
        for path in paths:
            if kind_of(path) != self.kind:
                err = InputError(f"{type(self).__name__} reads {self.kind} files only", source=path)
                if errors is None:
                    raise err
                log.warning("skipped: %s", err)
                errors.append(err)
                continue
            for item in iter_items(path, errors=errors, **self._options()):
                yield self._document(item, extra_info)

    def load_data(
        self,
        file: PathLike | Sequence[PathLike],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> list[Document]:
        return list(self.lazy_load_data(file, extra_info, fs))

    def _options(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir}

    def _document(self, item: Item, extra_info: dict[str, Any] | None) -> ImageDocument:
        raise NotImplementedError


class PDFPageReader(_ItemReader):
    """One ``ImageDocument`` per PDF page. Its image is the page reference ``doc.pdf#page=3``, which
    ``VLM2VecEmbedding`` renders and embeds (at its ``dpi``: give both the same); ``metadata["file_path"]`` is the
    page's cached display picture (``cache_dir``, default ``$VLM2VEC_CACHE`` or ``~/.cache/vlm2vec``).

    The document id is the PDF's content hash plus the page number, so re-indexing upserts. Metadata:
    ``file_path``, ``source`` (the PDF), ``file_name``, ``page``, ``page_label``, ``total_pages``, ``reference``
    (``doc.pdf#page=3``) and more.
    """

    kind = "pdf"

    def __init__(
        self,
        *,
        cache_dir: PathLike | None = None,
        dpi: float = 144,
        password: str | None = None,
        raise_on_error: bool = False,
    ) -> None:
        super().__init__(cache_dir=cache_dir, raise_on_error=raise_on_error)
        self.dpi = dpi
        self.password = password

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "dpi": self.dpi, "password": self.password}

    def _document(self, item: Item, extra_info: dict[str, Any] | None) -> ImageDocument:
        metadata = {
            **(extra_info or {}),
            **item.metadata(),
            "file_path": str(item.image_path),
            "page_label": str(item.page),
            "total_pages": item.page_count,
        }
        return _image_document(item.id, item.reference, None, metadata)


class ImageFileReader(_ItemReader):
    """One ``ImageDocument`` per image file (PNG, JPEG, WebP, ...), embedded as the picture it is (LlamaIndex's
    default for images without ``llama-index-readers-file`` is their bytes read as text). The id is the file's
    content hash, so re-indexing upserts; an unreadable image is reported like a bad PDF."""

    kind = "image"

    def _document(self, item: Item, extra_info: dict[str, Any] | None) -> ImageDocument:
        image = str(item.source)
        metadata = {**(extra_info or {}), **item.metadata(), "file_path": image}
        return _image_document(item.id, image, mimetypes.guess_type(image)[0], metadata)


class VideoClipReader(_ItemReader):
    """One ``ImageDocument`` per clip of ``clip_seconds`` (every ``stride_seconds``, default no overlap).

    The document's image is the clip reference ``talk.mp4#t=10,20``, which ``VLM2VecEmbedding`` embeds as
    frames over the clip's span (not as a still). Metadata: ``start_seconds``, ``end_seconds``, ``reference``,
    ``file_path`` and ``thumbnail_path`` (the clip's middle frame, cached once), ``source``... With ``encoder``
    (e.g. ``embed_model.encoder``) clips pick their frames as its model family does (GME: the middle one),
    ``num_frames`` of them (default: the family's; 8 without an encoder).
    """

    kind = "video"

    def __init__(
        self,
        *,
        cache_dir: PathLike | None = None,
        clip_seconds: float = 10.0,
        stride_seconds: float | None = None,
        num_frames: int | None = None,
        raise_on_error: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, raise_on_error=raise_on_error)
        self.clip_seconds = clip_seconds
        self.stride_seconds = stride_seconds
        self.num_frames = num_frames
        self.encoder = encoder

    def _options(self) -> dict[str, Any]:
        options = {
            **super()._options(),
            "clip_seconds": self.clip_seconds,
            "stride_seconds": self.stride_seconds,
            "num_frames": self.num_frames or 8,
        }
        if self.encoder is not None:
            options["sampler"] = clip_sampler(self.encoder, self.num_frames)
        return options

    def _document(self, item: Item, extra_info: dict[str, Any] | None) -> ImageDocument:
        thumbnail = str(item.image_path)
        metadata = {**(extra_info or {}), **item.metadata(), "file_path": thumbnail, "thumbnail_path": thumbnail}
        return _image_document(item.id, item.reference, None, metadata)


def file_extractor(
    *,
    cache_dir: PathLike | None = None,
    dpi: float = 144,
    clip_seconds: float = 10.0,
    stride_seconds: float | None = None,
    raise_on_error: bool = False,
    encoder: Encoder | None = None,
) -> dict[str, BaseReader]:
    """Readers by suffix for ``SimpleDirectoryReader(folder, file_extractor=file_extractor())``: PDFs as pages,
    videos as clips, images as images, each document with a content id; ``encoder``: clips sample their frames
    as its model family does."""
    pages = PDFPageReader(cache_dir=cache_dir, dpi=dpi, raise_on_error=raise_on_error)
    images = ImageFileReader(cache_dir=cache_dir, raise_on_error=raise_on_error)
    clips = VideoClipReader(
        cache_dir=cache_dir,
        clip_seconds=clip_seconds,
        stride_seconds=stride_seconds,
        raise_on_error=raise_on_error,
        encoder=encoder,
    )
    return {
        **dict.fromkeys(PDF_SUFFIXES, pages),
        **dict.fromkeys(VIDEO_SUFFIXES, clips),
        **dict.fromkeys(IMAGE_SUFFIXES, images),
    }


def _image_document(doc_id: str, image: str, mimetype: str | None, metadata: dict[str, Any]) -> ImageDocument:
    # image_resource directly: ImageDocument(image_path=...) would open the image (and refuse a page or clip
    # reference, which is no image file).
    return ImageDocument(
        id_=doc_id,
        text="",
        image_resource=MediaResource(path=Path(image), mimetype=mimetype),
        metadata=metadata,
        excluded_llm_metadata_keys=list(_NOT_FOR_LLM),
        excluded_embed_metadata_keys=list(_NOT_FOR_LLM),
    )
