"""LangChain integration of VLM2Vec-V2: search PDF pages and video clips by what they look like."""

from langchain_vlm2vec.document_loaders import VLM2VecPDFLoader, VLM2VecVideoLoader
from langchain_vlm2vec.embeddings import VLM2VecEmbeddings
from langchain_vlm2vec.rerank import VLM2VecRerank
from langchain_vlm2vec.retrievers import VLM2VecRetriever
from langchain_vlm2vec.tools import VLM2VecSearchInput, VLM2VecSearchTool
from langchain_vlm2vec.vectorstores import aadd_media_documents, add_media_documents, check_vectorstore

__version__ = "0.1.0"

__all__ = [
    "VLM2VecEmbeddings",
    "VLM2VecPDFLoader",
    "VLM2VecRerank",
    "VLM2VecRetriever",
    "VLM2VecSearchInput",
    "VLM2VecSearchTool",
    "VLM2VecVideoLoader",
    "__version__",
    "aadd_media_documents",
    "add_media_documents",
    "check_vectorstore",
]
