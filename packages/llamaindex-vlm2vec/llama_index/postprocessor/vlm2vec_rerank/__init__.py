"""A multimodal second stage for LlamaIndex: rerank retrieved pages, clips, images and text with vlm2vec-core."""

from llama_index.postprocessor.vlm2vec_rerank.base import VLM2VecRerank

__all__ = ["VLM2VecRerank"]
