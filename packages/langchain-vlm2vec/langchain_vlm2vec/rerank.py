"""VLM2VecRerank: a document compressor that reorders retrieved pages, clips and texts by a multimodal reranker."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, field_validator

from vlm2vec_core import Input, InputError, input_for_reference
from vlm2vec_core.media.images import from_data_url
from vlm2vec_core.rerank import DEFAULT_RERANKER, candidate_for

log = logging.getLogger(__name__)


class VLM2VecRerank(BaseDocumentCompressor):
    """Rerank retrieved Documents with a multimodal reranker (Qwen3-VL-Reranker by default): the ``top_n`` best,
    copies with ``metadata["relevance_score"]``, the reranker's score in (0, 1).

    ``reranker`` is a model name or folder (a local ``vlm2vec_core.rerank.Reranker``, loaded on first use) or any
    object with ``rerank`` (``Reranker``, ``RemoteReranker``, ``FakeReranker``). Pages and images are judged by
    their image, clips by their frames (the loaders' metadata), other Documents by ``page_content``. A Document
    whose file is gone or broken is dropped (logged), the others are still reranked. Works as the
    ``base_compressor`` of a ``ContextualCompressionRetriever``; ``compress_documents_by_image`` takes an image
    as the query.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = Field(default=DEFAULT_RERANKER, validate_default=True, exclude=True)
    """A reranker object, or a model name or folder for a local ``Reranker``."""
    top_n: int | None = Field(default=3, ge=1)
    """How many Documents to keep (None: all, reordered)."""
    instruction: str | None = None
    """The reranker's instruction (None: its family's default, or the ``task`` preset's)."""
    task: str | None = None
    """A task preset (``"visdoc"``, ``"moment"``...) whose instruction the reranker uses."""

    @field_validator("reranker", mode="before")
    @classmethod
    def _build_reranker(cls, value: Any) -> Any:
        from vlm2vec_core.rerank import resolve_reranker

        return resolve_reranker(value)

    def rerank(self, documents: Sequence[Document], query: Any) -> list[tuple[int, float]]:
        """(index into ``documents``, score) pairs, best first, ``top_n`` of them. ``query`` is a question (a str
        is always text), or a PIL image, ``Input``, ``Page`` or ``VideoClip``. Bad Documents are left out."""
        candidates, kept = _candidates(documents)
        if not candidates:
            return []
        errors: list[InputError] = []
        ranked = self.reranker.rerank(_query(query), candidates, **self._options(errors))
        return _back(documents, kept, ranked, errors)

    async def arerank(self, documents: Sequence[Document], query: Any) -> list[tuple[int, float]]:
        candidates, kept = _candidates(documents)
        if not candidates:
            return []
        errors: list[InputError] = []
        options = self._options(errors)
        arerank = getattr(self.reranker, "arerank", None)
        if arerank is not None:
            ranked = await arerank(_query(query), candidates, **options)
        else:
            ranked = await asyncio.to_thread(self.reranker.rerank, _query(query), candidates, **options)
        return _back(documents, kept, ranked, errors)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The ``top_n`` best Documents for ``query``, best first, with ``metadata["relevance_score"]``."""
        return _scored(documents, self.rerank(documents, query))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return _scored(documents, await self.arerank(documents, query))

    def compress_documents_by_image(self, documents: Sequence[Document], image: Any) -> Sequence[Document]:
        """As ``compress_documents``, for an image query: a path, a page reference (``"doc.pdf#page=3"``), a
        ``data:`` URL, bytes or a PIL image."""
        return _scored(documents, self.rerank(documents, _image(image)))

    async def acompress_documents_by_image(self, documents: Sequence[Document], image: Any) -> Sequence[Document]:
        return _scored(documents, await self.arerank(documents, _image(image)))

    def _options(self, errors: list[InputError]) -> dict[str, Any]:
        return {"top_n": self.top_n, "instruction": self.instruction, "task": self.task, "errors": errors}


def candidate(document: Document) -> Input:
    """What the reranker judges for a Document: a page's or image's picture, a clip's frames, else its text."""
    return candidate_for(document.metadata, document.page_content)


def _candidates(documents: Sequence[Document]) -> tuple[list[Input], list[int]]:
    candidates: list[Input] = []
    kept: list[int] = []
    for position, document in enumerate(documents):
        try:
            candidates.append(candidate(document))
            kept.append(position)
        except ValueError as exc:  # InputError included: a page whose PDF is gone, metadata without a reference
            log.warning("VLM2VecRerank dropped document %s: %s", document.id or position, exc)
    return candidates, kept


def _back(
    documents: Sequence[Document], kept: list[int], ranked: list[tuple[int, float]], errors: list[InputError]
) -> list[tuple[int, float]]:
    """Indices into the candidates -> indices into ``documents`` (by the index each score came with)."""
    for err in errors:
        position = kept[err.index or 0]
        log.warning("VLM2VecRerank dropped document %s: %s", documents[position].id or position, err.reason)
    return [(kept[index], float(score)) for index, score in ranked]


def _scored(documents: Sequence[Document], ranked: list[tuple[int, float]]) -> list[Document]:
    out = []
    for index, score in ranked:
        document = documents[index]
        out.append(document.model_copy(update={"metadata": {**document.metadata, "relevance_score": score}}))
    return out


def _query(query: Any) -> Any:
    return Input(text=query) if isinstance(query, str) else query


def _image(image: Any) -> Input:
    if isinstance(image, str) and image.startswith("data:"):
        return Input(image=from_data_url(image))
    if isinstance(image, (str, os.PathLike)):
        return input_for_reference(image)
    return Input(image=image)
