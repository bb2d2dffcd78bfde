"""The LangChain adapter's overhead over a direct vlm2vec-core call, measured side by side in one run.

    python bench/langchain_overhead.py                 # tiny test checkpoint on the CPU (built here, offline)
    python bench/langchain_overhead.py --model /models/VLM2Vec-V2.0 --device cuda

For each workload the same inputs go through ``VLM2VecEmbeddings`` and straight to the encoder it wraps,
alternating, ``--repeats`` times; the ratio is the best adapter time over the best core time (target:
at most 1.05; the ratio of the medians is printed beside it). The adapter's extra work is building lists
of Python floats and, for stored pages and clips, turning metadata back into inputs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]


def median_seconds(fn: Callable[[], Any], runs: list[float]) -> None:
    started = time.perf_counter()
    fn()
    runs.append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hub id or local directory (default: the tiny random test checkpoint)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--n", type=int, default=8, help="items per workload")
    args = parser.parse_args()

    import mediafixtures
    from langchain_vlm2vec import VLM2VecEmbeddings, VLM2VecPDFLoader, VLM2VecVideoLoader
    from vlm2vec_core import Input, VLM2VecEncoder

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from tinymodel import build_tiny_checkpoint

            model = str(build_tiny_checkpoint(work / "tiny"))
        encoder = VLM2VecEncoder(model, device=args.device).load()
        emb = VLM2VecEmbeddings(encoder=encoder, batch_size=8, show_progress=False)
        pdf = mediafixtures.make_pdf(work / "doc.pdf", n_pages=args.n, size=(306, 396))
        video = mediafixtures.make_video(work / "talk.mp4", seconds=float(args.n), fps=10)
        pages = VLM2VecPDFLoader(pdf, cache_dir=work / "cache").load()
        clips = VLM2VecVideoLoader(video, clip_seconds=1.0, cache_dir=work / "cache").load()
        texts = [f"a chart of quarterly revenue, slide {i}" for i in range(args.n * 4)]
        page_paths = [d.metadata["image_path"] for d in pages]
        clip_refs = [d.metadata["reference"] for d in clips]
        common = {"batch_size": 8, "show_progress": False}

        workloads: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "queries (embed_query x n)": (
                lambda: [emb.embed_query(t) for t in texts],
                lambda: [encoder.encode_queries([t], task="visdoc", **common) for t in texts],
            ),
            "texts (embed_documents)": (
                lambda: emb.embed_documents(texts),
                lambda: encoder.encode_documents(texts, task="visdoc", **common),
            ),
            "page images (embed_image)": (
                lambda: emb.embed_image(page_paths),
                lambda: encoder.encode_documents([Input(image=p) for p in page_paths], task="visdoc", **common),
            ),
            "clips (embed_video)": (
                lambda: emb.embed_video(clip_refs),
                lambda: encoder.encode_documents([Input(video=r) for r in clip_refs], task="moment", **common),
            ),
            "stored pages+clips (embed_media_documents)": (
                lambda: emb.embed_media_documents(pages + clips),
                lambda: (
                    encoder.encode_documents([Input(image=Path(p)) for p in page_paths], task="visdoc", **common),
                    encoder.encode_documents([Input(video=r) for r in clip_refs], task="moment", **common),
                ),
            ),
        }
        print(f"model: {model}  device: {encoder.device}  n={args.n}  repeats={args.repeats}")
        print(f"{'workload':<44} {'core s':>9} {'adapter s':>10} {'ratio':>7} {'median ratio':>13}")
        worst = 0.0
        for name, (adapter, core) in workloads.items():
            adapter(), core()  # warm-up (caches, lazy imports)
            adapter_runs: list[float] = []
            core_runs: list[float] = []
            for i in range(args.repeats):  # alternate, and alternate which goes first
                order = [(core, core_runs), (adapter, adapter_runs)]
                for fn, runs in order if i % 2 else order[::-1]:
                    median_seconds(fn, runs)
            # best-of-n is the least noisy estimate of what each path costs (timeit's advice); medians beside it
            core_s, adapter_s = min(core_runs), min(adapter_runs)
            ratio = adapter_s / core_s
            median_ratio = statistics.median(adapter_runs) / statistics.median(core_runs)
            worst = max(worst, ratio)
            print(f"{name:<44} {core_s:>9.4f} {adapter_s:>10.4f} {ratio:>7.3f} {median_ratio:>13.3f}")
        print(f"worst ratio: {worst:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
