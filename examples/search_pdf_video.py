"""Embed a PDF's pages and a video's clips, then show the best matches for a query (and rerank them).

    python examples/search_pdf_video.py "a bar chart of quarterly revenue"
    python examples/search_pdf_video.py --model /models/VLM2Vec-V2.0 --pdf my.pdf --video talk.mp4 "the demo"
    python examples/search_pdf_video.py --model Qwen/Qwen3-VL-Embedding-2B --rerank Qwen/Qwen3-VL-Reranker-2B "q"

Without --pdf/--video it searches the sample documents in examples/data/. --model takes a Hub id or a local
directory (full weights or a PEFT adapter; --base-model points an adapter at a local copy of its base).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vlm2vec_core import InputError, ModelNotFoundError, VLM2VecEncoder, pdf_pages, video_clips

DATA = Path(__file__).resolve().parent / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", help="what to look for")
    parser.add_argument("--model", default="VLM2Vec/VLM2Vec-V2.0", help="Hub id or local directory")
    parser.add_argument("--base-model", default=None, help="local copy of an adapter's base model")
    parser.add_argument("--family", default=None, help="model family (default: detected from the checkpoint)")
    parser.add_argument("--rerank", default=None, metavar="MODEL", help="rerank the best hits with this reranker")
    parser.add_argument("--pdf", type=Path, action="append", help="PDF file (repeatable)")
    parser.add_argument("--video", type=Path, action="append", help="video file (repeatable)")
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=4)
    return parser.parse_args(argv)


def show(
    kind: str,
    items: list[Any],
    encoder: VLM2VecEncoder,
    args: argparse.Namespace,
    task: str,
    where: Callable[[Any], str],
) -> None:
    """Embed pages or clips with the task's document preset and print the best ones for the query."""
    vectors = encoder.encode_documents(items, task=task, batch_size=args.batch_size)
    scores = vectors @ encoder.encode_queries([args.query], task=task)[0]
    best = [int(i) for i in np.argsort(-scores)[: args.top_k]]
    print(f"\nBest {kind} for {args.query!r}:")
    if args.rerank:  # a second stage judges each (query, page or clip) pair and reorders the candidates
        from vlm2vec_core.rerank import Reranker

        ranked = Reranker(args.rerank).rerank(args.query, [items[i] for i in best], task=task)
        for position, judged in ranked:
            i = best[position]
            print(f"  {scores[i]:6.3f} -> {judged:5.3f}  {items[i].source.name}  {where(items[i])}")
        return
    for i in best:
        print(f"  {scores[i]:6.3f}  {items[i].source.name}  {where(items[i])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    pdfs = args.pdf or ([] if args.video else [DATA / "report.pdf"])
    videos = args.video or ([] if args.pdf else [DATA / "talk.mp4"])
    encoder = VLM2VecEncoder(args.model, family=args.family, base_model=args.base_model, device=args.device)
    try:
        encoder.load()
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    errors: list[InputError] = []
    pages = [page for pdf in pdfs for page in pdf_pages(pdf, errors=errors)]
    family = encoder.family
    if "clip" not in family.task_for_kind:  # UniME-V2 takes images only
        videos = []
    sampler = family.sampler(encoder.limits.num_frames)  # the family's frames per clip (Qwen3-VL: up to 64)
    clips = [
        clip
        for video in videos
        for clip in video_clips(video, clip_seconds=args.clip_seconds, sampler=sampler, errors=errors)
    ]
    print(f"{len(pages)} pages from {len(pdfs)} PDF(s), {len(clips)} clips from {len(videos)} video(s)")

    if pages:
        task = encoder.family.task_for_kind["page"]
        show("pages", pages, encoder, args, task=task, where=lambda p: f"page {p.page_number}/{p.page_count}")
    if clips:
        task = family.task_for_kind["clip"]
        show("clips", clips, encoder, args, task=task, where=lambda c: f"{c.start:.1f}-{c.end:.1f} s")
    for err in errors:
        print(f"skipped: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
