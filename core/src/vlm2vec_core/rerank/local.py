"""The local reranker: one engine for the logit-pair families (torch + transformers, GPU or CPU).

A pair -> the family's prompt (query media and text, document media and text) -> the backbone with its own
positions -> the final hidden state at the last prompt token -> ``sigmoid(h @ (W[positive] - W[negative]))``:
only those two rows of ``lm_head`` are used, which equals the softmax over the two answer tokens.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.loading import Checkpoint, resolve_checkpoint
from ..encoders.runner import Backbone, Media, torch_module
from ..errors import InputError, checked_device
from ..families.rerankers import (
    DEFAULT_RERANKER,
    RerankProfile,
    Side,
    detect_reranker_family,
    get_reranker_family,
)
from ..media.prepare import MediaLimits, Prepared
from .base import RerankMixin, prepare_sides

log = logging.getLogger(__name__)
KEEP_TAIL = 5  # Qwen3-VL-Reranker never cuts the last tokens (the end of the turn and the generation prompt)


@dataclass(frozen=True)
class _Pair:
    index: int  # position of the document
    prompt: str
    media: list[Media]
    length: int  # estimate for sorting: visual tokens + characters


class Reranker(RerankMixin):
    """``Reranker("Qwen/Qwen3-VL-Reranker-2B")``: scores (query, document) pairs in (0, 1).

    Loads on first use (CUDA bf16 or CPU fp32, like the encoder); the family is detected from the checkpoint
    (``family=`` overrides). Queries and documents: str, PIL images, ``Input``, ``Page``, ``VideoClip``, ``Item`` or
    a reference (``report.pdf#page=3``, ``talk.mp4#t=10,20``). Scores do not depend on batch size or order.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_RERANKER,
        *,
        family: str | RerankProfile | None = None,
        device: str | None = None,
        dtype: Any = None,
        max_pixels: int | None = None,
        batch_size: int = 4,
        attn_implementation: str | None = None,
        workers: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model_name = str(model)
        self._family_arg = get_reranker_family(family) if family is not None else None
        self._family: RerankProfile | None = None
        self._device, self._dtype, self._attn = device, dtype, attn_implementation
        self._resolved_device: str | None = None
        self._max_pixels = max_pixels
        self.batch_size = batch_size
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._checkpoint: Checkpoint | None = None
        self._backbone: Backbone | None = None
        self._direction: Any = None  # W[positive] - W[negative], float32 on the device
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Reranker({self.model_name!r}, {'loaded' if self._backbone is not None else 'not loaded'})"

    @property
    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            self._checkpoint = resolve_checkpoint(self.model_name, hint="pass --rerank DIR (Reranker(DIR))")
        return self._checkpoint

    @property
    def family(self) -> RerankProfile:
        if self._family is None:
            if self._family_arg is not None:
                self._family = self._family_arg
            else:
                try:
                    self._family = detect_reranker_family(None, self.model_name)
                except ValueError:
                    self._family = detect_reranker_family(self.checkpoint.weights, self.model_name)
        return self._family

    @property
    def limits(self) -> MediaLimits:
        return MediaLimits.for_family(self.family.media, max_pixels=self._max_pixels)

    @property
    def device(self) -> str:
        if self._resolved_device is None:
            self._resolved_device = checked_device(self._device, torch_module().cuda.is_available())
        return self._resolved_device

    def load(self) -> Reranker:
        with self._lock:
            if self._backbone is None:
                torch_module()
                family = self.family
                backbone = Backbone.load(
                    self.checkpoint,
                    family.backbone,
                    device=self.device,
                    dtype=self._dtype,
                    attn=self._attn,
                    positions="mrope",  # rerankers see the vision markers and were trained with native positions
                    padding_side="left",
                    factor=family.media.factor,
                    label=f"{self.model_name} ({family.title})",
                )
                positive, negative = self._token_ids(backbone.processor.tokenizer)
                weight = backbone.model.lm_head.weight
                self._direction = (weight[positive].float() - weight[negative].float()).detach()
                self._backbone = backbone
        return self

    def _token_ids(self, tokenizer: Any) -> tuple[int, int]:
        family = self.family
        if family.token_rule == "vocab":
            vocab = tokenizer.get_vocab()
            missing = [t for t in (family.positive, family.negative) if t not in vocab]
            if missing:
                raise ValueError(f"{self.model_name}: the vocabulary has no token {missing[0]!r} ({family.title})")
            return vocab[family.positive], vocab[family.negative]
        return (
            tokenizer(family.positive, add_special_tokens=False)["input_ids"][0],
            tokenizer(family.negative, add_special_tokens=False)["input_ids"][0],
        )

    # -- scoring -------------------------------------------------------------------------------------------

    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        *,
        instruction: str | None = None,
        task: str | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        """One score in (0, 1) per document, in input order (bad documents left out when ``errors`` is a list)."""
        self.load()
        family, limits = self.family, self.limits
        text = family.instruction_for(task, instruction)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="vlm2vec-rerank") as pool:
            q, docs = prepare_sides(query, documents, limits, family.media, errors, pool.map)
        pairs = [
            _Pair(
                d.index,
                family.render(text, _side(q), _side(d)),
                [*_media(q), *_media(d)],
                q.visual_tokens + d.visual_tokens + len(d.text or ""),
            )
            for d in docs
        ]
        scores: dict[int, float] = {}
        with self._lock:
            ordered = sorted(pairs, key=lambda p: p.length, reverse=True)
            for start in range(0, len(ordered), self.batch_size):
                batch = ordered[start : start + self.batch_size]
                scores.update(zip((p.index for p in batch), self._scores(batch), strict=True))
        return np.asarray([scores[p.index] for p in pairs], dtype=np.float32)

    def _scores(self, batch: list[_Pair]) -> list[float]:
        torch = torch_module()
        backbone = self._backbone
        assert backbone is not None
        features = backbone.features([(p.prompt, p.media) for p in batch], self._truncate())
        hidden = backbone.last_hidden(features)
        return torch.sigmoid(hidden @ self._direction).cpu().tolist()

    def _truncate(self) -> Any:
        family, backbone = self.family, self._backbone
        assert backbone is not None
        limit = family.max_length
        special = set(backbone.processor.tokenizer.all_special_ids) | {backbone.image_id, backbone.video_id}

        def cut(ids: list[int], _n: int) -> list[int]:
            if family.truncation == "tail":
                return ids[:limit]
            head, tail = ids[:-KEEP_TAIL], ids[-KEEP_TAIL:]
            if len(head) <= limit:
                return ids
            budget = limit - sum(1 for t in head if t in special)  # text goes, special tokens never
            kept: list[int] = []
            for token in head:
                if token in special:
                    kept.append(token)
                elif budget > 0:
                    kept.append(token)
                    budget -= 1
            return kept + tail

        return cut


def _side(prepared: Prepared) -> Side:
    return Side(prepared.text, int(prepared.image is not None), int(prepared.frames is not None))


def _media(prepared: Prepared) -> list[Media]:
    """Videos before images, as the families' prompts place them."""
    media = []
    if prepared.frames is not None:
        media.append(Media("video", prepared.frames, prepared.frame_size, prepared.timestamps))
    if prepared.image is not None:
        media.append(Media("image", [prepared.image]))
    return media
