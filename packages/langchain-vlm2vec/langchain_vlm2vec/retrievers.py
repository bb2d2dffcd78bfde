"""VLM2VecRetriever: questions (or images, or clips) to the pages and clips of a vector store, images on request."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages.content import ImageContentBlock, create_image_block
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from vlm2vec_core import InputError, input_for_metadata
from vlm2vec_core.media.images import to_data_url

from .embeddings import VLM2VecEmbeddings
from .vectorstores import check_vectorstore

log = logging.getLogger(__name__)


class VLM2VecRetriever(BaseRetriever):
    """Retrieve pages and clips stored with ``add_media_documents`` (in Chroma or any other vector store).

    The question is embedded with the embeddings' query preset, and the store is searched by that vector (a
    Chroma collection filled by another model family is refused on the first search, see ``check_vectorstore``).
    Each Document keeps its page or clip metadata plus ``score`` (the store's relevance score: the cosine
    similarity for a Chroma collection with ``{"hnsw": {"space": "cosine"}}``). With ``include_images`` it
    also carries ``metadata["image_block"]``, the page image or clip thumbnail as a standard LangChain image
    content block that multimodal chat models accept. ``k``, ``include_images`` and ``search_kwargs``
    (e.g. ``{"filter": {"kind": "page"}}``) can be given to the constructor or per call to ``invoke``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vectorstore: VectorStore
    embeddings: VLM2VecEmbeddings | None = None
    """Defaults to the vector store's own embeddings."""
    k: int = Field(default=4, ge=1)
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    include_images: bool = False
    image_max_side: int | None = 1024
    """Longest side of the attached images (pixels); ``None`` keeps the cached render's size."""
    _checked: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _resolve_embeddings(self) -> VLM2VecRetriever:
        if self.embeddings is None:
            store_embeddings = self.vectorstore.embeddings
            if not isinstance(store_embeddings, VLM2VecEmbeddings):
                raise ValueError(
                    f"{type(self.vectorstore).__name__} is not built on a VLM2VecEmbeddings: pass embeddings="
                )
            self.embeddings = store_embeddings
        return self

    @property
    def _emb(self) -> VLM2VecEmbeddings:
        assert self.embeddings is not None  # set by the validator
        return self.embeddings

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        include_images: bool | None = None,
        **search_kwargs: Any,
    ) -> list[Document]:
        return self.search_by_vector(self._emb.embed_query(query), k=k, include_images=include_images, **search_kwargs)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        include_images: bool | None = None,
        **search_kwargs: Any,
    ) -> list[Document]:
        vector = await self._emb.aembed_query(query)
        return await asyncio.to_thread(
            self.search_by_vector, vector, k=k, include_images=include_images, **search_kwargs
        )

    def search_by_image(self, image: Any, **kwargs: Any) -> list[Document]:
        """Pages (or images) that look like ``image`` (a path, ``data:`` URL, bytes or PIL image).

        Embeds it with ``embed_image`` and searches by vector, which sidesteps the nested-vector bug some
        versions of ``Chroma.similarity_search_by_image*`` have (langchain#33851).
        """
        return self.search_by_vector(self._emb.embed_image([image])[0], **kwargs)

    def search_by_video(self, video: Any, **kwargs: Any) -> list[Document]:
        """Clips that look like ``video`` (a file, a clip reference ``"talk.mp4#t=10,20"`` or frames)."""
        return self.search_by_vector(self._emb.embed_video([video])[0], **kwargs)

    def search_by_vector(
        self,
        vector: list[float],
        *,
        k: int | None = None,
        include_images: bool | None = None,
        **search_kwargs: Any,
    ) -> list[Document]:
        """The ``k`` nearest stored pages and clips to ``vector``, with ``score`` (and images on request)."""
        k = self.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        kwargs = {**self.search_kwargs, **search_kwargs}
        images = self.include_images if include_images is None else include_images
        return [self._result(doc, score, images) for doc, score in self._scored(vector, k, kwargs)]

    def _scored(self, vector: list[float], k: int, kwargs: dict[str, Any]) -> list[tuple[Document, float | None]]:
        store = self.vectorstore
        if not self._checked:  # a Chroma collection filled by another model is refused, not searched
            check_vectorstore(store, self._emb)
            self._checked = True
        # Chroma's by-vector "relevance" search and FAISS-style score searches return raw distances; the store's
        # own relevance function turns them into scores (higher is better).
        search = getattr(store, "similarity_search_by_vector_with_relevance_scores", None) or getattr(
            store, "similarity_search_with_score_by_vector", None
        )
        if search is None:
            return [(doc, None) for doc in store.similarity_search_by_vector(vector, k=k, **kwargs)]
        pairs = search(vector, k=k, **kwargs)
        try:
            relevance = store._select_relevance_score_fn()
        except NotImplementedError:
            return [(doc, float(distance)) for doc, distance in pairs]
        return [(doc, float(relevance(distance))) for doc, distance in pairs]

    def _result(self, doc: Document, score: float | None, images: bool) -> Document:
        metadata = dict(doc.metadata)
        if score is not None:
            metadata["score"] = score
        if images and (block := image_block(metadata, max_side=self.image_max_side)) is not None:
            metadata["image_block"] = block
        return Document(id=doc.id, page_content=doc.page_content, metadata=metadata)


def image_block(metadata: dict[str, Any], *, max_side: int | None = 1024) -> ImageContentBlock | None:
    """The page or image a stored Document points at (from its reference: the page itself, not the cached
    display thumbnail), or a clip's thumbnail, as a base64 image content block; None when the file is gone."""
    source: Any = None
    if metadata.get("kind") in ("page", "image") and metadata.get("reference"):
        try:
            source = input_for_metadata(metadata).image
        except (InputError, OSError, ValueError) as exc:
            log.warning("no image for %s: %s", metadata.get("reference"), exc)
            return None
    elif (path := metadata.get("image_path")) and Path(path).is_file():
        source = path
    if source is None:
        log.warning("no image for %s: %s is gone", metadata.get("reference"), metadata.get("image_path"))
        return None
    url = to_data_url(source, max_side=max_side)
    head, _, data = url.partition(",")
    return create_image_block(base64=data, mime_type=head[len("data:") : -len(";base64")])
