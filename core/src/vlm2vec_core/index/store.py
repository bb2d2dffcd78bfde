"""Where vectors live: a small store protocol and its Chroma implementation (extra ``[chroma]``).

The indexer and the CLI speak only the protocol, so another store (Qdrant, Milvus, pgvector) is one class away.
Chroma collections are created with cosine distance and no embedding function of their own (vectors always
come from the VLM2Vec encoder; Chroma's default would download a text model).

A collection records the *vector signature* of what it holds (model family, checkpoint id, dimension and
truncation, see ``vlm2vec_core.families.vector_signature``) in its metadata when first written, and refuses
vectors of another family, dimension or truncation afterwards: they would share the dimension at best, never
the space. ``check_collection`` does this on any chromadb collection; the CLI, the Chroma embedding function
and both framework adapters go through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import require_extra
from ..types import clock

log = logging.getLogger(__name__)

FILES_SUFFIX = "__files"
SIGNATURE_PREFIX = "vlm2vec:"  # collection metadata keys: vlm2vec:family, vlm2vec:model, vlm2vec:dim, ...
SIGNATURE_FIELDS = ("family", "model", "dim", "truncate_dim")
_warned: set[tuple[str, str, str]] = set()


class IndexMismatch(ValueError):
    """The collection holds vectors of another model than this encoder makes (another dimension, model family
    or truncation). ``held`` and ``made`` are the two vector signatures (``held`` is None for a collection
    that predates signatures, of which only the dimension is known)."""

    def __init__(self, message: str, *, held: Mapping[str, Any] | None = None, made: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.held = dict(held) if held is not None else None
        self.made = dict(made)


DimensionMismatch = IndexMismatch  # its name before stores recorded more than the dimension


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity
    metadata: dict[str, Any]
    rerank_score: float | None = None  # the second stage's score in (0, 1), when there was one

    @property
    def kind(self) -> str:
        return str(self.metadata.get("kind", ""))

    @property
    def label(self) -> str:
        """``report.pdf p.3`` / ``talk.mp4 0:10-0:20`` / ``photo.png`` (the stored caption, see :func:`caption`)."""
        return caption(self.metadata, default=self.id)

    def clip_frames(self, count: int, *, isolated: float | None = None) -> list[Any] | None:
        """``count`` frames spread over a clip hit, read from its video; None for other hits or when the video
        moved or broke since indexing (show ``image()``, its cached thumbnail, instead). ``isolated``: decode in
        a worker process with this many seconds' limit (a crash or a hang then gives None, as a broken file)."""
        if self.kind != "clip":
            return None
        from ..media.video import read_clip_frames

        meta = self.metadata
        span = (meta["source"], float(meta["start_seconds"]), float(meta["end_seconds"]), count)
        try:
            if isolated is not None:
                from ..media.isolate import run_isolated

                frames, _ = run_isolated(read_clip_frames, *span, timeout=isolated, source=meta["source"])
            else:
                frames, _ = read_clip_frames(*span)
        except (OSError, ValueError):  # InputError is a ValueError
            return None
        return list(frames)

    def image(self) -> Any | None:
        """The page, the image, or a clip's thumbnail as an RGB PIL image; None when the file is gone."""
        from ..errors import InputError
        from ..media.images import load_image

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
    def check_signature(self, signature: Mapping[str, Any]) -> None: ...
    def signature(self) -> dict[str, Any] | None: ...
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None: ...
    def existing(self, ids: Sequence[str]) -> set[str]: ...
    def query(
        self,
        vector: np.ndarray,
        k: int,
        kinds: Iterable[str] | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]: ...
    def delete_file(self, source: str, digest: str) -> int: ...
    def move_file(self, old: str, new: str, digest: str) -> int: ...
    def files(self) -> list[FileRecord]: ...
    def mark_file(self, record: FileRecord) -> None: ...
    def count(self) -> int: ...
    def metadatas(self) -> list[dict[str, Any]]: ...


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
        stored = _stored_dim(self.items)
        if stored is not None and stored != dim:
            raise IndexMismatch(_dim_message(self.name, stored, None, {"dim": dim}), made={"dim": dim})

    def check_signature(self, signature: Mapping[str, Any]) -> None:
        """Record the vectors' signature in an empty collection, or refuse one that holds another model's
        vectors (``IndexMismatch``); see :func:`check_collection`."""
        check_collection(self.items, signature, name=self.name)

    def signature(self) -> dict[str, Any] | None:
        """What the collection holds, as recorded when it was first written (None: nothing recorded)."""
        return read_signature(self.items.metadata)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None:
        """Store items under their ids (replacing what was there), each with a short caption as its document
        (``report.pdf p.3``), so that LangChain's and LlamaIndex's Chroma stores, which return documents' text,
        read a CLI-built collection too."""
        if ids:
            self.items.upsert(
                ids=list(ids),
                embeddings=np.asarray(vectors, dtype=np.float32),
                metadatas=list(metadatas),
                documents=[caption(m, default=i) for i, m in zip(ids, metadatas, strict=True)],
            )

    def existing(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return set(self.items.get(ids=list(ids), include=[])["ids"])

    def query(
        self,
        vector: np.ndarray,
        k: int,
        kinds: Iterable[str] | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` nearest items, best first; ``kinds`` keeps those kinds only (``page``, ``clip``, ``image``),
        ``sources`` those of these files only (exact ``source`` paths as stored, e.g. a folder's files taken
        from :meth:`files`; an empty list matches nothing)."""
        if sources is not None and isinstance(sources, str):
            raise TypeError("sources= takes a list of source paths, not one string")
        if sources is not None and not sources:
            return []
        where = _where(kinds, sources)
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

    def move_file(self, old: str, new: str, digest: str) -> int:
        """Re-point the items of a file that moved (same content, now at ``new``) and its ledger record; the
        vectors stay. Returns the number of items moved."""
        where = {"$and": [{"source": old}, {"content_sha256": digest}]}
        got = self.items.get(where=where, include=["metadatas", "embeddings"])
        ids, metadatas = got["ids"], [moved_metadata(m or {}, old, new) for m in got["metadatas"] or []]
        if ids:  # the same vectors (Chroma computes none: a document without its embedding is refused)
            self.upsert(ids, np.asarray(got["embeddings"], dtype=np.float32), metadatas)
        records = [r for r in self.files() if r.source == old and r.digest == digest]
        self.ledger.delete(ids=[_ledger_id(old, digest)])
        items = records[0].items if records else len(ids)
        self.mark_file(FileRecord(new, digest, items, records[0].indexed_at if records else time.time()))
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

    def metadatas(self, page_size: int = 5000) -> list[dict[str, Any]]:
        """Every stored item's metadata, with its ``id`` (paged, so a large index is not read in one call)."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            got = self.items.get(include=["metadatas"], limit=page_size, offset=offset)
            ids = got["ids"]
            out += [{**(m or {}), "id": i} for i, m in zip(ids, got["metadatas"] or [], strict=True)]
            if len(ids) < page_size:
                return out
            offset += page_size


def moved_metadata(metadata: Mapping[str, Any], old: str, new: str) -> dict[str, Any]:
    """An item's metadata once its file moved from ``old`` to ``new``: the source, its name, the reference
    (``new.pdf#page=3``) and, for an image, the image itself; cached thumbnails stay where they are."""
    out = dict(metadata)
    out["source"] = new
    out["file_name"] = Path(new).name
    reference = str(out.get("reference", ""))
    if reference == old or reference.startswith(old + "#"):
        out["reference"] = new + reference[len(old) :]
    if out.get("image_path") == old:
        out["image_path"] = new
    return out


def caption(metadata: Mapping[str, Any], *, default: str = "") -> str:
    """A stored item's short caption from its metadata: ``report.pdf p.3``, ``talk.mp4 0:10-0:20``,
    ``photo.png`` (the file name, else the source, else ``default``)."""
    name = metadata.get("file_name") or (Path(str(metadata["source"])).name if metadata.get("source") else default)
    kind = metadata.get("kind")
    if kind == "page" and metadata.get("page") is not None:
        return f"{name} p.{metadata['page']}"
    if kind == "clip" and metadata.get("start_seconds") is not None:
        start = float(metadata["start_seconds"])
        end = float(metadata.get("end_seconds", start))
        return f"{name} {clock(start)}-{clock(end)}"
    return str(name)


def _where(kinds: Iterable[str] | None, sources: Sequence[str] | None) -> dict[str, Any] | None:
    """Chroma's ``where`` for the kinds and sources wanted (``$in`` for several, ``$and`` for both)."""
    clauses = [
        {field: values[0]} if len(values) == 1 else {field: {"$in": values}}
        for field, values in (("kind", list(kinds or [])), ("source", [str(s) for s in sources or []]))
        if values
    ]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def read_signature(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The vector signature recorded in a collection's metadata, or None."""
    meta = metadata or {}
    if SIGNATURE_PREFIX + "family" not in meta:
        return None
    return {
        "family": str(meta[SIGNATURE_PREFIX + "family"]),
        "model": str(meta.get(SIGNATURE_PREFIX + "model") or ""),
        "dim": int(meta.get(SIGNATURE_PREFIX + "dim") or 0),
        "truncate_dim": int(meta.get(SIGNATURE_PREFIX + "truncate_dim") or 0),
    }


def is_chroma_collection(obj: Any) -> bool:
    """Whether ``obj`` is a chromadb collection (for the adapters, whose stores may hold one)."""
    return type(obj).__module__.startswith("chromadb.") and hasattr(obj, "modify")


def check_collection(collection: Any, signature: Mapping[str, Any] | Any, *, name: str | None = None) -> None:
    """Record or check the vector signature of a chromadb ``collection``.

    ``signature`` is a ``vector_signature`` dict, or an encoder to take it from. An empty collection takes it
    (recorded in its metadata, next to what is there); a collection recorded with the same family, dimension
    and truncation is fine (another checkpoint id of them only logs a warning: a local copy and the Hub id of
    one model are common); anything else raises ``IndexMismatch`` saying what the collection holds, what the
    encoder makes and what to do. A collection filled before signatures existed is checked on its vectors'
    dimension, then takes the signature.
    """
    made = _as_signature(signature)
    name = name or str(getattr(collection, "name", "?"))
    held = read_signature(collection.metadata)
    if collection.count() == 0:
        if held != made:
            _record(collection, made)
        return
    if held is None:
        stored = _stored_dim(collection)
        if stored is not None and stored != made["dim"]:
            raise IndexMismatch(_dim_message(name, stored, None, made), made=made)
        log.info("collection %r: recording what it holds (%s)", name, _describe(made))
        _record(collection, made)
        return
    compare_signatures(held, made, name=name)


def compare_signatures(held: Mapping[str, Any], made: Mapping[str, Any], *, name: str) -> None:
    """Raise ``IndexMismatch`` when vectors of ``made`` cannot join a collection of ``held``; warn when only
    the checkpoint ids differ."""
    if held["family"] != made["family"]:
        raise IndexMismatch(
            f"collection {name!r} holds {_describe(held)} but this model makes {_describe(made)}: vectors of two "
            f"model families do not mix; {_advice(held)}",
            held=held,
            made=made,
        )
    if held["truncate_dim"] != made["truncate_dim"]:
        raise IndexMismatch(
            f"collection {name!r} holds {_describe(held)} but this model makes {_describe(made)}: vectors "
            f"truncated to another size do not mix; {_advice(held)}",
            held=held,
            made=made,
        )
    if held["dim"] != made["dim"]:
        raise IndexMismatch(_dim_message(name, held["dim"], held, made), held=held, made=made)
    key = (name, str(held["model"]), str(made["model"]))
    if held["model"] and made["model"] and held["model"] != made["model"] and key not in _warned:
        _warned.add(key)
        log.warning(
            "collection %r was built with %s, this encoder is %s: same family, dimension and truncation, so the "
            "vectors are taken to be of the same model (a local copy of it and its Hub id, say); if they are "
            "not, use another collection",
            name,
            held["model"],
            made["model"],
        )


def _as_signature(signature: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(signature, Mapping):
        return {field: signature.get(field, 0 if field != "model" else "") for field in SIGNATURE_FIELDS}
    from ..families import vector_signature

    return vector_signature(signature)


def _record(collection: Any, signature: Mapping[str, Any]) -> None:
    # modify() replaces the whole metadata: keep what is there (but the hnsw: keys, which it refuses; the
    # distance lives in the collection's configuration anyway).
    kept = {k: v for k, v in (collection.metadata or {}).items() if not str(k).startswith("hnsw:")}
    collection.modify(metadata={**kept, **{SIGNATURE_PREFIX + k: signature[k] for k in SIGNATURE_FIELDS}})


def _stored_dim(collection: Any) -> int | None:
    sample = collection.get(limit=1, include=["embeddings"])["embeddings"]
    return len(sample[0]) if sample is not None and len(sample) else None


def _title(family: str) -> str:
    from ..families import FAMILIES

    profile = FAMILIES.get(family)
    return profile.title if profile is not None else family


def _describe(sig: Mapping[str, Any]) -> str:
    """``VLM2Vec-V2 vectors of VLM2Vec/VLM2Vec-V2.0 (1536-d)``, ``... (truncated to 1024-d)``."""
    model = f" of {sig['model']}" if sig.get("model") else ""
    size = f"truncated to {sig['dim']}-d" if sig.get("truncate_dim") else f"{sig['dim']}-d"
    return f"{_title(str(sig['family']))} vectors{model} ({size})"


def _advice(held: Mapping[str, Any]) -> str:
    flags = [f"--model {held['model']}"] if held.get("model") else []
    flags.append(f"--family {held['family']}")
    if held.get("truncate_dim"):
        flags.append(f"--truncate-dim {held['truncate_dim']}")
    return f"use that model ({' '.join(flags)}), or another --collection or --db"


def _dim_message(name: str, stored: int, held: Mapping[str, Any] | None, made: Mapping[str, Any]) -> str:
    which = f" ({_describe(held)}, not {_describe(made)})" if held is not None and "family" in made else ""
    advice = _advice(held) if held is not None else "use that model, or another --collection or --db"
    return (
        f"collection {name!r} holds {stored}-dimensional vectors but this model makes {made['dim']}: it was built "
        f"with another model{which}; {advice}"
    )


def _ledger_id(source: str, digest: str) -> str:
    import hashlib

    return hashlib.sha256(f"{source}\0{digest}".encode()).hexdigest()[:40]
