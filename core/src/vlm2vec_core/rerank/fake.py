"""A deterministic reranker without a model, for users' own tests."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..families.rerankers import RerankProfile, Side, get_reranker_family
from ..media.prepare import MediaLimits
from .base import RerankMixin, prepare_sides

_WORD = re.compile(r"\w+")


class FakeReranker(RerankMixin):
    """Same API and validation as ``Reranker``: a score in (0, 1) from the words query and document share (plus a
    small hash of the rendered prompt and pixels, so ties break the same way every run). Bad documents are
    reported exactly as the real reranker reports them."""

    def __init__(self, *, family: str | RerankProfile | None = None) -> None:
        self.family = get_reranker_family(family)
        self.limits = MediaLimits.for_family(self.family.media)
        self.prompts: list[str] = []

    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        q, docs = prepare_sides(query, documents, self.limits, self.family.media, errors)
        words = set(_WORD.findall((q.text or "").lower()))
        text = self.family.instruction_for(task, instruction)
        out = []
        for doc in docs:
            prompt = self.family.render(text, _side(q), _side(doc))
            self.prompts.append(prompt)
            digest = hashlib.blake2b(prompt.encode(), digest_size=8)
            for image in [x for x in (q.image, doc.image) if x is not None]:
                digest.update(image.tobytes())
            jitter = int.from_bytes(digest.digest(), "little") / 2**64
            shared = len(words & set(_WORD.findall((doc.text or "").lower()))) / max(1, len(words))
            out.append(1 / (1 + math.exp(-(4 * shared - 2 + 0.2 * (jitter - 0.5)))))
        return np.asarray(out, dtype=np.float32)


def _side(prepared: Any) -> Side:
    return Side(prepared.text, int(prepared.image is not None), int(prepared.frames is not None))
