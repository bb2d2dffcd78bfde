"""Where vectors live: a small store protocol and its Chroma implementation (extra ``[chroma]``).

The indexer and the CLI speak only the protocol, so another store (Qdrant, Milvus, pgvector) is one class away.
Chroma collections are created with cosine distance and no embedding function of their own (vectors always
come from the VLM2Vec encoder; Chroma's default would download a text model).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import require_extra

FILES_SUFFIX = "__files"


class DimensionMismatch(ValueError):
    """The collection was built with a model whose vectors have another size."""


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity
    metadata: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.metadata.get("kind", ""))

    @property
    def label(self) -> str:
        """``report.pdf p.3`` / ``talk.mp4 10.0-20.0 s`` / ``photo.png``."""
        name = self.metadata.get("file_name", self.metadata.get("source", self.id))
        if self.kind == "page":
            return f"{name} p.{self.metadata.get('page')}"
        if self.kind == "clip":
            return f"{name} {self.metadata.get('start_seconds', 0):.1f}-{self.metadata.get('end_seconds', 0):.1f} s"
        return str(name)

    def clip_frames(self, count: int) -> list[Any] | None:
        """``count`` frames spread over a clip hit, read from its video; None for other hits or when the video
        moved or broke since indexing (show ``image()``, its cached thumbnail, instead)."""
        if self.kind != "clip":
            return None
        from .video import read_clip_frames

        meta = self.metadata
        try:
            frames, _ = read_clip_frames(
                meta["source"], float(meta["start_seconds"]), float(meta["end_seconds"]), count
            )
        except (OSError, ValueError):
            return None
        return frames

    def image(self) -> Any | None:
        """The page, the image, or a clip's thumbnail as an RGB PIL image; None when the file is gone."""
        from .errors import InputError
        from .media import load_image

        try:
            return load_image(self.metadata["image_path"])
        except (InputError, KeyError):
            return None


@dataclass(frozen=True)
class FileRecord:
    source: str
    digest: str
    items: int
    indexed_at: float


class VectorStore(Protocol):
    def check_dim(self, dim: int) -> None: ...
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None: ...
    def existing(self, ids: Sequence[str]) -> set[str]: ...
    def query(self, vector: np.ndarray, k: int, kinds: Iterable[str] | None = None) -> list[Hit]: ...
    def delete_file(self, source: str, digest: str) -> int: ...
    def files(self) -> list[FileRecord]: ...
    def mark_file(self, record: FileRecord) -> None: ...
    def count(self) -> int: ...


class ChromaStore:
    """A Chroma collection of pages, clips and images (cosine), plus a small one recording indexed files."""

    def __init__(self, client: Any, collection: str = "vlm2vec") -> None:
        self.client = client
        self.name = collection
        self.items = client.get_or_create_collection(
            collection,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"created_by": "vlm2vec"},
        )
        self.ledger = client.get_or_create_collection(collection + FILES_SUFFIX, embedding_function=None)

    @classmethod
    def open(cls, db: str | Path | None = None, url: str | None = None, collection: str = "vlm2vec") -> ChromaStore:
        """Embedded (``db``: a folder, created if needed) or a ``chroma run`` server (``url``)."""
        try:
            import chromadb
        except ImportError as exc:
            raise require_extra("chroma", "chromadb") from exc
        if url is not None:
            from urllib.parse import urlparse

            parsed = urlparse(url if "://" in url else f"http://{url}")
            client = chromadb.HttpClient(
                host=parsed.hostname or "localhost", port=parsed.port or 8000, ssl=parsed.scheme == "https"
            )
        else:
            client = chromadb.PersistentClient(path=str(db or ".vlm2vec"))
        return cls(client, collection)

    def check_dim(self, dim: int) -> None:
        """Refuse vectors of another size than the collection holds (an index built with another model)."""
        if self.items.count() == 0:
            return
        sample = self.items.get(limit=1, include=["embeddings"])["embeddings"]
        stored = len(sample[0]) if sample is not None and len(sample) else dim
        if stored != dim:
            raise DimensionMismatch(
                f"collection {self.name!r} holds {stored}-dimensional vectors but this model makes {dim}: it was "
                "built with another model; use that model, or another --collection or --db"
            )

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None:
        if ids:
            self.items.upsert(
                ids=list(ids), embeddings=np.asarray(vectors, dtype=np.float32), metadatas=list(metadatas)
            )

    def existing(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return set(self.items.get(ids=list(ids), include=[])["ids"])

    def query(self, vector: np.ndarray, k: int, kinds: Iterable[str] | None = None) -> list[Hit]:
        wanted = list(kinds or [])
        where: dict[str, Any] | None = None
        if len(wanted) == 1:
            where = {"kind": wanted[0]}
        elif wanted:
            where = {"kind": {"$in": wanted}}
        found = self.items.query(
            query_embeddings=[np.asarray(vector, np.float32)],
            n_results=k,
            where=where,
            include=["metadatas", "distances"],
        )
        return [
            Hit(i, 1.0 - float(d), dict(m or {}))
            for i, d, m in zip(found["ids"][0], found["distances"][0], found["metadatas"][0], strict=True)
        ]

    def delete_file(self, source: str, digest: str) -> int:
        where = {"$and": [{"source": source}, {"content_sha256": digest}]}
        ids = self.items.get(where=where, include=[])["ids"]
        if ids:
            self.items.delete(ids=ids)
        self.ledger.delete(ids=[_ledger_id(source, digest)])
        return len(ids)

    def files(self) -> list[FileRecord]:
        got = self.ledger.get(include=["metadatas"])
        return [
            FileRecord(m["source"], m["digest"], int(m["items"]), float(m["indexed_at"]))
            for m in got["metadatas"] or []
        ]

    def mark_file(self, record: FileRecord) -> None:
        self.ledger.upsert(
            ids=[_ledger_id(record.source, record.digest)],
            embeddings=[[1.0]],
            metadatas=[
                {
                    "source": record.source,
                    "digest": record.digest,
                    "items": record.items,
                    "indexed_at": record.indexed_at or time.time(),
                }
            ],
        )

    def count(self) -> int:
        return int(self.items.count())


def _ledger_id(source: str, digest: str) -> str:
    import hashlib

    return hashlib.sha256(f"{source}\0{digest}".encode()).hexdigest()[:40]
