"""Overhead of the LlamaIndex adapter (VLM2VecEmbedding) over a direct core call on the same inputs.

    python bench/llamaindex_overhead.py                       # tiny test checkpoint, built here, on the CPU
    python bench/llamaindex_overhead.py --model /models/VLM2Vec-V2.0 --device cuda

Each case runs the core call and the adapter call alternately on one loaded encoder, ``--repeats`` times after a
warm-up, and prints the best (minimum) seconds of each and their ratio (adapter / core; the target is <= 1.05):
the minimum, as timeit reports, because a shared CPU adds noise of its own several times the adapter's cost.
A noise-free second figure: the adapter's wall time over the time spent inside the core encoder during the same
adapter calls ("own"), i.e. what the adapter adds around the very calls it makes.
Nothing is downloaded: without --model the tiny random checkpoint of the test suite is built in a temp dir.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]


class Timed:
    """The core encoder, with the seconds spent inside its encode calls summed up."""

    def __init__(self, encoder: Any) -> None:
        self.inner = encoder
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def measure(
    core: Callable[[], Any], adapter: Callable[[], Any], timed: Timed, repeats: int
) -> tuple[float, float, float]:
    core(), adapter()  # warm-up (first-call costs, caches)
    a: list[float] = []
    b: list[float] = []
    inside = 0.0
    for _ in range(repeats):
        for fn, out in ((core, a), (adapter, b)):
            timed.seconds = 0.0
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)
        inside += timed.seconds
    return min(a), min(b), sum(b) / inside


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Hub id or local directory (default: tiny test checkpoint)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    import mediafixtures
    from llama_index.embeddings.vlm2vec import VLM2VecEmbedding
    from llama_index.readers.vlm2vec import PDFPageReader
    from vlm2vec_core import Input, VLM2VecEncoder

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from tinymodel import build_tiny_checkpoint

            model = str(build_tiny_checkpoint(work / "tiny"))
        encoder = VLM2VecEncoder(model, device=args.device).load()
        timed = Timed(encoder)
        embed = VLM2VecEmbedding(encoder=timed, embed_batch_size=args.batch_size)

        pdf = mediafixtures.make_pdf(work / "doc.pdf", n_pages=args.pages, size=(612, 792))
        pages = [d.image_path for d in PDFPageReader(cache_dir=work / "cache", dpi=72).load_data(pdf)]
        video = mediafixtures.make_video(work / "talk.mp4", seconds=float(args.clips), fps=10)
        clips = [f"{video}#t={s},{s + 1}" for s in range(args.clips)]
        texts = [f"passage {i} about quarterly revenue and the roadmap" for i in range(32)]
        queries = [f"where is the chart {i}?" for i in range(8)]
        bs = args.batch_size

        cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            (
                f"{len(pages)} page images (batch)",
                lambda: encoder.encode_documents([Input(image=p) for p in pages], task="visdoc", batch_size=bs),
                lambda: embed.get_image_embedding_batch(pages),
            ),
            (
                f"{len(clips)} clips (batch)",
                lambda: encoder.encode_documents([Input(video=c) for c in clips], task="moment", batch_size=bs),
                lambda: embed.get_image_embedding_batch(clips),
            ),
            (
                f"{len(texts)} texts (batch)",
                lambda: encoder.encode_documents(texts, task="visdoc", batch_size=bs),
                lambda: embed.get_text_embedding_batch(texts),
            ),
            (
                f"{len(queries)} queries (one call each)",
                lambda: [encoder.encode_queries([q], task="visdoc", batch_size=bs) for q in queries],
                lambda: [embed.get_query_embedding(q) for q in queries],
            ),
        ]
        print(f"model: {model}  device: {encoder.device}  repeats: {args.repeats}  batch size: {bs}")
        print(f"{'case':34} {'core s':>9} {'adapter s':>10} {'ratio':>7} {'own':>7}")
        worst = own_worst = 0.0
        for name, core, adapter in cases:
            core_s, adapter_s, own = measure(core, adapter, timed, args.repeats)
            ratio = adapter_s / core_s
            worst, own_worst = max(worst, ratio), max(own_worst, own)
            print(f"{name:34} {core_s:9.4f} {adapter_s:10.4f} {ratio:7.3f} {own:7.4f}")
        print(f"worst ratio: {worst:.3f} side by side, {own_worst:.4f} own (target <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
