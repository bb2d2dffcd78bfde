"""Embed a PDF's pages and a video's clips with VLM2Vec-V2, then show the best matches for a query.

    python examples/search_pdf_video.py "a bar chart of quarterly revenue"
    python examples/search_pdf_video.py --model /models/VLM2Vec-V2.0 --pdf my.pdf --video talk.mp4 "the demo"

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
    print(f"\nBest {kind} for {args.query!r}:")
    for i in np.argsort(-scores)[: args.top_k]:
        print(f"  {scores[i]:6.3f}  {items[i].source.name}  {where(items[i])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    pdfs = args.pdf or ([] if args.video else [DATA / "report.pdf"])
    videos = args.video or ([] if args.pdf else [DATA / "talk.mp4"])
    encoder = VLM2VecEncoder(args.model, base_model=args.base_model, device=args.device)
    try:
        encoder.load()
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    errors: list[InputError] = []
    pages = [page for pdf in pdfs for page in pdf_pages(pdf, errors=errors)]
    clips = [clip for video in videos for clip in video_clips(video, clip_seconds=args.clip_seconds, errors=errors)]
    print(f"{len(pages)} pages from {len(pdfs)} PDF(s), {len(clips)} clips from {len(videos)} video(s)")

    if pages:
        show("pages", pages, encoder, args, task="visdoc", where=lambda p: f"page {p.page_number}/{p.page_count}")
    if clips:
        show("clips", clips, encoder, args, task="moment", where=lambda c: f"{c.start:.1f}-{c.end:.1f} s")
    for err in errors:
        print(f"skipped: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
