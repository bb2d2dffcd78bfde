"""Indexing on a GPU, end to end, beside the model's forward pass alone on the same prepared pages.

One call, for a session that is lent a GPU (about 5 minutes on an H100-class card, most of it building the
random checkpoint):

    .venv/bin/python bench/gpu_index.py                  # Qwen2-VL-2B's full architecture, random weights, bf16
    .venv/bin/python bench/gpu_index.py --cpu-tiny       # the tiny test checkpoint on the CPU: checks it runs

It prints, for a generated PDF at full resolution (letter pages at 144 dpi, fitted to VLM2Vec-V2's 1,280 visual
tokens): the forward-only pages/s (features built beforehand, only the model timed), the end-to-end pages/s of
``index_paths`` (worker processes render and fit, the encoder runs, an embedded Chroma store is written), and
their ratio. Goal (issue 12): end to end at least 80% of forward-only, and at least 40 pages/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples"), str(ROOT / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def forward_only(encoder: Any, pdf: Path, dpi: float, batch_size: int, repeats: int) -> dict[str, Any]:
    """Pages/s of the model's forward pass alone: pages rendered, fitted, prompted and turned into features
    first (untimed), then only the forward passes timed (the device synchronised at the end)."""
    from vlm2vec_core.encoders.local import _length_sorted_batches
    from vlm2vec_core.encoders.runner import torch_module
    from vlm2vec_core.media.pdf import pdf_pages
    from vlm2vec_core.media.prepare import prepare
    from vlm2vec_core.tasks import resolve_instruction
    from vlm2vec_core.types import Input

    torch = torch_module()
    instruction = resolve_instruction("visdoc", "document", None, encoder.family)
    prepared = [
        prepare(Input(image=page.image), n, instruction, encoder.limits, encoder.family)
        for n, page in enumerate(pdf_pages(pdf, dpi=dpi))
    ]
    features = [encoder._features(batch) for batch in _length_sorted_batches(prepared, batch_size)]
    encoder._forward(features[0])  # warm up the kernels
    sync = torch.cuda.synchronize if str(encoder.device).startswith("cuda") else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        for batch in features:
            encoder._forward(batch)
    sync()
    seconds = time.perf_counter() - started
    pages = len(prepared) * repeats
    size = prepared[0].image.size if prepared[0].image is not None else None
    return {"pages": pages, "seconds": round(seconds, 3), "pages_per_s": pages / seconds, "fitted_size": size}


def end_to_end(encoder: Any, pdf: Path, work: Path, dpi: float, batch_size: int, chunk_size: int) -> dict[str, Any]:
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.pipeline import auto_workers
    from vlm2vec_core.index.store import ChromaStore

    store = ChromaStore.open(db=work / "db")
    encoder.timings.clear()
    started = time.perf_counter()
    report = index_paths(
        [pdf], encoder, store, cache_dir=work / "cache", dpi=dpi, batch_size=batch_size, chunk_size=chunk_size
    )
    seconds = time.perf_counter() - started
    pages = report.items["page"]
    assert pages == store.count() and not report.errors, report.errors
    return {
        "pages": pages,
        "seconds": round(seconds, 3),
        "pages_per_s": pages / seconds,
        "workers": auto_workers(),
        "stages_s": {k: round(v, 2) for k, v in encoder.timings.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cpu-tiny", action="store_true", help="the tiny checkpoint on the CPU (a check, not a number)"
    )
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint directory (default: build one)")
    parser.add_argument("--pages", type=int, default=None, help="pages of the PDF (default 256; 24 with --cpu-tiny)")
    parser.add_argument("--dpi", type=float, default=144)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=64, help="items index_paths embeds per encode call")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the prepared pages, forward only")
    args = parser.parse_args()
    pages = args.pages or (24 if args.cpu_tiny else 256)

    from index import make_pdf  # bench/index.py: drawn letter pages (chart, diagram, table, photo)
    from vlm2vec_core import VLM2VecEncoder
    from vlm2vec_core.encoders.runner import torch_module

    torch = torch_module()
    if not args.cpu_tiny and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --cpu-tiny to check the script on the CPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-gpu-index-") as tmp:
        work = Path(tmp)
        model = args.model
        started = time.perf_counter()
        if model is None:
            from tinymodel import build_full_size_checkpoint, build_tiny_checkpoint

            build = build_tiny_checkpoint if args.cpu_tiny else build_full_size_checkpoint
            model = build(work / "model")
        built_s = time.perf_counter() - started
        device = "cpu" if args.cpu_tiny else "cuda"
        encoder = VLM2VecEncoder(model, device=device).load()
        name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
        print(f"# {name}, {os.cpu_count()} CPUs, torch {torch.__version__}, model built in {built_s:.0f} s")
        pdf = make_pdf(work / f"pages-{pages}.pdf", pages)
        warm = make_pdf(work / "warm-8.pdf", 8)
        end_to_end(encoder, warm, work / "warm", args.dpi, args.batch_size, args.chunk_size)  # kernels, workers
        forward = forward_only(encoder, pdf, args.dpi, args.batch_size, args.repeats)
        e2e = end_to_end(encoder, pdf, work / "run", args.dpi, args.batch_size, args.chunk_size)
        ratio = e2e["pages_per_s"] / forward["pages_per_s"]
        print(f"forward only: {json.dumps(forward)}")
        print(f"end to end:   {json.dumps(e2e)}")
        print(
            f"{pages} pages at {args.dpi:g} dpi (fitted to {forward['fitted_size']}), batch {args.batch_size}: "
            f"forward only {forward['pages_per_s']:.1f} pages/s, end to end {e2e['pages_per_s']:.1f} pages/s = "
            f"{ratio:.0%} of forward only (goal >= 80%, >= 40 pages/s"
            f"{'' if args.cpu_tiny else ': ' + ('met' if ratio >= 0.8 and e2e['pages_per_s'] >= 40 else 'MISSED')})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
