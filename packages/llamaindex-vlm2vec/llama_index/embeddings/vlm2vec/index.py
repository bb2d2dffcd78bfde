"""A persistent multimodal index on Chroma, idempotent indexing, and a query engine over pages and clips."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field
from llama_index.core.indices.multi_modal import MultiModalVectorStoreIndex
from llama_index.core.llms import LLM, MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import BaseNode, Document, ImageNode, MetadataMode, NodeWithScore, QueryBundle

from vlm2vec_core import InputError, MissingDependencyError
from vlm2vec_core.index.store import check_collection

log = logging.getLogger(__name__)


def open_chroma_index(
    path: str | os.PathLike[str] | None,
    embed_model: BaseEmbedding,
    *,
    client: Any = None,
    collection_prefix: str = "vlm2vec",
    **index_kwargs: Any,
) -> MultiModalVectorStoreIndex:
    """Create or reopen a ``MultiModalVectorStoreIndex`` kept in Chroma: ``{prefix}_text`` for text nodes and
    ``{prefix}_images`` for pages, clips and images, both with cosine distance.

    ``path`` is an embedded Chroma folder (``chromadb.PersistentClient``); pass ``client=`` instead for any
    other Chroma client (e.g. ``chromadb.HttpClient``). Everything is on disk as soon as it is inserted: calling
    this again with the same path (in this process or a later one) gives the same index back.
    ``embed_model`` (a ``VLM2VecEmbedding``) embeds both text and images. Each collection records the model that
    filled it (family, checkpoint, dimension, truncation) and refuses another family's or truncation's vectors
    (``vlm2vec_core.index.store.IndexMismatch``).
    """
    try:
        import chromadb
        from llama_index.vector_stores.chroma import ChromaVectorStore
    except ImportError as exc:
        raise MissingDependencyError(
            f"{exc.name} is needed for open_chroma_index; install it with: "
            'pip install "llama-index-embeddings-vlm2vec[chroma]"'
        ) from exc
    if client is None:
        if path is None:
            raise ValueError("open_chroma_index needs a folder path or a Chroma client")
        client = chromadb.PersistentClient(path=str(Path(path)))
    image_embed_model = index_kwargs.pop("image_embed_model", embed_model)
    stores = []
    for name, model in (("text", embed_model), ("images", image_embed_model)):
        collection = _cosine_collection(client, f"{collection_prefix}_{name}")
        encoder = getattr(model, "encoder", None)  # a VLM2VecEmbedding; other embeddings keep no record
        if encoder is not None:
            check_collection(collection, encoder)
        stores.append(ChromaVectorStore(chroma_collection=collection))
    return MultiModalVectorStoreIndex.from_vector_store(
        vector_store=stores[0],
        embed_model=embed_model,
        image_vector_store=stores[1],
        image_embed_model=image_embed_model,
        **index_kwargs,
    )


def _cosine_collection(client: Any, name: str) -> Any:
    collection = client.get_or_create_collection(name, configuration={"hnsw": {"space": "cosine"}})
    space = (collection.configuration.get("hnsw") or {}).get("space") or (collection.metadata or {}).get("hnsw:space")
    if space != "cosine":
        raise ValueError(f"Chroma collection {name!r} exists with {space or 'l2'} distance; VLM2Vec needs cosine")
    return collection


def index_documents(
    index: MultiModalVectorStoreIndex, documents: Iterable[Document], *, show_progress: bool = False
) -> list[str]:
    """Add documents to ``index``, embedding only those it does not hold yet; returns the new node ids.

    Node ids come from content: the readers' document ids (content hash + page or clip span), and for other
    documents (texts read by LlamaIndex's own readers, whose ids are random) a hash of their text. So indexing
    the same folder again embeds and stores nothing new, and a changed file is indexed under new ids.
    """
    nodes = SentenceSplitter(id_func=_node_id)(list(documents))
    wanted = [node.node_id for node in nodes]
    present: set[str] = set()
    for store in (index.vector_store, index.image_vector_store):
        if wanted:
            present.update(node.node_id for node in store.get_nodes(node_ids=wanted))
    new = [node for node in {node.node_id: node for node in nodes}.values() if node.node_id not in present]
    if new:
        index.insert_nodes(new, show_progress=show_progress)
    # LlamaIndex marks a store "empty" after any insert without nodes for it, and never unmarks it: querying
    # an empty store costs nothing, skipping a full one loses results.
    index._is_text_vector_store_empty = False
    index._is_image_vector_store_empty = False
    return [node.node_id for node in new]


def content_id(document: BaseNode) -> str:
    """A document's id by content: the readers' own (``content_sha256`` in the metadata: already content
    based), else ``text-`` and a hash of its text."""
    if document.metadata.get("content_sha256"):
        return document.node_id
    text = document.get_content(metadata_mode=MetadataMode.NONE)
    return "text-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _node_id(i: int, document: BaseNode) -> str:
    base = content_id(document)
    return base if i == 0 else f"{base}-{i}"


class ChatImages(BaseNodePostprocessor):
    """Gives a chat model a picture for each retrieved page or clip, whose ``image_path`` is a reference
    (``doc.pdf#page=3``, ``talk.mp4#t=10,20``) and no image file: a page rendered again from its PDF (never its
    small display thumbnail), a clip's thumbnail (its ``file_path``). ``max_side`` bounds the page images sent."""

    max_side: int | None = Field(default=1024, description="Longest side of the page images sent (pixels).")

    @classmethod
    def class_name(cls) -> str:
        return "ChatImages"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        out = []
        for hit in nodes:
            node = hit.node
            if isinstance(node, ImageNode):
                node = self._shown(node)
            out.append(NodeWithScore(node=node, score=hit.score))
        return out

    def _shown(self, node: ImageNode) -> ImageNode:
        path = node.image_path or ""
        if "#t=" in path and node.metadata.get("file_path"):
            return node.model_copy(update={"image_path": node.metadata["file_path"], "image_mimetype": "image/jpeg"})
        if "#page=" in path:
            from vlm2vec_core.media.documents import input_for_metadata
            from vlm2vec_core.media.images import to_data_url

            metadata = {"kind": "page", "reference": path, **node.metadata}
            try:
                url = to_data_url(input_for_metadata(metadata).image, max_side=self.max_side)
            except (InputError, OSError, ValueError) as exc:
                log.warning("no image of %s for the chat model: %s", path, exc)
                return node
            head, _, data = url.partition(",")
            mime = head[len("data:") : -len(";base64")]
            return node.model_copy(update={"image": data, "image_path": None, "image_mimetype": mime})
        return node


ClipThumbnails = ChatImages  # its name when it showed clips only


def chat_llm_from_env(**kwargs: Any) -> LLM | None:
    """The multimodal chat model configured for the suite, or None: ``VLM2VEC_CHAT_BASE_URL`` (else
    ``OPENAI_BASE_URL``), ``VLM2VEC_CHAT_API_KEY`` (else ``OPENAI_API_KEY``) and ``VLM2VEC_CHAT_MODEL``; configured
    when base URL and model are set. ``kwargs`` go to ``OpenAILike`` (e.g. ``max_tokens``, ``timeout``)."""
    from vlm2vec_core.apps.chat import ChatConfig

    config = ChatConfig.from_env()
    if config is None:
        return None
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError as exc:
        raise MissingDependencyError(
            'an OpenAI-compatible chat model needs: pip install "llama-index-embeddings-vlm2vec[llm]"'
        ) from exc
    options: dict[str, Any] = {"is_chat_model": True, "context_window": 32768, "timeout": config.timeout, **kwargs}
    return OpenAILike(model=config.model, api_base=config.base_url, api_key=config.api_key or "none", **options)


class NoChatModel(ValueError):
    """``query_engine`` was asked for answers with no chat model configured."""


def query_engine(
    index: MultiModalVectorStoreIndex,
    llm: LLM | None = None,
    *,
    similarity_top_k: int = 2,
    image_similarity_top_k: int = 3,
    retrieve_only: bool = False,
    **kwargs: Any,
) -> RetrieverQueryEngine:
    """A query engine answering from the retrieved pages and clips (as images) with a multimodal chat model:
    ``llm``, else the one configured in the environment (:func:`chat_llm_from_env`). With no model it raises
    ``NoChatModel`` saying how to configure one, unless ``retrieve_only=True``: then the engine retrieves only
    (``response.source_nodes`` holds the hits, ``str(response)`` lists their captions, one a line).
    ``kwargs`` go to ``RetrieverQueryEngine.from_args`` (templates, ``streaming``...; when retrieving only,
    only ``node_postprocessors`` and ``callback_manager`` apply)."""
    retriever = index.as_retriever(similarity_top_k=similarity_top_k, image_similarity_top_k=image_similarity_top_k)
    if not retrieve_only:
        llm = llm or chat_llm_from_env()
        if llm is None:
            raise NoChatModel(
                "query_engine needs a chat model to answer: pass llm=, or set VLM2VEC_CHAT_BASE_URL and "
                "VLM2VEC_CHAT_MODEL (and VLM2VEC_CHAT_API_KEY) for an OpenAI-compatible endpoint that takes "
                "images; for the hits alone pass retrieve_only=True or use index.as_retriever()"
            )
    if llm is None or retrieve_only:
        # not from_args: it resolves Settings.llm (OpenAI by default) even when no text is to be written
        return RetrieverQueryEngine(retriever, response_synthesizer=_HitList(llm=MockLLM()), **kwargs)
    postprocessors = [ChatImages(), *kwargs.pop("node_postprocessors", [])]
    return RetrieverQueryEngine.from_args(
        retriever, llm=llm, multimodal=True, node_postprocessors=postprocessors, **kwargs
    )


class _HitList(NoText):
    """A retrieve-only engine's response text: the hits' captions, best first (``report.pdf p.3``)."""

    def synthesize(self, query: Any, nodes: list[NodeWithScore], *args: Any, **kwargs: Any) -> Any:
        response = super().synthesize(query, nodes, *args, **kwargs)
        response.response = _captions(nodes)
        return response

    async def asynthesize(self, query: Any, nodes: list[NodeWithScore], *args: Any, **kwargs: Any) -> Any:
        response = await super().asynthesize(query, nodes, *args, **kwargs)
        response.response = _captions(nodes)
        return response


def _captions(nodes: list[NodeWithScore]) -> str:
    from vlm2vec_core.index.store import caption

    return "\n".join(caption(hit.node.metadata, default=hit.node.node_id) for hit in nodes) or "(no hits)"
