"""Putting pages and clips into any LangChain vector store with the vectors of their pixels, not of their text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore

from vlm2vec_core.store import check_collection, is_chroma_collection

from .embeddings import VLM2VecEmbeddings, precomputed


def check_vectorstore(vectorstore: VectorStore, embeddings: VLM2VecEmbeddings | None = None) -> None:
    """For a Chroma store: record what its collection holds (model family, checkpoint, dimension, truncation)
    when it is empty, or raise ``vlm2vec_core.store.IndexMismatch`` when it holds another model's vectors.
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
) -> list[str]:
    """Store loader Documents (pages, clips) in ``vectorstore`` under the vectors of the page images and clips.

    The stored text is the Document's short caption and the metadata says where the page or clip is (no
    base64 in the store, unlike ``Chroma.add_images``). Works with any vector store built on these
    embeddings (``Chroma(embedding_function=emb)``, ``InMemoryVectorStore(emb)``, PGVector, Qdrant, ...): the
    vectors are computed here and handed to the store's own ``add_documents``, which asks the embeddings for
    the captions' vectors and gets the pixels' vectors instead. Ids default to the Documents' stable ids, so
    adding the same file again overwrites rather than duplicates in stores that upsert (Chroma does). A Chroma
    collection records the model that filled it and refuses another family's or truncation's vectors
    (:func:`check_vectorstore`).
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


async def aadd_media_documents(
    vectorstore: VectorStore,
    documents: Iterable[Document],
    *,
    embeddings: VLM2VecEmbeddings | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 32,
) -> list[str]:
    """``add_media_documents`` off the event loop."""
    return await asyncio.to_thread(
        add_media_documents, vectorstore, list(documents), embeddings=embeddings, ids=ids, batch_size=batch_size
    )
