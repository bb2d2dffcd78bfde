"""Search as the apps use it: the CLI's ``search`` and ``ask``, the local page (``vlm2vec ui``) and the MCP server.

One object holds what a search needs (an encoder, a store, optionally a reranker) and answers a text query, an
image query or both, for ``k`` hits, some kinds only, within some files or folders, with or without the rerank
stage. Every app goes through it, so they agree on presets, filters and the rerank step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..index.store import FileRecord, Hit, VectorStore
from ..types import Input

ImageQuery = Any  # a PIL image, a path, or the bytes of an image file


@dataclass
class SearchService:
    """``encoder`` and ``store`` as the CLI opens them (the store checked against the encoder's signature);
    ``reranker``: a second stage (``Reranker`` or ``RemoteReranker``), used when a search asks for it;
    ``candidates``: how many first-stage hits it reranks."""

    encoder: Any
    store: VectorStore
    reranker: Any = None
    candidates: int = 50

    @property
    def can_rerank(self) -> bool:
        return self.reranker is not None

    def search(
        self,
        text: str | None = None,
        image: ImageQuery | None = None,
        *,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        within: Sequence[str | os.PathLike[str]] | None = None,
        rerank: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> list[Hit]:
        """The best ``k`` hits for a text query, an image query, or an image with text.

        ``kinds``: some of page, clip, image (default all the family takes). ``within``: files or folders; only
        their items are searched (an empty result when nothing indexed lies there). ``rerank``: None reranks
        when a reranker is configured; True without one is an error. Hits the reranker cannot read (a file gone)
        are dropped and recorded in ``errors`` (logged without it).
        """
        from ..index.indexer import rerank_hits, search, wanted_kinds

        query = _query(text, image)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        wanted = wanted_kinds(kinds)
        if rerank and self.reranker is None:
            raise ValueError("no reranker is configured (start with --rerank MODEL or --rerank URL)")
        reranking = self.reranker is not None if rerank is None else rerank
        sources = self.sources_under(within) if within else None
        if sources is not None and not sources:
            return []
        depth = max(k, self.candidates) if reranking else k
        hits = search(query, self.encoder, self.store, k=depth, kinds=wanted, sources=sources)
        if not reranking:
            return hits[:k]
        return rerank_hits(query, hits, self.reranker, top_n=k, encoder=self.encoder, errors=errors)

    def files(self) -> list[FileRecord]:
        """The files the index holds, by path."""
        return sorted(self.store.files(), key=lambda r: r.source)

    def sources_under(self, within: Sequence[str | os.PathLike[str]]) -> list[str]:
        """The indexed files that are, or lie under, the given files or folders (present on disk or not)."""
        wanted = [Path(p).expanduser().resolve() for p in within]
        return sorted(
            {
                r.source
                for r in self.store.files()
                if any(Path(r.source) == w or w in Path(r.source).parents for w in wanted)
            }
        )

    def info(self) -> dict[str, Any]:
        """What the index holds: its vectors' signature (model, family, dimension), items and files."""
        records = self.store.files()
        return {
            "signature": self.store.signature() or {},
            "items": self.store.count(),
            "files": len(records),
            "rerank": self.reranker is not None,
        }


def file_row(record: FileRecord) -> dict[str, Any]:
    """An indexed file as the apps list it (``vlm2vec list --json``, the MCP ``list_files`` tool): its path,
    kind, items, when it was indexed (ISO 8601, UTC, seconds), content hash, and whether it is still there."""
    import datetime

    from ..media.documents import kind_of

    when = datetime.datetime.fromtimestamp(record.indexed_at, datetime.timezone.utc)
    return {
        "source": record.source,
        "kind": kind_of(record.source) or "?",
        "items": record.items,
        "indexed_at": when.isoformat(timespec="seconds"),
        "sha256": record.digest,
        "present": Path(record.source).is_file(),
    }


def _query(text: str | None, image: ImageQuery | None) -> Input | str:
    """A text query stays a string (as the encoders' text path takes it); an image becomes an Input."""
    if image is None:
        if text is None or not text.strip():
            raise ValueError("give a text query, an image query, or both")
        return text
    from ..media.images import load_image

    picture = load_image(image, name="the query image")
    return Input(image=picture, text=text.strip() if text and text.strip() else None)
