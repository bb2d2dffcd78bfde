"""One loaded vision-language model, as the embedding encoder and the reranker both run it.

Prompts with their media in marker order -> token ids (each vision marker expanded), uint8 patches moved to the
device and normalised there -> forward (forced 1-D positions, or the backbone's own M-RoPE) -> the final hidden
state at each sequence's last attended token. Needs the ``local`` extra (torch, transformers).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import require_extra
from ..tasks import IMAGE_PAD, VIDEO_PAD
from .loading import Checkpoint, merge_adapter

log = logging.getLogger(__name__)

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
_HOLD = "<|vlm2vec_hold|>"  # stands for an expanded pad token until every marker of the prompt is expanded
# transformers' class per backbone (weights load through the same from_pretrained as the published checkpoints)
MODEL_CLASSES = {
    "qwen2-vl": "Qwen2VLForConditionalGeneration",
    "qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3-vl": "Qwen3VLForConditionalGeneration",
}


@dataclass(frozen=True)
class Media:
    """One image ([image]) or video of a prompt, in the order its marker stands there."""

    kind: Literal["image", "video"]
    frames: list[Any]  # PIL images
    size: tuple[int, int] | None = None  # (height, width) the frames must have at the model
    timestamps: tuple[float, ...] | None = None  # seconds per temporal patch, for the timestamped layouts


# (token ids, position in the batch) -> token ids cut to a family's maximum
Truncate = Callable[[list[int], int], list[int]]


class Backbone:
    """A loaded model, its tokenizer and its patching constants."""

    def __init__(
        self, model: Any, processor: Any, *, device: str, positions: str, padding_side: str, factor: int, label: str
    ) -> None:
        torch = torch_module()
        self.model = model
        self.processor = processor
        self.device = device
        self.positions = positions
        self.padding_side = padding_side
        tokenizer = processor.tokenizer
        tokenizer.padding_side = padding_side
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.video_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
        config = processor.image_processor
        self.patch = int(config.patch_size)
        self.merge = int(config.merge_size)
        self.temporal = int(config.temporal_patch_size)
        if self.patch * self.merge != factor:
            raise ValueError(
                f"{label}: patch {self.patch} x merge {self.merge} is not {factor} pixels per visual token: "
                "is the model family right?"
            )
        # Normalisation as one multiply-add per patch value; channel is the slowest axis inside a patch.
        per_channel = self.temporal * self.patch * self.patch
        mean = torch.tensor(config.image_mean, dtype=torch.float64).repeat_interleave(per_channel)
        std = torch.tensor(config.image_std, dtype=torch.float64).repeat_interleave(per_channel)
        self.scale = (float(config.rescale_factor) / std).float().to(device)
        self.shift = (mean / std).float().to(device)

    @classmethod
    def load(
        cls,
        checkpoint: Checkpoint,
        backbone: str,
        *,
        device: str,
        dtype: Any,
        attn: str | None,
        positions: str,
        padding_side: str,
        factor: int,
        label: str,
    ) -> Backbone:
        torch = torch_module()
        import transformers

        started = time.perf_counter()
        dtype = torch_dtype(torch, dtype) or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        attn = attn or (
            "flash_attention_2"
            if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None
            else "sdpa"
        )
        model_class = getattr(transformers, MODEL_CLASSES[backbone])
        model: Any = model_class.from_pretrained(str(checkpoint.weights), dtype=dtype, attn_implementation=attn)
        if checkpoint.adapter is not None:
            model = merge_adapter(model, checkpoint.adapter)
        model.config.use_cache = False
        processor = transformers.AutoProcessor.from_pretrained(str(checkpoint.processor))
        loaded = cls(
            model.to(device).eval(),
            processor,
            device=device,
            positions=positions,
            padding_side=padding_side,
            factor=factor,
            label=label,
        )
        log.info("loaded %s on %s (%s, %s) in %.1f s", label, device, dtype, attn, time.perf_counter() - started)
        return loaded

    # -- model inputs --------------------------------------------------------------------------------------

    def features(
        self, items: Sequence[tuple[str, Sequence[Media]]], truncate: Truncate | None = None
    ) -> dict[str, Any]:
        """Model inputs on the device for prompts and their media (in each prompt's marker order).

        Does what the backbone's processor does once media are fitted (temporal padding, patches in merge order,
        rescale, normalisation; for timestamped video the per-frame ``<t seconds>`` blocks of transformers 4.57,
        which Qwen3-VL's retrieval models were run with), but cuts patches from uint8 pixels and ships those to
        the device, where the float work happens: a quarter of the bytes to copy and move. Tests check it
        against transformers' processors and the families' reference code.
        """
        torch = torch_module()
        features: dict[str, Any] = {}
        prompts = [prompt for prompt, _ in items]
        for kind in ("image", "video"):
            pixels, grids = [], []
            for n, (_, media) in enumerate(items):
                for m in media:
                    if m.kind != kind:
                        continue
                    patches, grid = self.patches(m.frames, m.size if kind == "video" else None)
                    pixels.append(patches)
                    grids.append(grid)
                    prompts[n] = self._expand(prompts[n], m, grid)
            if not pixels:
                continue
            x = torch.cat(pixels).to(self.device, non_blocking=True).float()
            x = x.mul_(self.scale).sub_(self.shift)  # (x / 255 - mean) / std, per channel
            features["pixel_values" if kind == "image" else "pixel_values_videos"] = x.to(self.model.dtype)
            features[f"{kind}_grid_thw"] = torch.tensor(grids, device=self.device)
        prompts = [p.replace(_HOLD + "i", IMAGE_PAD).replace(_HOLD + "v", VIDEO_PAD) for p in prompts]
        rows = self.processor.tokenizer(prompts)["input_ids"]
        if truncate is not None:
            rows = [truncate(list(row), n) for n, row in enumerate(rows)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for n, row in enumerate(rows):
            span = slice(width - len(row), width) if self.padding_side == "left" else slice(0, len(row))
            input_ids[n, span] = torch.tensor(row, dtype=torch.long)
            mask[n, span] = 1
        features["input_ids"] = input_ids.to(self.device)
        features["attention_mask"] = mask.to(self.device)
        if self.positions == "mrope":  # the backbone builds its 3-D positions from the token types
            types = (input_ids == self.image_id).long() + 2 * (input_ids == self.video_id).long()
            features["mm_token_type_ids"] = types.to(self.device)
        return features

    def _expand(self, prompt: str, media: Media, grid: tuple[int, int, int]) -> str:
        """The first unexpanded marker of the media's kind -> one held pad per merged patch (per frame, with its
        time, for the timestamped layout: ``<0.2 seconds><|vision_start|>pads<|vision_end|>...``)."""
        pad, hold = (IMAGE_PAD, _HOLD + "i") if media.kind == "image" else (VIDEO_PAD, _HOLD + "v")
        per_frame = grid[1] * grid[2] // self.merge**2
        if media.timestamps is None:
            return prompt.replace(pad, hold * (grid[0] * per_frame), 1)
        blocks = "".join(
            f"<{t:.1f} seconds>{VISION_START}{hold * per_frame}{VISION_END}" for t in media.timestamps[: grid[0]]
        )
        wrapped = f"{VISION_START}{pad}{VISION_END}"
        return prompt.replace(wrapped, blocks, 1) if wrapped in prompt else prompt.replace(pad, blocks, 1)

    def patches(self, frames: list[Any], size: tuple[int, int] | None = None) -> tuple[Any, tuple[int, int, int]]:
        """One image ([image]) or video (frames of one size) as uint8 patches and their (t, h, w) grid; frames
        are brought to ``size`` (height, width) first when they do not have it (torchvision bicubic, antialias)."""
        torch = torch_module()
        patch, merge, temporal = self.patch, self.merge, self.temporal
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

    # -- forward -------------------------------------------------------------------------------------------

    def last_hidden(self, features: dict[str, Any]) -> Any:
        """The final hidden state (after the last norm) at each sequence's last attended token, float32."""
        torch = torch_module()
        with torch.inference_mode():
            mask = features["attention_mask"]
            inputs = {k: v for k, v in features.items() if k != "attention_mask"}
            if self.positions == "1d":
                # These models saw plain 1-D positions for every token, visual ones included.
                inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
            hidden = self.model.model(**inputs, attention_mask=mask, use_cache=False).last_hidden_state
            last = mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)  # last attended token, either padding side
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


def torch_dtype(torch: Any, dtype: Any) -> Any:
    """Accept torch dtypes and their names ("bfloat16", "float32", "fp16", ...)."""
    if dtype is None or not isinstance(dtype, str):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(dtype.lower(), dtype.lower())
    if name not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"unsupported dtype {dtype!r}: use bfloat16, float16 or float32")
    return getattr(torch, name)


def torch_module() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise require_extra("local", "torch") from exc
    return torch
