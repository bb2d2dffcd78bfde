"""Find the moment in a video that matches a description: clips of a few frames each, in one vector space.

    python examples/video_moments.py "bars rising on a chart" --video examples/data/talk.mp4 --clip-seconds 5

Prints the best clips with their time ranges and writes a contact sheet of them (a storyboard per clip).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlm2vec_core import (
    ChromaStore,
    ModelNotFoundError,
    RemoteEncoder,
    VLM2VecEncoder,
    contact_sheet,
    index_paths,
    search,
)

DATA = Path(__file__).resolve().parent / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("description")
    parser.add_argument("--video", type=Path, action="append", help="video file or folder (repeatable)")
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--db", type=Path, default=Path(".vlm2vec-moments"))
    parser.add_argument("--model", default="VLM2Vec/VLM2Vec-V2.0")
    parser.add_argument("--remote", default=None)
    parser.add_argument("--sheet", type=Path, default=Path("moments.png"))
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args()

    encoder = RemoteEncoder(args.remote) if args.remote else VLM2VecEncoder(args.model)
    try:
        _ = encoder.dim
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = ChromaStore.open(db=args.db, collection=f"moments-{args.clip_seconds:g}s")
    report = index_paths(args.video or [DATA / "talk.mp4"], encoder, store, clip_seconds=args.clip_seconds)
    print(report.summary())
    hits = search(args.description, encoder, store, k=args.k, kinds=["clip"])
    for hit in hits:
        start, end = hit.metadata["start_seconds"], hit.metadata["end_seconds"]
        print(
            f"  {hit.score:6.3f}  {hit.metadata['file_name']}  {start:.1f}-{end:.1f} s  ({hit.metadata['reference']})"
        )
    if hits:
        print(f"storyboard: {contact_sheet(hits, args.sheet)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
