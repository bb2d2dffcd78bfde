"""VLM2Vec-V2 for LlamaIndex: one embedding space for questions, PDF pages and video clips."""

from llama_index.embeddings.vlm2vec.base import VLM2VecEmbedding
from llama_index.embeddings.vlm2vec.index import (
    ClipThumbnails,
    chat_llm_from_env,
    index_documents,
    open_chroma_index,
    query_engine,
)

__all__ = [
    "ClipThumbnails",
    "VLM2VecEmbedding",
    "chat_llm_from_env",
    "index_documents",
    "open_chroma_index",
    "query_engine",
]
