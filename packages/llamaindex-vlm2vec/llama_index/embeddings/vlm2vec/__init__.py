"""VLM2Vec-V2 for LlamaIndex: one embedding space for questions, PDF pages and video clips."""

from llama_index.embeddings.vlm2vec.base import VLM2VecEmbedding
from llama_index.embeddings.vlm2vec.index import (
    ChatImages,
    ClipThumbnails,
    NoChatModel,
    chat_llm_from_env,
    content_id,
    index_documents,
    open_chroma_index,
    query_engine,
)

__all__ = [
    "ChatImages",
    "ClipThumbnails",
    "NoChatModel",
    "VLM2VecEmbedding",
    "chat_llm_from_env",
    "content_id",
    "index_documents",
    "open_chroma_index",
    "query_engine",
]
