"""The local encoder (torch + transformers, on a GPU or the CPU) for every model family.

The encode path, top to bottom: prompt -> processor (pixels already fitted to the family's limits) -> position
ids (forced 1-D, or the backbone's own M-RoPE, as the family's profile says) -> forward -> last-token pooling ->
optional Matryoshka truncation -> L2 normalise -> restore input order. What differs between families is data in
their profile (``vlm2vec_core.families``); this engine never branches on a family's name.
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
from .families import Profile, check_backbone, detect_family, family_for_hub_id, get_family
from .loading import DEFAULT_MODEL, Checkpoint, merge_adapter, resolve_checkpoint
from .media import MAX_DECODE_PIXELS
from .prepare import MediaLimits, Prepared, keep_good, prepare_or_error
from .progress import Progress
from .protocol import PresetMixin
from .tasks import IMAGE_PAD, VIDEO_PAD, Instruction, as_instruction

log = logging.getLogger(__name__)

WINDOW_BATCHES = 8  # inputs are prepared and length-sorted a window of batch_size * this at a time
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
# transformers' class per backbone (weights load through the same from_pretrained as the published checkpoints)
MODEL_CLASSES = {"qwen2-vl": "Qwen2VLForConditionalGeneration", "qwen3-vl": "Qwen3VLForConditionalGeneration"}


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
        import transformers

        started = time.perf_counter()
        ckpt = self.checkpoint
        family = self.family
        check_backbone(family, ckpt.weights, self.model_name)
        if self.truncate_dim is not None:
            self.family.check_truncate_dim(self.truncate_dim, self.full_dim)
        device = self.device
        dtype = _torch_dtype(torch, self._dtype) or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        attn = self._attn or (
            "flash_attention_2"
            if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None
            else "sdpa"
        )
        model_class = getattr(transformers, MODEL_CLASSES[family.backbone])
        model: Any = model_class.from_pretrained(str(ckpt.weights), dtype=dtype, attn_implementation=attn)
        if ckpt.adapter is not None:
            model = merge_adapter(model, ckpt.adapter)
        model.config.use_cache = False
        self._model = model.to(device).eval()
        self._processor = transformers.AutoProcessor.from_pretrained(str(ckpt.processor))
        tokenizer = self._processor.tokenizer
        tokenizer.padding_side = family.padding_side
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD)}
        self._image_id, self._video_id = ids[IMAGE_PAD], ids[VIDEO_PAD]
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
        if self._patch * self._merge != family.factor:
            raise ValueError(
                f"{ckpt.processor}: patch {self._patch} x merge {self._merge} is not {family.factor}, the "
                f"{family.title} family's pixels per visual token: is family={family.name!r} right?"
            )
        log.info(
            "loaded %s (%s) on %s (%s, %s) in %.1f s",
            self.model_name,
            family.title,
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
        """Model inputs on the device: token ids with each vision marker expanded, and the media as patches.

        Does what the backbone's processor does once media are fitted (temporal padding, patches in merge order,
        rescale, normalisation; for Qwen3-VL video the per-frame ``<t seconds>`` blocks of transformers 4.57,
        which its embedding model was run with), but cuts patches from uint8 pixels and ships those to the
        device, where the float work happens: a quarter of the bytes to copy and move. Tests check it against
        transformers' processors.
        """
        torch = _torch()
        features: dict[str, Any] = {}
        prompts = [p.prompt for p in batch]
        for kind, media in (
            ("image", [[p.image] if p.image is not None else None for p in batch]),
            ("video", [p.frames for p in batch]),
        ):
            if all(m is None for m in media):
                continue
            pixels, grids = [], []
            for i, frames in enumerate(media):
                if frames is None:
                    continue
                size = batch[i].frame_size if kind == "video" else None
                patches, grid = self._patches(frames, size)
                pixels.append(patches)
                grids.append(grid)
                prompts[i] = self._expand(prompts[i], kind, grid, batch[i].timestamps)
            x = torch.cat(pixels).to(self.device, non_blocking=True).float()
            x = x.mul_(self._scale).sub_(self._shift)  # (x / 255 - mean) / std, per channel
            features["pixel_values" if kind == "image" else "pixel_values_videos"] = x.to(self._model.dtype)
            features[f"{kind}_grid_thw"] = torch.tensor(grids, device=self.device)
        rows = [
            self._truncated(ids, p)
            for ids, p in zip(self._processor.tokenizer(prompts)["input_ids"], batch, strict=True)
        ]
        width = max(len(r) for r in rows)
        left = self.family.padding_side == "left"
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for n, row in enumerate(rows):
            span = slice(width - len(row), width) if left else slice(0, len(row))
            input_ids[n, span] = torch.tensor(row, dtype=torch.long)
            mask[n, span] = 1
        features["input_ids"] = input_ids.to(self.device)
        features["attention_mask"] = mask.to(self.device)
        if self.family.positions == "mrope":  # the backbone builds its 3-D positions from the token types
            types = (input_ids == self._image_id).long() + 2 * (input_ids == self._video_id).long()
            features["mm_token_type_ids"] = types.to(self.device)
        return features

    def _expand(self, prompt: str, kind: str, grid: tuple[int, int, int], timestamps: tuple[float, ...] | None) -> str:
        """One marker of ``kind`` in the prompt -> one pad token per merged patch (per frame, with its time, for
        the families that write timestamps: ``<0.2 seconds><|vision_start|>pads<|vision_end|>...``)."""
        pad = IMAGE_PAD if kind == "image" else VIDEO_PAD
        per_frame = grid[1] * grid[2] // self._merge**2
        if timestamps is None:
            return prompt.replace(pad, pad * (grid[0] * per_frame), 1)
        blocks = "".join(f"<{t:.1f} seconds>{VISION_START}{pad * per_frame}{VISION_END}" for t in timestamps[: grid[0]])
        wrapped = f"{VISION_START}{pad}{VISION_END}"
        return prompt.replace(wrapped, blocks, 1) if wrapped in prompt else prompt.replace(pad, blocks, 1)

    def _truncated(self, ids: list[int], item: Prepared) -> list[int]:
        """Cut to the family's max length (the tail goes, as its reference's processor cuts it)."""
        limit = self.family.max_length
        if limit is None or len(ids) <= limit:
            return list(ids)
        if any(t in (self._image_id, self._video_id) for t in ids[limit:]):
            raise InputError(
                f"{len(ids)} tokens with its image or video, over {self.family.title}'s limit of {limit}: "
                "lower max_pixels or num_frames",
                location=f"input {item.index}",
                index=item.index,
            )
        return list(ids[:limit])

    def _patches(self, frames: list[Any], size: tuple[int, int] | None = None) -> tuple[Any, tuple[int, int, int]]:
        """One image ([image]) or video (frames of one size) as uint8 patches and their (t, h, w) grid; frames
        are brought to ``size`` (height, width) first when they do not have it (torchvision bicubic, antialias)."""
        torch = _torch()
        patch, merge, temporal = self._patch, self._merge, self._temporal
        pixels = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])  # (T, H, W, C)
        if pad := -len(pixels) % temporal:  # an image, or an odd frame count: repeat the last frame
            pixels = np.concatenate([pixels, np.repeat(pixels[-1:], pad, axis=0)])
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # (T, C, H, W), a view
        if size is not None and tuple(x.shape[2:]) != tuple(size):
            from torchvision.transforms import InterpolationMode
            from torchvision.transforms.functional import resize

            x = resize(x.contiguous(), list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
        frames_n, channels, height, width = x.shape
        grid = (frames_n // temporal, height // patch, width // patch)
        x = x.reshape(grid[0], temporal, channels, grid[1] // merge, merge, patch, grid[2] // merge, merge, patch)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, h-block, w-block, h-in, w-in, C, temporal, ph, pw)
        return x.reshape(grid[0] * grid[1] * grid[2], channels * temporal * patch * patch), grid

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            mask = features["attention_mask"]
            model_inputs = {k: v for k, v in features.items() if k != "attention_mask"}
            if self.family.positions == "1d":
                # These models saw plain 1-D positions for every token, visual ones included.
                model_inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
            hidden = self._model.model(**model_inputs, attention_mask=mask, use_cache=False).last_hidden_state
            last = mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)  # last attended token, either padding side
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
            if self.truncate_dim is not None:
                pooled = pooled[:, : self.truncate_dim]
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
