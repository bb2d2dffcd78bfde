"""The local VLM2Vec-V2 encoder (torch + transformers, on a GPU or the CPU).

The encode path, top to bottom: prompt -> processor (pixels already fitted to the limits) -> 1-D position ids
-> forward -> last-token pooling -> L2 normalise -> restore input order.
"""

from __future__ import annotations

import importlib.util
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

from .errors import InputError, require_extra
from .loading import DEFAULT_MODEL, Checkpoint, merge_adapter, resolve_checkpoint
from .media import MAX_DECODE_PIXELS, MAX_PIXELS, MIN_PIXELS, PATCH_FACTOR
from .prepare import MediaLimits, Prepared, keep_good, prepare_or_error
from .progress import Progress
from .protocol import PresetMixin
from .tasks import IMAGE_PAD, VIDEO_PAD, Instruction, as_instruction

log = logging.getLogger(__name__)

WINDOW_BATCHES = 8  # inputs are prepared and length-sorted a window of batch_size * this at a time


class VLM2VecEncoder(PresetMixin):
    """VLM2Vec-V2 (or any VLM2Vec Qwen2-VL checkpoint) as a text / image / video encoder.

    The model loads on first use, once. ``model`` is a Hub id or a local directory holding full weights or a
    PEFT adapter (LoRA or DoRA) whose base model its ``adapter_config.json`` names (``base_model`` overrides
    that, e.g. to point at a local copy of the base). On CUDA: bf16 and flash attention 2 when installed
    (else SDPA); on the CPU: fp32. ``workers`` threads decode and resize media while the model runs.
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
        workers: int | None = None,
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
        self.workers = workers or min(4, os.cpu_count() or 1)
        # Seconds per stage summed over encode calls (stages overlap, so they can add up to more than "wall").
        self.timings: dict[str, float] = defaultdict(float)
        self._timings_lock = threading.Lock()

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
        image_config = self._processor.image_processor
        self._patch = int(image_config.patch_size)
        self._merge = int(image_config.merge_size)
        self._temporal = int(image_config.temporal_patch_size)
        # Normalisation as one multiply-add per patch value; channel is the slowest axis inside a patch.
        per_channel = self._temporal * self._patch * self._patch
        mean = torch.tensor(image_config.image_mean, dtype=torch.float64).repeat_interleave(per_channel)
        std = torch.tensor(image_config.image_std, dtype=torch.float64).repeat_interleave(per_channel)
        self._scale = (float(image_config.rescale_factor) / std).float().to(device)
        self._shift = (mean / std).float().to(device)
        if self._patch * self._merge != PATCH_FACTOR:
            raise ValueError(f"{ckpt.processor}: patch {self._patch} x merge {self._merge} is not {PATCH_FACTOR}")
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
                pool.submit(self._timed, "prepare", prepare_or_error, items[i], i, instruction, self.limits)
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
        """Model inputs on the device: token ids with each pad token expanded, and the media as patches.

        Does what Qwen2-VL's processor does once media are fitted (temporal padding, 14 px patches in 2x2
        merge order, rescale, CLIP normalisation), but cuts patches from uint8 pixels and ships those to the
        device, where the float work happens: a quarter of the bytes to copy and move. A test checks it against
        transformers' processor.
        """
        torch = _torch()
        features: dict[str, Any] = {}
        prompts = [p.prompt for p in batch]
        for kind, pad, media in (
            ("image", IMAGE_PAD, [[p.image] if p.image is not None else None for p in batch]),
            ("video", VIDEO_PAD, [p.frames for p in batch]),
        ):
            if all(m is None for m in media):
                continue
            pixels, grids = [], []
            for i, frames in enumerate(media):
                if frames is not None:
                    patches, grid = self._patches(frames)
                    pixels.append(patches)
                    grids.append(grid)
                    prompts[i] = prompts[i].replace(pad, pad * (grid[0] * grid[1] * grid[2] // self._merge**2), 1)
            x = torch.cat(pixels).to(self.device, non_blocking=True).float()
            x = x.mul_(self._scale).sub_(self._shift)  # (x / 255 - mean) / std, per channel
            features["pixel_values" if kind == "image" else "pixel_values_videos"] = x.to(self._model.dtype)
            features[f"{kind}_grid_thw"] = torch.tensor(grids, device=self.device)
        tokens = self._processor.tokenizer(prompts, padding=True, return_tensors="pt")
        features["input_ids"] = tokens["input_ids"].to(self.device)
        features["attention_mask"] = tokens["attention_mask"].to(self.device)
        return features

    def _patches(self, frames: list[Any]) -> tuple[Any, tuple[int, int, int]]:
        """One image ([image]) or video (frames of one size) as uint8 patches and their (t, h, w) grid."""
        torch = _torch()
        patch, merge, temporal = self._patch, self._merge, self._temporal
        pixels = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])  # (T, H, W, C)
        if pad := -len(pixels) % temporal:  # an image, or an odd frame count: repeat the last frame
            pixels = np.concatenate([pixels, np.repeat(pixels[-1:], pad, axis=0)])
        frames_n, height, width, channels = pixels.shape
        grid = (frames_n // temporal, height // patch, width // patch)
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # (T, C, H, W), a view
        x = x.reshape(grid[0], temporal, channels, grid[1] // merge, merge, patch, grid[2] // merge, merge, patch)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, h-block, w-block, h-in, w-in, C, temporal, ph, pw)
        return x.reshape(grid[0] * grid[1] * grid[2], channels * temporal * patch * patch), grid

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            mask = features["attention_mask"]
            # The trained model saw plain 1-D positions for every token, visual ones included.
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            model_inputs = {k: v for k, v in features.items() if k != "attention_mask"}
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
