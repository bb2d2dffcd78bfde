"""Index a folder of PDFs and videos into Chroma with LlamaIndex and VLM2Vec-V2, then show the best pages and
clips for a question (and an answer, when a multimodal chat model is configured).

    python examples/llamaindex_visual_docs.py "a bar chart of quarterly revenue"
    python examples/llamaindex_visual_docs.py --folder ~/docs --db ~/.cache/my-index "where is the demo?"
    python examples/llamaindex_visual_docs.py --model /models/VLM2Vec-V2.0 \\
        --base-model /models/Qwen2-VL-2B-Instruct "the architecture diagram"

Pages and clips are stored once (ids are content hashes): running it again on the same folder embeds nothing
new. For an answer, point it at any OpenAI-compatible multimodal chat endpoint:
VLM2VEC_CHAT_BASE_URL (or OPENAI_BASE_URL), VLM2VEC_CHAT_API_KEY (or OPENAI_API_KEY), VLM2VEC_CHAT_MODEL.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from llama_index.core import SimpleDirectoryReader
from llama_index.core.schema import NodeWithScore

from llama_index.embeddings.vlm2vec import (
    VLM2VecEmbedding,
    chat_llm_from_env,
    index_documents,
    open_chroma_index,
    query_engine,
)
from llama_index.readers.vlm2vec import file_extractor
from vlm2vec_core import ModelNotFoundError

DATA = Path(__file__).resolve().parent / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question", help="what to look for")
    parser.add_argument("--folder", type=Path, default=DATA, help="PDFs and videos to index (default: samples)")
    parser.add_argument("--db", type=Path, default=Path(".vlm2vec-chroma"), help="Chroma folder (kept)")
    parser.add_argument("--model", default="VLM2Vec/VLM2Vec-V2.0", help="Hub id or local directory")
    parser.add_argument("--base-model", default=None, help="local copy of an adapter's base model")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--top-k", type=int, default=3)
    return parser.parse_args(argv)


def show(title: str, hits: list[NodeWithScore]) -> None:
    print(title)
    for hit in hits:
        meta = hit.node.metadata
        if meta.get("kind") == "clip":
            where = f"{meta['file_name']} {meta['start_seconds']:.1f}-{meta['end_seconds']:.1f} s"
        else:
            where = f"{meta.get('file_name')} page {meta.get('page_label', '?')}"
        print(f"  {hit.score or 0.0:.3f}  {where:40}  {meta.get('file_path')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    options = {"base_model": args.base_model} if args.base_model else {}
    embed = VLM2VecEmbedding(model=args.model, device=args.device, encoder_kwargs=options, embed_batch_size=4)

    extractor = file_extractor(clip_seconds=args.clip_seconds)
    reader = SimpleDirectoryReader(str(args.folder), file_extractor=extractor, required_exts=list(extractor))
    index = open_chroma_index(args.db, embed)  # creates the Chroma folder, or reopens it with what it holds
    try:
        added = index_documents(index, reader.load_data(), show_progress=True)
    except ModelNotFoundError as err:
        print(f"{err}\nPass --model /path/to/VLM2Vec-V2.0 (see README.md, Weights).", file=sys.stderr)
        return 2
    skipped = [str(err) for r in set(extractor.values()) for err in getattr(r, "errors", [])]
    print(f"indexed {len(added)} new pages and clips into {args.db}" + (f"; skipped: {skipped}" if skipped else ""))

    hits = index.as_retriever(image_similarity_top_k=2 * args.top_k).text_to_image_retrieve(args.question)
    show("best pages:", [h for h in hits if h.node.metadata.get("kind") == "page"][: args.top_k])
    show("best clips:", [h for h in hits if h.node.metadata.get("kind") == "clip"][: args.top_k])

    if chat_llm_from_env() is None:
        print("(set VLM2VEC_CHAT_BASE_URL and VLM2VEC_CHAT_MODEL for an answer from a multimodal chat model)")
    else:
        answer = query_engine(index, image_similarity_top_k=args.top_k).query(args.question)
        print(f"answer: {answer}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
