"""VLM2VecRerank: a node postprocessor that reorders retrieved nodes by a multimodal reranker's scores."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from llama_index.core.bridge.pydantic import Field, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, NodeWithScore, QueryBundle

from vlm2vec_core import Input, InputError, input_for_reference
from vlm2vec_core.rerank import DEFAULT_RERANKER, candidate_for

log = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)
_MEDIA_KINDS = ("page", "clip", "image")  # what vlm2vec's readers write in metadata["kind"]


class VLM2VecRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a multimodal reranker (Qwen3-VL-Reranker by default): the ``top_n`` best, each
    ``NodeWithScore.score`` the reranker's score in (0, 1).

    ``reranker`` is a model name or folder (a local ``vlm2vec_core.rerank.Reranker``, loaded on first use) or any
    object with ``rerank`` (``Reranker``, ``RemoteReranker``, ``FakeReranker``). Pages and images are judged by
    their image, clips by their frames (vlm2vec's readers' metadata, else ``ImageNode.image_path`` or
    ``metadata["file_path"]``), other nodes by their text. The query is ``query_str``, with the image at
    ``QueryBundle.image_path`` when there is one. A node whose file is gone or broken is dropped (logged), the
    others are still reranked.
    """

    top_n: int | None = Field(default=2, ge=1, description="How many nodes to keep (None: all, reordered).")
    reranker: Any = Field(
        default=DEFAULT_RERANKER, validate_default=True, exclude=True, description="A reranker or a model name."
    )
    instruction: str | None = Field(default=None, description="The reranker's instruction (None: the family's).")
    task: str | None = Field(default=None, description="A task preset whose instruction the reranker uses.")

    @field_validator("reranker", mode="before")
    @classmethod
    def _build_reranker(cls, value: Any) -> Any:
        from vlm2vec_core.rerank import resolve_reranker

        return resolve_reranker(value)

    @classmethod
    def class_name(cls) -> str:
        return "VLM2VecRerank"

    @property
    def model_name(self) -> str:
        return str(getattr(self.reranker, "model_name", type(self.reranker).__name__))

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, candidates, kept = self._begin(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)) as event:
            errors: list[InputError] = []
            ranked = self.reranker.rerank(query, candidates, **self._options(errors)) if candidates else []
            return self._end(nodes, kept, ranked, errors, event)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, candidates, kept = self._begin(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)) as event:
            errors: list[InputError] = []
            ranked = []
            if candidates:
                arerank = getattr(self.reranker, "arerank", None)
                options = self._options(errors)
                if arerank is not None:
                    ranked = await arerank(query, candidates, **options)
                else:
                    ranked = await asyncio.to_thread(self.reranker.rerank, query, candidates, **options)
            return self._end(nodes, kept, ranked, errors, event)

    def _begin(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[Any, list[Any], list[int]]:
        """The start event, the query, and the candidates with the position of each one's node."""
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.model_name
            )
        )
        if query_bundle is None:
            raise ValueError("VLM2VecRerank needs a query (postprocess_nodes(nodes, query_str=...))")
        query: Any = Input(text=query_bundle.query_str)
        if query_bundle.image_path:
            image = input_for_reference(query_bundle.image_path)
            query = replace(image, text=query_bundle.query_str) if query_bundle.query_str else image
        candidates: list[Any] = []
        kept: list[int] = []
        for position, hit in enumerate(nodes):
            try:
                candidates.append(candidate(hit.node))
                kept.append(position)
            except ValueError as exc:  # InputError included: a page whose PDF is gone, metadata without a reference
                log.warning("VLM2VecRerank dropped node %s: %s", hit.node.node_id, exc)
        return query, candidates, kept

    def _options(self, errors: list[InputError]) -> dict[str, Any]:
        return {"top_n": self.top_n, "instruction": self.instruction, "task": self.task, "errors": errors}

    def _end(
        self,
        nodes: list[NodeWithScore],
        kept: list[int],
        ranked: list[tuple[int, float]],
        errors: list[InputError],
        event: Any,
    ) -> list[NodeWithScore]:
        for err in errors:  # err.index points into the candidates, kept[...] back into the nodes
            node = nodes[kept[err.index or 0]].node
            log.warning("VLM2VecRerank dropped node %s: %s", node.node_id, err.reason)
        # each score goes to the node it was computed for, by index (never by position after sorting)
        out = [NodeWithScore(node=nodes[kept[index]].node, score=float(score)) for index, score in ranked]
        event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _payload(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model_name,
            EventPayload.QUERY_STR: query_bundle.query_str if query_bundle is not None else None,
            EventPayload.TOP_K: self.top_n,
        }


def candidate(node: BaseNode) -> Any:
    """What the reranker judges for a node: a page's or image's picture, a clip's frames, else the node's text."""
    metadata = node.metadata
    if metadata.get("kind") in _MEDIA_KINDS and (metadata.get("reference") or metadata.get("image_path")):
        return candidate_for(metadata, "")  # vlm2vec's readers: the cached page image, the clip's span
    if isinstance(node, ImageNode):
        if node.image_path or metadata.get("file_path"):
            return input_for_reference(node.image_path or metadata["file_path"])
        if node.image:
            return Input(image=node.resolve_image())
    return Input(text=node.get_content(metadata_mode=MetadataMode.NONE))
