"""The local VLM2Vec-V2 encoder (torch + transformers, on a GPU or the CPU).

The encode path, top to bottom: prompt -> processor (pixels already fitted to the limits) -> 1-D position ids
-> forward -> last-token pooling -> L2 normalise -> restore input order.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, require_extra
from .loading import DEFAULT_MODEL, Checkpoint, merge_adapter, resolve_checkpoint
from .media import MAX_DECODE_PIXELS, MAX_PIXELS, MIN_PIXELS
from .prepare import MediaLimits, Prepared, prepare_all
from .protocol import PresetMixin
from .tasks import Instruction

log = logging.getLogger(__name__)

WINDOW_BATCHES = 8  # inputs are prepared and length-sorted a window of batch_size * this at a time


class VLM2VecEncoder(PresetMixin):
    """VLM2Vec-V2 (or any VLM2Vec Qwen2-VL checkpoint) as a text / image / video encoder.

    The model loads on first use, once. ``model`` is a Hub id or a local directory holding full weights or a
    PEFT adapter (LoRA or DoRA) whose base model its ``adapter_config.json`` names (``base_model`` overrides
    that, e.g. to point at a local copy of the base). On CUDA: bf16 and flash attention 2 when installed
    (else SDPA); on the CPU: fp32.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: Any = None,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        num_frames: int = 8,
        attn_implementation: str | None = None,
        base_model: str | Path | None = None,
        max_decode_pixels: int = MAX_DECODE_PIXELS,
    ) -> None:
        self.model_name = str(model)
        self.base_model = base_model
        self.limits = MediaLimits(min_pixels, max_pixels, num_frames, max_decode_pixels)
        self._device = device
        self._dtype = dtype
        self._attn = attn_implementation
        self._lock = threading.RLock()
        self._checkpoint: Checkpoint | None = None
        self._model: Any = None
        self._processor: Any = None
        self.timings: dict[str, float] = defaultdict(float)  # seconds per stage, summed over encode calls

    def __repr__(self) -> str:
        state = f"loaded on {self.device}" if self._model is not None else "not loaded"
        return f"VLM2VecEncoder({self.model_name!r}, {state})"

    # -- loading -------------------------------------------------------------------------------------------

    @property
    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            self._checkpoint = resolve_checkpoint(self.model_name, self.base_model)
        return self._checkpoint

    @property
    def dim(self) -> int:
        """Embedding size (the language model's hidden size), read from the config without loading weights."""
        if self._model is not None:
            return int(self._model.config.text_config.hidden_size)
        config = json.loads((self.checkpoint.weights / "config.json").read_text())
        return int(config.get("text_config", config).get("hidden_size", config.get("hidden_size")))

    @property
    def device(self) -> str:
        if self._device is None:
            torch = _torch()
            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def load(self) -> VLM2VecEncoder:
        """Load weights and processor now (otherwise the first encode does)."""
        with self._lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        torch = _torch()
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        started = time.perf_counter()
        ckpt = self.checkpoint
        device = self.device
        dtype = _torch_dtype(torch, self._dtype) or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        attn = self._attn or (
            "flash_attention_2"
            if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None
            else "sdpa"
        )
        model: Any = Qwen2VLForConditionalGeneration.from_pretrained(
            str(ckpt.weights), dtype=dtype, attn_implementation=attn
        )
        if ckpt.adapter is not None:
            model = merge_adapter(model, ckpt.adapter)
        model.config.use_cache = False
        self._model = model.to(device).eval()
        self._processor = AutoProcessor.from_pretrained(str(ckpt.processor))
        self._processor.tokenizer.padding_side = "left"
        log.info(
            "loaded %s on %s (%s, %s) in %.1f s",
            self.model_name,
            device,
            dtype,
            attn,
            time.perf_counter() - started,
        )

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
        if not items:
            return np.zeros((0, dim), dtype=np.float32)
        vectors: dict[int, np.ndarray] = {}
        window = batch_size * WINDOW_BATCHES
        with self._lock, _progress(len(items), show_progress) as bar:
            source = iter(items)
            start = 0
            while chunk := list(islice(source, window)):
                prepared = self._timed(
                    "prepare",
                    lambda c=chunk, s=start: list(prepare_all(c, instruction, self.limits, start=s, errors=errors)),
                )
                for batch in _length_sorted_batches(prepared, batch_size):
                    rows = self._encode_batch(batch)
                    vectors.update(zip((p.index for p in batch), rows, strict=True))
                bar.update(len(chunk))
                start += len(chunk)
        order = sorted(vectors)
        return np.stack([vectors[i] for i in order]).astype(np.float32) if order else np.zeros((0, dim), np.float32)

    def _timed(self, stage: str, fn: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[stage] += time.perf_counter() - started

    def _encode_batch(self, batch: list[Prepared]) -> np.ndarray:
        started = time.perf_counter()
        features = self._features(batch)
        self.timings["processor"] += time.perf_counter() - started
        started = time.perf_counter()
        rows = self._forward(features)
        self.timings["forward"] += time.perf_counter() - started
        return rows

    def _features(self, batch: list[Prepared]) -> Any:
        """Tokenise the prompts (expanding each pad token) and turn fitted media into patches."""
        images = [p.image for p in batch if p.image is not None]
        videos = [p.frames for p in batch if p.frames is not None]
        return self._processor(
            text=[p.prompt for p in batch],
            images=images or None,
            videos=videos or None,
            padding=True,
            return_tensors="pt",
            images_kwargs={"do_resize": False},  # fitted already, exactly as upstream (PIL bicubic)
            videos_kwargs={"do_resize": False, "do_sample_frames": False, "cap_pixels_per_frame": False},
        )

    def _forward(self, features: Any) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            features = features.to(self.device)
            mask = features["attention_mask"]
            # The trained model saw plain 1-D positions for every token, visual ones included.
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            model_inputs = {k: v for k, v in features.items() if k not in ("attention_mask", "mm_token_type_ids")}
            for key in ("pixel_values", "pixel_values_videos"):
                if key in model_inputs:
                    model_inputs[key] = model_inputs[key].to(self._model.dtype)
            hidden = self._model.model(
                **model_inputs, attention_mask=mask, position_ids=positions, use_cache=False
            ).last_hidden_state
            last = mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)  # last non-pad token, either padding side
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
            return torch.nn.functional.normalize(pooled, p=2, dim=-1).cpu().numpy()


def _length_sorted_batches(prepared: list[Prepared], batch_size: int) -> Iterator[list[Prepared]]:
    """Group by modality, sort by (estimated) sequence length, cut into batches: little padding, no mixing."""
    groups: dict[str, list[Prepared]] = defaultdict(list)
    for item in prepared:
        groups[item.modality].append(item)
    for group in groups.values():
        group.sort(key=lambda p: (p.visual_tokens, len(p.prompt)), reverse=True)
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


class _progress:
    def __init__(self, total: int, show: bool | None) -> None:
        if show is None:
            show = total > 64 and sys.stderr.isatty()
        self._bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="item", desc="encoding")

    def __enter__(self) -> _progress:
        return self

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _torch_dtype(torch: Any, dtype: Any) -> Any:
    """Accept torch dtypes and their names ("bfloat16", "float32", "fp16", ...)."""
    if dtype is None or not isinstance(dtype, str):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(dtype.lower(), dtype.lower())
    if name not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"unsupported dtype {dtype!r}: use bfloat16, float16 or float32")
    return getattr(torch, name)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise require_extra("local", "torch") from exc
    return torch
