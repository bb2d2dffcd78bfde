"""The langchain-tests standard suites, none of their tests overridden or skipped."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    ToolsIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests, ToolsUnitTests

from langchain_vlm2vec import VLM2VecEmbeddings, VLM2VecRetriever, VLM2VecSearchTool


class TestVLM2VecEmbeddingsUnit(EmbeddingsUnitTests):
    """Construction only: the model is named, never loaded (no weights, no network)."""

    @property
    def embeddings_class(self) -> type[VLM2VecEmbeddings]:
        return VLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "VLM2Vec/VLM2Vec-V2.0", "device": "cpu"}


class TestVLM2VecEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """The real tiny checkpoint, shared with the rest of the session."""

    encoder: Any = None

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _tiny(cls, tiny_encoder: Any) -> None:
        cls.encoder = tiny_encoder

    @property
    def embeddings_class(self) -> type[VLM2VecEmbeddings]:
        return VLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": self.encoder}


class TestVLM2VecRetriever(RetrieversIntegrationTests):
    """Over a real Chroma store holding 3 pages and 3 clips embedded by the tiny checkpoint."""

    store: Any = None

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _store(cls, indexed: Any) -> None:
        cls.store = indexed.store

    @property
    def retriever_constructor(self) -> type[VLM2VecRetriever]:
        return VLM2VecRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": self.store, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "a slide with a red circle"


class _ToolParams:
    store: Any = None

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _store(cls, indexed: Any) -> None:
        cls.store = indexed.store

    @property
    def tool_constructor(self) -> type[VLM2VecSearchTool]:
        return VLM2VecSearchTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"retriever": VLM2VecRetriever(vectorstore=self.store), "name": "find_pages", "description": "Find."}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": "the revenue chart", "k": 2}


class TestVLM2VecSearchToolUnit(_ToolParams, ToolsUnitTests):
    pass


class TestVLM2VecSearchToolIntegration(_ToolParams, ToolsIntegrationTests):
    pass
