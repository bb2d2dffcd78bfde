"""The second stage: multimodal rerankers (Qwen3-VL-Reranker, UniME-V2-Reranker, LamRA-Rank), local or remote.

``Reranker(model)`` and ``RemoteReranker(url)`` load torch only when used; ``FakeReranker`` has no model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..families.rerankers import DEFAULT_RERANKER, RERANKERS, RerankProfile, get_reranker_family
from .base import RerankerProtocol, RerankMixin, as_candidate, candidate_for, prepare_sides, resolve_reranker
from .fake import FakeReranker

if TYPE_CHECKING:
    from .local import Reranker
    from .remote import RemoteReranker

_LAZY = {"Reranker": "local", "RemoteReranker": "remote"}

__all__ = [
    "DEFAULT_RERANKER",
    "RERANKERS",
    "FakeReranker",
    "RemoteReranker",
    "RerankMixin",
    "RerankProfile",
    "Reranker",
    "RerankerProtocol",
    "as_candidate",
    "candidate_for",
    "get_reranker_family",
    "prepare_sides",
    "resolve_reranker",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vlm2vec_core.rerank' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
