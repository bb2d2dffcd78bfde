"""The local encoder (torch + transformers, on a GPU or the CPU) for every model family.

The encode path, top to bottom: prompt -> processor (pixels already fitted to the family's limits) -> position
ids (forced 1-D, or the backbone's own M-RoPE, as the family's profile says) -> forward -> last-token pooling ->
optional Matryoshka truncation -> L2 normalise -> restore input order. What differs between families is data in
their profile (``vlm2vec_core.families``); this engine never branches on a family's name.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, checked_device
from ..families import Profile, check_backbone, detect_family, family_for_hub_id, get_family
from ..media.images import MAX_DECODE_PIXELS
from ..media.prepare import MediaLimits, Prepared, keep_good, prepare_or_error
from ..tasks import Instruction, as_instruction
from .loading import DEFAULT_MODEL, Checkpoint, resolve_checkpoint
from .progress import Progress
from .protocol import PresetMixin
from .runner import Backbone, Media, torch_module

log = logging.getLogger(__name__)

WINDOW_BATCHES = 8  # inputs are prepared and length-sorted a window of batch_size * this at a time


class VLM2VecEncoder(PresetMixin):
    """A multimodal embedding model (VLM2Vec-V2 by default, or any family in ``vlm2vec_core.families``) as a
    text / image / video encoder.

    The model loads on first use, once. ``model`` is a Hub id or a local directory holding full weights or a
    PEFT adapter (LoRA or DoRA) whose base model its ``adapter_config.json`` names (``base_model`` overrides
    that, e.g. to point at a local copy of the base). ``family`` is detected from the checkpoint (known hub ids,
    its config, an adapter's kind); pass it when the files cannot tell (full Qwen2-VL weights are taken for
    VLM2Vec-V2, with a warning). ``truncate_dim`` keeps the first dimensions of a Matryoshka family's vectors
    (re-normalised). Pixel caps and frame count default to the family's. On CUDA: bf16 and flash attention 2
    when installed (else SDPA); on the CPU: fp32. ``workers`` threads decode and resize media while the model runs.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        family: str | Profile | None = None,
        truncate_dim: int | None = None,
        device: str | None = None,
        dtype: Any = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        num_frames: int | None = None,
        attn_implementation: str | None = None,
        base_model: str | Path | None = None,
        max_decode_pixels: int = MAX_DECODE_PIXELS,
        workers: int | None = None,
    ) -> None:
        self.model_name = str(model)
        self.base_model = base_model
        self._family_arg = get_family(family) if family is not None else None
        self._family: Profile | None = None
        self.truncate_dim = truncate_dim
        self._pixel_args = (min_pixels, max_pixels, num_frames, max_decode_pixels)
        self._limits: MediaLimits | None = None
        if truncate_dim is not None and truncate_dim < 1:
            raise ValueError(f"truncate_dim must be positive, got {truncate_dim}")
        self._device = device
        self._resolved_device: str | None = None
        self._dtype = dtype
        self._attn = attn_implementation
        self._lock = threading.RLock()
        self._checkpoint: Checkpoint | None = None
        self._backbone: Backbone | None = None
        self.workers = workers or min(4, os.cpu_count() or 1)
        # Seconds per stage summed over encode calls (stages overlap, so they can add up to more than "wall").
        self.timings: dict[str, float] = defaultdict(float)
        self._timings_lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"loaded on {self.device}" if self._backbone is not None else "not loaded"
        family = f", family={self._family.name!r}" if self._family is not None else ""
        return f"VLM2VecEncoder({self.model_name!r}{family}, {state})"

    # -- loading -------------------------------------------------------------------------------------------

    @property
    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            self._checkpoint = resolve_checkpoint(self.model_name, self.base_model)
        return self._checkpoint

    @property
    def family(self) -> Profile:
        """The model family's profile: ``family=`` when given, else detected from the checkpoint."""
        if self._family is None:
            if self._family_arg is not None:
                self._family = self._family_arg
            else:
                known = family_for_hub_id(self.model_name)
                ckpt = self.checkpoint if known is None else None
                self._family = known or detect_family(ckpt.weights, self.model_name, adapter=ckpt.adapter)  # type: ignore[union-attr]
        return self._family

    @property
    def limits(self) -> MediaLimits:
        """Pixel caps and frames: the family's, the checkpoint's processor limits where the family uses those,
        and what was passed to the constructor on top."""
        if self._limits is None:
            min_pixels, max_pixels, num_frames, max_decode = self._pixel_args
            family = self.family
            if family.caps_from_checkpoint and (min_pixels is None or max_pixels is None):
                own_min, own_max = _processor_caps(self.checkpoint.processor)
                min_pixels = min_pixels if min_pixels is not None else own_min
                max_pixels = max_pixels if max_pixels is not None else own_max
            self._limits = MediaLimits.for_family(
                family,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
                num_frames=num_frames,
                max_decode_pixels=max_decode,
            )
        return self._limits

    @property
    def full_dim(self) -> int:
        """The language model's hidden size, read from the config without loading weights."""
        if self._model is not None:
            return int(self._model.config.text_config.hidden_size)
        config = json.loads((self.checkpoint.weights / "config.json").read_text())
        return int(config.get("text_config", config).get("hidden_size", config.get("hidden_size")))

    @property
    def dim(self) -> int:
        """Embedding size: ``truncate_dim`` when set, else the language model's hidden size."""
        full = self.full_dim
        if self.truncate_dim is not None:
            self.family.check_truncate_dim(self.truncate_dim, full)
            return self.truncate_dim
        return full

    @property
    def device(self) -> str:
        if self._resolved_device is None:
            self._resolved_device = checked_device(self._device, torch_module().cuda.is_available())
        return self._resolved_device

    def load(self) -> VLM2VecEncoder:
        """Load weights and processor now (otherwise the first encode does)."""
        with self._lock:
            if self._backbone is None:
                self._load()
        return self

    def _load(self) -> None:
        torch_module()  # the missing extra first: it is what a user without torch must hear about
        ckpt = self.checkpoint
        family = self.family
        check_backbone(family, ckpt.weights, self.model_name)
        if self.truncate_dim is not None:
            family.check_truncate_dim(self.truncate_dim, self.full_dim)
        self._backbone = Backbone.load(
            ckpt,
            family.backbone,
            device=self.device,
            dtype=self._dtype,
            attn=self._attn,
            positions=family.positions,
            padding_side=family.padding_side,
            factor=family.factor,
            label=f"{self.model_name} ({family.title})",
        )

    @property
    def _model(self) -> Any:
        return None if self._backbone is None else self._backbone.model

    @_model.setter
    def _model(self, model: Any) -> None:  # tests swap in a reference model
        assert self._backbone is not None
        self._backbone.model = model

    @property
    def max_tokens(self) -> int:
        """The longest input this model takes: its family's max length (longer text is cut), else its positions."""
        self.load()
        assert self._backbone is not None
        if self.family.max_length is not None:
            return int(self.family.max_length)
        config = self._backbone.model.config
        return int(getattr(config.get_text_config(), "max_position_embeddings", 32768))

    def token_count(self, item: Prepared) -> int:
        """Tokens the model will see for a prepared input (its text and markers, plus its visual tokens)."""
        self.load()
        assert self._backbone is not None
        return len(self._backbone.processor.tokenizer(item.prompt)["input_ids"]) + item.visual_tokens

    @property
    def _processor(self) -> Any:
        return None if self._backbone is None else self._backbone.processor

    # -- encoding ------------------------------------------------------------------------------------------

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        """Embed inputs (strings, PIL images, Pages, VideoClips or Inputs) with one instruction for all.

        Returns float32 of shape (n, dim), L2-normalised, rows in input order. With an ``errors`` list, bad
        inputs are skipped (each one's InputError, carrying ``.index``, is appended) and the result has one row
        per good input; without it, the first bad input raises.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if isinstance(inputs, (str, bytes)):
            raise TypeError("encode takes a list of inputs; wrap a single string in a list")
        items = list(inputs)
        self.load()
        dim = self.dim
        self.limits  # noqa: B018 - resolve the family's limits before the worker threads need them
        if not items:
            return np.zeros((0, dim), dtype=np.float32)
        vectors: dict[int, np.ndarray] = {}
        started = time.perf_counter()
        with (
            self._lock,
            Progress(len(items), show_progress) as bar,
            ThreadPoolExecutor(self.workers, thread_name_prefix="vlm2vec-prepare") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="vlm2vec-features") as featurizer,
        ):
            # Three stages overlap: media decoding/resizing (a pool), the processor (one thread) for the next
            # batch, and the model on the current one (torch releases the GIL), so a GPU is kept fed.
            pending: tuple[list[Prepared], Future[Any]] | None = None
            try:
                for batch in self._batches(items, as_instruction(instruction), batch_size, errors, pool, bar):
                    features = featurizer.submit(self._timed, "features", self._features, batch)
                    if pending is not None:
                        self._collect(pending, vectors, bar)
                    pending = (batch, features)
                if pending is not None:
                    self._collect(pending, vectors, bar)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # a bad input raised: drop the prepared-ahead work
                raise
        self._add_time("wall", time.perf_counter() - started)
        order = sorted(vectors)
        return np.stack([vectors[i] for i in order]).astype(np.float32) if order else np.zeros((0, dim), np.float32)

    def _batches(
        self,
        items: list[Any],
        instruction: Instruction,
        batch_size: int,
        errors: list[InputError] | None,
        pool: ThreadPoolExecutor,
        bar: Progress,
    ) -> Iterator[list[Prepared]]:
        """Length-sorted batches, one window of inputs at a time; the next window is prepared meanwhile."""
        window = batch_size * WINDOW_BATCHES

        def submit(start: int) -> list[Future[Prepared | InputError]]:
            return [
                pool.submit(
                    self._timed, "prepare", prepare_or_error, items[i], i, instruction, self.limits, self.family
                )
                for i in range(start, min(start + window, len(items)))
            ]

        upcoming = submit(0)
        for start in range(0, len(items), window):
            current, upcoming = upcoming, submit(start + window)
            prepared = list(keep_good((f.result() for f in current), errors))
            bar.update(len(current) - len(prepared))  # skipped inputs count as done
            yield from _length_sorted_batches(prepared, batch_size)

    def encode_prepared(self, prepared: Sequence[Prepared], *, batch_size: int = 8) -> tuple[np.ndarray, list[int]]:
        """Embed inputs already prepared (prompt built, media fitted), e.g. by a server that batches requests.

        Returns the vectors in the given order and each input's token count (visual tokens included).
        """
        self.load()
        rows: dict[int, np.ndarray] = {}
        tokens: dict[int, int] = {}
        items = [replace(p, index=position) for position, p in enumerate(prepared)]
        with self._lock:
            for batch in _length_sorted_batches(items, batch_size):
                features = self._timed("features", self._features, batch)
                vectors = self._timed("forward", self._forward, features)
                lengths = features["attention_mask"].sum(-1).tolist()
                for p, row, length in zip(batch, vectors, lengths, strict=True):
                    rows[p.index], tokens[p.index] = row, int(length)
        order = range(len(prepared))
        out = np.stack([rows[i] for i in order]) if prepared else np.zeros((0, self.dim), np.float32)
        return out.astype(np.float32), [tokens[i] for i in order]

    def _collect(
        self, pending: tuple[list[Prepared], Future[Any]], vectors: dict[int, np.ndarray], bar: Progress
    ) -> None:
        batch, features = pending
        rows = self._timed("forward", self._forward, features.result())
        vectors.update(zip((p.index for p in batch), rows, strict=True))
        bar.update(len(batch))

    def _timed(self, stage: str, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._add_time(stage, time.perf_counter() - started)

    def _add_time(self, stage: str, seconds: float) -> None:
        with self._timings_lock:
            self.timings[stage] += seconds

    def _features(self, batch: list[Prepared]) -> dict[str, Any]:
        """Model inputs on the device (see ``Backbone.features``), cut to the family's max length."""
        assert self._backbone is not None
        return self._backbone.features([(p.prompt, media_of(p)) for p in batch], self._truncate(batch))

    def _truncate(self, batch: list[Prepared]) -> Any:
        """Cut to the family's max length (the tail goes, as its reference's processor cuts it)."""
        limit = self.family.max_length
        backbone = self._backbone
        assert backbone is not None
        visual = (backbone.image_id, backbone.video_id)

        def cut(ids: list[int], n: int) -> list[int]:
            if limit is None or len(ids) <= limit:
                return ids
            if any(t in visual for t in ids[limit:]):
                item = batch[n]
                raise InputError(
                    f"{len(ids)} tokens with its image or video, over {self.family.title}'s limit of {limit}: "
                    "lower max_pixels or num_frames",
                    location=f"input {item.index}",
                    index=item.index,
                )
            return ids[:limit]

        return cut

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        torch = torch_module()
        assert self._backbone is not None
        pooled = self._backbone.last_hidden(features)
        if self.truncate_dim is not None:
            pooled = pooled[:, : self.truncate_dim]
        return torch.nn.functional.normalize(pooled, p=2, dim=-1).cpu().numpy()


def media_of(item: Prepared) -> list[Media]:
    """A prepared input's media, as the backbone takes them."""
    media = [Media("image", [item.image])] if item.image is not None else []
    if item.frames is not None:
        media.append(Media("video", item.frames, item.frame_size, item.timestamps))
    return media


def _length_sorted_batches(prepared: list[Prepared], batch_size: int) -> Iterator[list[Prepared]]:
    """Group by modality, sort by (estimated) sequence length, cut into batches: little padding, no mixing."""
    groups: dict[str, list[Prepared]] = defaultdict(list)
    for item in prepared:
        groups[item.modality].append(item)
    for group in groups.values():
        group.sort(key=lambda p: (p.visual_tokens, len(p.prompt)), reverse=True)
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


def _processor_caps(processor_dir: Path) -> tuple[int | None, int | None]:
    """min/max pixels from a checkpoint's preprocessor config (None where it says nothing)."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = processor_dir / name
        if path.is_file():
            config = json.loads(path.read_text())
            config = config.get("image_processor", config)
            size = config.get("size") or {}
            low = config.get("min_pixels", size.get("shortest_edge"))
            high = config.get("max_pixels", size.get("longest_edge"))
            return (int(low) if low else None), (int(high) if high else None)
    return None, None
