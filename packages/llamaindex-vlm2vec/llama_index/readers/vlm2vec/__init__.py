"""Readers of the VLM2Vec integration: PDF pages and video clips as ``ImageDocument``s with stable ids."""

from llama_index.readers.vlm2vec.base import PDFPageReader, VideoClipReader, file_extractor

__all__ = ["PDFPageReader", "VideoClipReader", "file_extractor"]
