"""Document QA over PDFs with Chroma: index the pages as images, retrieve the best ones, answer from them.

    python examples/chroma_pdf_qa.py "What was the Q4 revenue?" --pdf examples/data/report.pdf
    VLM2VEC_CHAT_BASE_URL=http://localhost:8001/v1 VLM2VEC_CHAT_MODEL=Qwen2-VL-7B-Instruct \\
        python examples/chroma_pdf_qa.py "What was the Q4 revenue?"

Without a chat model it shows the retrieved pages. --model takes a Hub id or a local directory; --remote a
`vlm2vec serve` URL instead of a local model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlm2vec_core import (
    ChatConfig,
    ChromaStore,
    ModelNotFoundError,
    RemoteEncoder,
    VLM2VecEncoder,
    ask,
    index_paths,
    search,
)

DATA = Path(__file__).resolve().parent / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--pdf", type=Path, action="append", help="PDF file or folder (repeatable)")
    parser.add_argument("--db", type=Path, default=Path(".vlm2vec-pdf-qa"))
    parser.add_argument("--model", default="VLM2Vec/VLM2Vec-V2.0")
    parser.add_argument("--remote", default=None)
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args()

    encoder = RemoteEncoder(args.remote) if args.remote else VLM2VecEncoder(args.model)
    try:
        _ = encoder.dim
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = ChromaStore.open(db=args.db, collection="pdf-qa")
    report = index_paths(args.pdf or [DATA / "report.pdf"], encoder, store)
    print(report.summary())
    for err in report.errors:
        print(f"  skipped: {err}", file=sys.stderr)

    hits = search(args.question, encoder, store, k=args.k, kinds=["page"])
    print(f"\nPages for {args.question!r}:")
    for hit in hits:
        print(f"  {hit.score:6.3f}  {hit.label}  ({hit.metadata['image_path']})")
    config = ChatConfig.from_env()
    if config is None:
        print("\nNo chat model configured (VLM2VEC_CHAT_BASE_URL, VLM2VEC_CHAT_MODEL): retrieval only.")
        return 0
    print(f"\nAnswer ({config.model}):\n{ask(args.question, hits, config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
