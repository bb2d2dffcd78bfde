"""RemoteReranker: the reranker API over HTTP (``POST /v1/rerank``), to a ``vlm2vec serve --reranker`` or vLLM.

No torch needed: media are decoded and fitted here by the family's rules, then sent losslessly (raw RGB to a
``vlm2vec serve``, PNG to others; see ``vlm2vec_core.encoders.remote``), so remote scores equal local ones, as
``{"content": [parts]}`` documents with data URLs. One URL or a list of servers serving the same reranker:
each scoring request goes to the least busy one that is up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..encoders.remote import HttpService, RemoteError
from ..encoders.wire import MEDIA_FORMATS, rerank_part
from ..errors import InputError
from ..families.rerankers import RERANKERS, RerankProfile, detect_reranker_family, get_reranker_family
from ..media.prepare import MediaLimits
from .base import RerankMixin, prepare_sides


class RemoteReranker(HttpService, RerankMixin):
    """Same API as ``Reranker``, computed by a server: ``RemoteReranker("http://gpu-box:8000")``.

    The family comes from the server's ``/v1/models`` (its rerank entry), else from the served hub id (vLLM),
    else ``family=``; ``family=`` is checked against what the server says.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        api_key: str | None = None,
        model: str | None = None,
        family: str | RerankProfile | None = None,
        timeout: float = 300.0,
        max_retries: int = 6,
        backoff: float = 0.5,
        max_pixels: int | None = None,
        media_format: str | None = None,
    ) -> None:
        if media_format is not None and media_format not in MEDIA_FORMATS:
            raise ValueError(f"media_format must be None, 'png', 'raw' or 'jpeg', not {media_format!r}")
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff)
        self.model = model
        self._family_arg = get_reranker_family(family) if family is not None else None
        self._family: RerankProfile | None = None
        self._max_pixels = max_pixels
        self.media_format = media_format

    def __repr__(self) -> str:
        return f"RemoteReranker({self.base_url if len(self.urls) == 1 else self.urls!r})"

    @property
    def model_name(self) -> str:
        return str(self.model or self.base_url)

    @property
    def family(self) -> RerankProfile:
        if self._family is None:
            with self._discovery:
                if self._family is None:
                    self._family = self._discover()
        return self._family

    def _discover(self) -> RerankProfile:
        entry = self._served("rerank")
        if self.model is None:
            self.model = entry.get("id")
        if entry.get("family") in RERANKERS:
            family = RERANKERS[entry["family"]]
        else:
            try:
                family = detect_reranker_family(None, str(self.model))
            except ValueError:
                family = self._family_arg or get_reranker_family(None)
        if self._family_arg is not None and self._family_arg.name != family.name:
            raise RemoteError(f"{self._where()} serves the {family.title} reranker, not {self._family_arg.title}")
        return family

    @property
    def limits(self) -> MediaLimits:
        return MediaLimits.for_family(self.family.media, max_pixels=self._max_pixels)

    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        family = self.family
        q, docs = prepare_sides(query, documents, self.limits, family.media, errors)
        good = [d.index for d in docs]
        fmt = self.wire_format()
        parts = [rerank_part(d, fmt) for d in docs]
        if not good:
            return np.zeros(0, dtype=np.float32)
        body = {
            "model": self.model or "vlm2vec-reranker",
            "query": rerank_part(q, fmt),
            "documents": parts,
            "instruction": family.instruction_for(task, instruction),
        }
        results = self._send("POST", "/v1/rerank", body).get("results")
        if not isinstance(results, list) or len(results) != len(good):
            raise RemoteError(f"{self._where()}: expected {len(good)} rerank results, got {results!r:.200}")
        by_position = {int(r["index"]): float(r["relevance_score"]) for r in results}
        return np.asarray([by_position[n] for n in range(len(good))], dtype=np.float32)


__all__ = ["RemoteReranker"]
