"""Rerank throughput and latency, measured side by side in one run.

    python bench/rerank.py                 # tiny Qwen3-VL reranker checkpoint on the CPU
    python bench/rerank.py --full-size     # Qwen3-VL-Reranker-2B's architecture, random bf16 weights (for a GPU)

Prints pairs/s for text and page-image documents at several batch sizes, and the latency of the stage a search
adds: reranking the top 50 pages for one query at the default batch size. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--pages", type=int, default=None, help="pages reranked for one query (default 50)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    import tinymodel
    from encode import make_pdf
    from vlm2vec_core import pdf_pages
    from vlm2vec_core.rerank import Reranker

    work = Path(tempfile.mkdtemp(prefix="vlm2vec-bench-rerank-"))
    if args.full_size:
        build = lambda: tinymodel.build_full_size_qwen3vl_checkpoint(  # noqa: E731
            work / "model", extra_sentences=tinymodel.RERANK_SENTENCES
        )
    else:
        build = lambda: tinymodel.build_tiny_qwen3vl_reranker_checkpoint(work / "model")  # noqa: E731
    model_dir, build_s = timed(build)
    n_pages = args.pages or 50
    pages, render_s = timed(lambda: [p.image for p in pdf_pages(make_pdf(work / "bench.pdf", n_pages), dpi=144)])
    texts = [f"passage {i}: the quarterly revenue of region {i % 7} grew by {i} percent" for i in range(64)]
    query = "which page shows the revenue chart for the third quarter?"
    rows = []
    default_batch = Reranker("x").batch_size
    for batch_size in (1, default_batch, 8):
        reranker = Reranker(model_dir, device=args.device, batch_size=batch_size)
        _, load_s = timed(reranker.load)
        reranker.score(query, texts[:4] + pages[:2])  # warm-up
        _, text_s = timed(lambda r=reranker: r.score(query, texts))
        _, page_s = timed(lambda r=reranker: r.score(query, pages))
        rows.append(
            {
                "batch_size": batch_size,
                "text_pairs_per_s": round(len(texts) / text_s, 2),
                "page_pairs_per_s": round(len(pages) / page_s, 2),
                f"top{len(pages)}_pages_latency_s": round(page_s, 3),
                "load_s": round(load_s, 1),
            }
        )
        del reranker
    report = {
        "model": "Qwen3-VL-Reranker-2B architecture, random bf16" if args.full_size else "tiny Qwen3-VL reranker",
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "default_batch_size": default_batch,
        "checkpoint_build_s": round(build_s, 1),
        "pages": len(pages),
        "page_render_s": round(render_s, 2),
        "runs": rows,
    }
    print(
        f"{report['model']} on {report['device']} ({report['gpu'] or report['cpu']}, {report['torch_threads']} threads)"
    )
    print(f"{'batch':>5}  {'text pairs/s':>12}  {'page pairs/s':>12}  {'top-' + str(len(pages)) + ' pages (s)':>16}")
    for row in rows:
        latency = row[f"top{len(pages)}_pages_latency_s"]
        print(f"{row['batch_size']:>5}  {row['text_pairs_per_s']:>12}  {row['page_pairs_per_s']:>12}  {latency:>16}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
