"""What every reranker offers (local, remote, fake), and how candidates become inputs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError
from ..types import Input, as_input


@runtime_checkable
class RerankerProtocol(Protocol):
    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray: ...

    def rerank(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> list[tuple[int, float]]: ...


class RerankMixin:
    """``rerank`` and the async twins in terms of ``score``."""

    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:  # pragma: no cover - every reranker overrides it
        raise NotImplementedError

    def rerank(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> list[tuple[int, float]]:
        """(index into ``documents``, score) pairs, best first; ``top_n`` keeps the best few. With ``errors``,
        bad documents are left out (and recorded there) and the indices still point into ``documents``."""
        if top_n is not None and top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {top_n}")
        found: list[InputError] = []
        scores = self.score(
            query, documents, instruction=instruction, task=task, errors=found if errors is not None else None
        )
        bad = {e.index for e in found}
        if errors is not None:
            errors.extend(found)
        kept = [i for i in range(len(documents)) if i not in bad]
        ranked = sorted(zip(kept, (float(s) for s in scores), strict=True), key=lambda pair: (-pair[1], pair[0]))
        return ranked[:top_n] if top_n is not None else ranked

    async def ascore(self, query: Any, documents: Sequence[Any], **kwargs: Any) -> np.ndarray:
        return await asyncio.to_thread(self.score, query, documents, **kwargs)

    async def arerank(self, query: Any, documents: Sequence[Any], **kwargs: Any) -> list[tuple[int, float]]:
        return await asyncio.to_thread(self.rerank, query, documents, **kwargs)


def resolve_reranker(value: Any) -> Any:
    """A model name or folder -> a local ``Reranker`` (loaded on first use); anything with ``rerank`` passes."""
    import os

    if isinstance(value, (str, os.PathLike)):
        from .local import Reranker

        return Reranker(os.fspath(value))
    if not callable(getattr(value, "rerank", None)):
        raise TypeError(f"reranker must be a model name or have a rerank method, not {type(value).__name__}")
    return value


def candidate_for(metadata: dict[str, Any], text: str) -> Input:
    """What a reranker judges for a stored item: a page's or image's picture, a clip's frames (from vlm2vec's
    metadata), else its text."""
    from ..media.documents import input_for_metadata

    if metadata.get("kind") in ("page", "clip", "image") and (metadata.get("reference") or metadata.get("image_path")):
        return input_for_metadata(metadata)
    return Input(text=text)


def prepare_sides(
    query: Any,
    documents: Sequence[Any],
    limits: Any,
    media: Any,
    errors: list[InputError] | None,
    map_fn: Any = map,
) -> tuple[Any, list[Any]]:
    """The query (once) and the good documents prepared by the family's media rules (bad documents recorded in
    ``errors``, or raised when it is None); a bad query always raises. ``map_fn``: e.g. a thread pool's map."""
    from ..errors import report
    from ..media.prepare import prepare_or_error
    from ..tasks import Instruction

    if isinstance(documents, (str, bytes)):
        raise TypeError("documents must be a list; wrap a single document in a list")
    q = prepare_or_error(as_candidate(query), 0, Instruction(), limits, media)
    if isinstance(q, InputError):
        raise InputError(q.reason, source=q.source, location="the query")

    def one(pair: tuple[int, Any]) -> Any:
        index, raw = pair
        try:
            return prepare_or_error(as_candidate(raw), index, Instruction(), limits, media)
        except TypeError as exc:
            return InputError(str(exc), location=f"input {index}", index=index)

    prepared = []
    for d in map_fn(one, list(enumerate(documents))):
        if isinstance(d, InputError):
            report(d, errors)
        else:
            prepared.append(d)
    return q, prepared


def as_candidate(item: Any) -> Input:
    """A query or a document as an Input: a str naming an existing file or a reference (``report.pdf#page=3``,
    ``talk.mp4#t=10,20``, ``photo.png``) is that file's content, any other str is text; Items, Pages, VideoClips,
    PIL images and Inputs as the encoder takes them."""
    from ..media.documents import Item, input_for_reference, kind_of, parse_reference

    if isinstance(item, Item):
        return item.to_input()
    if isinstance(item, str) and item and len(item) < 4096 and "\n" not in item:
        try:
            path, _start, _end, _page = parse_reference(item)
        except ValueError:
            return Input(text=item)
        if kind_of(path) is not None and path.is_file():
            return input_for_reference(item)
    return as_input(item)
