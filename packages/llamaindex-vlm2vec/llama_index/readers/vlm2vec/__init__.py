"""Readers of the VLM2Vec integration: PDF pages, video clips and images as ``ImageDocument``s with stable ids."""

from llama_index.readers.vlm2vec.base import ImageFileReader, PDFPageReader, VideoClipReader, file_extractor

__all__ = ["ImageFileReader", "PDFPageReader", "VideoClipReader", "file_extractor"]
