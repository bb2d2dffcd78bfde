"""VLM2VecSearchTool: an agent tool that finds pages and clips and lets a multimodal model look at them."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from .retrievers import VLM2VecRetriever

DEFAULT_DESCRIPTION = (
    "Search the indexed PDF pages and video clips by what they look like (charts, slides, diagrams, scenes). "
    "Input: a description of what to find. Returns the best matches (file, page or time span, score) "
    "with their images, so you can look at them before answering."
)


class VLM2VecSearchInput(BaseModel):
    query: str = Field(description="What to look for, described in words")
    k: int | None = Field(default=None, ge=1, le=20, description="How many pages or clips to return")


def summarize(documents: list[Document]) -> str:
    """One line per hit: rank, file and page or time span (the stored caption), score, reference."""
    if not documents:
        return "No matching pages or clips."
    lines = []
    for rank, doc in enumerate(documents, 1):
        score = doc.metadata.get("score")
        scored = f" (score {score:.3f})" if isinstance(score, float) else ""
        where = doc.metadata.get("reference", "")
        lines.append(f"{rank}. {doc.page_content}{scored} [{where}]")
    return "\n".join(lines)


class VLM2VecSearchTool(BaseTool):
    """Agent tool over a ``VLM2VecRetriever`` (``name`` and ``description`` can be set).

    The result (``response_format="content_and_artifact"``) is, as content, a text summary of the hits
    followed by each hit's image as a standard image content block (``images_in_content=False`` keeps the
    content to the text, for chat APIs that refuse images in tool messages), and, as artifact, the retrieved
    Documents with their metadata and ``metadata["image_block"]``.
    """

    name: str = "search_pages_and_clips"
    description: str = DEFAULT_DESCRIPTION
    args_schema: type[BaseModel] = VLM2VecSearchInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    retriever: VLM2VecRetriever
    images_in_content: bool = True

    def _run(
        self, query: str, k: int | None = None, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str | list[str | dict[str, Any]], list[Document]]:
        config = RunnableConfig(callbacks=run_manager.get_child()) if run_manager else None
        docs = self.retriever.invoke(query, config, k=k, include_images=True)
        return self._format(docs), docs

    async def _arun(
        self, query: str, k: int | None = None, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str | list[str | dict[str, Any]], list[Document]]:
        config = RunnableConfig(callbacks=run_manager.get_child()) if run_manager else None
        docs = await self.retriever.ainvoke(query, config, k=k, include_images=True)
        return self._format(docs), docs

    def _format(self, docs: list[Document]) -> str | list[str | dict[str, Any]]:
        summary = summarize(docs)
        if not self.images_in_content:
            return summary
        content: list[str | dict[str, Any]] = [{"type": "text", "text": summary}]
        for rank, doc in enumerate(docs, 1):
            if (block := doc.metadata.get("image_block")) is not None:
                content.append({"type": "text", "text": f"[{rank}] {doc.page_content}"})
                content.append(dict(block))
        return content
