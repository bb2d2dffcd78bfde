"""Putting pages and clips into any LangChain vector store with the vectors of their pixels, not of their text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore

from vlm2vec_core.index.store import check_collection, is_chroma_collection

from .embeddings import VLM2VecEmbeddings, precomputed

log = logging.getLogger(__name__)


def check_vectorstore(vectorstore: VectorStore, embeddings: VLM2VecEmbeddings | None = None) -> None:
    """For a Chroma store: record what its collection holds (model family, checkpoint, dimension, truncation)
    when it is empty, or raise ``vlm2vec_core.index.store.IndexMismatch`` when it holds another model's vectors.
    Other stores keep no such record: nothing to check."""
    collection = getattr(vectorstore, "_collection", None)
    emb = embeddings or vectorstore.embeddings
    if is_chroma_collection(collection) and isinstance(emb, VLM2VecEmbeddings):
        check_collection(collection, emb.encoder)


def add_media_documents(
    vectorstore: VectorStore,
    documents: Iterable[Document],
    *,
    embeddings: VLM2VecEmbeddings | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 32,
    skip_existing: bool = True,
) -> list[str]:
    """Store loader Documents (pages, clips) in ``vectorstore`` under the vectors of the page images and clips.

    The stored text is the Document's short caption and the metadata says where the page or clip is (no
    base64 in the store, unlike ``Chroma.add_images``). Works with any vector store built on these
    embeddings (``Chroma(embedding_function=emb)``, ``InMemoryVectorStore(emb)``, PGVector, Qdrant, ...): the
    vectors are computed here and handed to the store's own ``add_documents``, which asks the embeddings for
    the captions' vectors and gets the pixels' vectors instead. Ids default to the Documents' stable ids, so
    adding the same file again stores nothing twice. With ``skip_existing`` (the default) ids the store already
    holds (``vectorstore.get_by_ids``, e.g. from an earlier run or the CLI's ``vlm2vec index`` into the same
    Chroma collection) are neither embedded nor written again; ``skip_existing=False`` re-embeds and overwrites
    them (in stores that upsert, as Chroma does). Returns the ids written. A Chroma collection records the model
    that filled it and refuses another family's or truncation's vectors (:func:`check_vectorstore`).
    """
    store_embeddings = vectorstore.embeddings
    emb = embeddings or store_embeddings
    if not isinstance(emb, VLM2VecEmbeddings):
        raise TypeError(
            f"{type(vectorstore).__name__} must be built on a VLM2VecEmbeddings "
            f"(its embeddings are {type(store_embeddings).__name__})"
        )
    if store_embeddings is not None and store_embeddings is not emb:
        raise ValueError("embeddings= is not the vector store's own embedding object: pass the store's, or none")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    docs = list(documents)
    if ids is not None and len(ids) != len(docs):
        raise ValueError(f"got {len(ids)} ids for {len(docs)} documents")
    check_vectorstore(vectorstore, emb)
    keys = list(ids) if ids is not None else [d.id for d in docs]
    if skip_existing:
        stored = _stored_ids(vectorstore, [k for k in keys if k])
        kept = [i for i, key in enumerate(keys) if not key or key not in stored]
        if len(kept) < len(docs):
            log.info("%d of %d documents are stored already: not embedded again", len(docs) - len(kept), len(docs))
        docs, keys = [docs[i] for i in kept], [keys[i] for i in kept]
        ids = [str(k) for k in keys] if ids is not None else None
    added: list[str] = []
    for start in range(0, len(docs), batch_size):
        chunk = docs[start : start + batch_size]
        # the stores fall back to each Document's own (stable) id only when no ids= is passed at all
        chunk_ids = {"ids": list(ids[start : start + batch_size])} if ids is not None else {}
        vectors = emb.embed_media_documents(chunk)
        with precomputed([d.page_content for d in chunk], vectors) as pending:
            added.extend(vectorstore.add_documents(chunk, **chunk_ids))
        if pending:
            raise RuntimeError(
                f"{type(vectorstore).__name__} did not embed the documents through its VLM2VecEmbeddings; "
                "store the vectors from embeddings.embed_media_documents(docs) with the store's own vector API"
            )
    return added


def _stored_ids(vectorstore: VectorStore, ids: list[str], page: int = 500) -> set[str]:
    """Which of ``ids`` the store holds (nothing known for a store without ``get_by_ids``)."""
    found: set[str] = set()
    for start in range(0, len(ids), page):
        try:
            docs = vectorstore.get_by_ids(ids[start : start + page])
        except NotImplementedError:
            log.debug("%s cannot look ids up: every document is embedded", type(vectorstore).__name__)
            return set()
        found.update(d.id for d in docs if d.id)
    return found


async def aadd_media_documents(
    vectorstore: VectorStore,
    documents: Iterable[Document],
    *,
    embeddings: VLM2VecEmbeddings | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 32,
    skip_existing: bool = True,
) -> list[str]:
    """``add_media_documents`` off the event loop."""
    return await asyncio.to_thread(
        add_media_documents,
        vectorstore,
        list(documents),
        embeddings=embeddings,
        ids=ids,
        batch_size=batch_size,
        skip_existing=skip_existing,
    )
