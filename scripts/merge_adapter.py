"""Merge a VLM2Vec PEFT adapter (LoRA/DoRA) into its base Qwen2-VL and save full weights for vLLM.

    python scripts/merge_adapter.py VLM2Vec/VLM2Vec-V2.0 --out /models/vlm2vec-v2-merged
    python scripts/merge_adapter.py /models/VLM2Vec-V2.0 --base-model /models/Qwen2-VL-2B-Instruct \\
        --out /models/vlm2vec-v2-merged --plain-rope

vLLM cannot apply an adapter to this model, so it serves the merged copy. The merge is the one the local
encoder does at load time (``vlm2vec_core.encoders.loading``: the adapter's 4.x keys re-keyed, every weight must land),
computed in float32 and then cast to ``--dtype``. The saved directory holds the weights, the tokenizer, the
processor with the pixel limits VLM2Vec was trained with (3,136 to 1,003,520 pixels, images and video frames)
and the chat template that emits the raw prompt (``vlm2vec_core/templates/vlm2vec_v2.jinja``).

``--plain-rope`` drops ``mrope_section`` from the saved text config so that vLLM runs plain 1-D RoPE over all
tokens, which is what the model was trained with (see docs/remote.md, "Positions"). transformers then falls
back to its default section [16, 24, 24], Qwen2-VL-2B's own, so the directory still loads there unchanged; the
script refuses the option for a checkpoint whose section differs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vlm2vec_core.encoders.loading import merge_adapter, resolve_checkpoint
from vlm2vec_core.media.images import MAX_PIXELS, MIN_PIXELS

TEMPLATE = Path(__file__).resolve().parents[1] / "core/src/vlm2vec_core/templates/vlm2vec_v2.jinja"
TRANSFORMERS_DEFAULT_MROPE = [16, 24, 24]  # what transformers uses when the config names no section
DTYPES = ("bfloat16", "float16", "float32")

log = logging.getLogger("merge_adapter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", help="adapter directory or Hub id (e.g. VLM2Vec/VLM2Vec-V2.0)")
    parser.add_argument("--base-model", default=None, help="base model directory or id (default: the adapter's)")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the merged model to")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="dtype of the saved weights")
    parser.add_argument("--min-pixels", type=int, default=MIN_PIXELS)
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS)
    parser.add_argument(
        "--plain-rope", action="store_true", help="drop mrope_section so that vLLM uses 1-D positions (the spec's)"
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"error: {out} is not empty (pass --force to write into it)", file=sys.stderr)  # noqa: T201
        return 2
    try:
        merge(
            args.adapter,
            out,
            base_model=args.base_model,
            dtype=args.dtype,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            plain_rope=args.plain_rope,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(out)  # noqa: T201
    return 0


def merge(
    adapter: str | Path,
    out: Path,
    *,
    base_model: str | Path | None = None,
    dtype: str = "bfloat16",
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
    plain_rope: bool = False,
) -> Path:
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    ckpt = resolve_checkpoint(adapter, base_model)
    if ckpt.adapter is None:
        raise ValueError(f"{adapter} holds full weights, not an adapter: there is nothing to merge")
    section = _mrope_section(ckpt.weights / "config.json")
    if plain_rope and section != TRANSFORMERS_DEFAULT_MROPE:
        raise ValueError(
            f"--plain-rope needs mrope_section {TRANSFORMERS_DEFAULT_MROPE} (Qwen2-VL-2B/7B's): this checkpoint has "
            f"{section}, which transformers would not restore once it is dropped"
        )
    log.info("base %s, adapter %s", ckpt.weights, ckpt.adapter)
    model: Any = Qwen2VLForConditionalGeneration.from_pretrained(str(ckpt.weights), dtype=torch.float32)
    model = merge_adapter(model, ckpt.adapter)  # in float32: DoRA's magnitude rescaling loses bits in bf16
    model = model.to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))

    processor = AutoProcessor.from_pretrained(str(ckpt.processor))
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    for sub in (processor.image_processor, getattr(processor, "video_processor", None)):
        if sub is not None:
            sub.size = dict(size)
            sub.min_pixels, sub.max_pixels = min_pixels, max_pixels
    processor.chat_template = TEMPLATE.read_text()
    processor.save_pretrained(str(out))

    if plain_rope:
        _drop_mrope(out / "config.json")
    leftover = out / "adapter_config.json"
    if leftover.exists():  # never expected; vLLM would take the directory for an adapter
        leftover.unlink()
    return out


def _mrope_section(config_path: Path) -> list[int] | None:
    config = json.loads(config_path.read_text())
    text = config.get("text_config", config)
    for key in ("rope_parameters", "rope_scaling"):
        params = text.get(key) or config.get(key) or {}
        if "mrope_section" in params:
            return list(params["mrope_section"])
    return None


def _drop_mrope(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    for holder in (config, config.get("text_config", {})):
        for key in ("rope_parameters", "rope_scaling"):
            params = holder.get(key)
            if isinstance(params, dict):
                params.pop("mrope_section", None)
                if params.get("type") == "mrope":
                    params["type"] = "default"
    config_path.write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
