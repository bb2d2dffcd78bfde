"""VLM2VecEmbeddings: LangChain ``Embeddings`` over a vlm2vec-core encoder (a local model or a remote one)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from vlm2vec_core import Encoder, Input, get_preset, input_for_metadata
from vlm2vec_core.encoders.loading import DEFAULT_MODEL
from vlm2vec_core.encoders.protocol import default_task, encode_by_task
from vlm2vec_core.media.images import from_data_url

# Vectors already computed from pages and clips, handed to a vector store's own add_documents (see
# add_media_documents): while set, embed_documents returns them instead of embedding the captions.
_PRECOMPUTED: ContextVar[deque[tuple[str, list[float]]] | None] = ContextVar("vlm2vec_precomputed", default=None)


class VLM2VecEmbeddings(Embeddings):
    """Multimodal embeddings (VLM2Vec-V2 by default, or any family of vlm2vec-core) for text, images, PDF pages
    and video clips, in one vector space.

    Pass ``model`` (a Hub id or a local directory; ``family=`` when the checkpoint cannot tell its family,
    ``truncate_dim=`` for a Matryoshka size, ``device=`` and the other ``VLM2VecEncoder`` options go alongside;
    the model loads on first use) or an existing vlm2vec-core ``encoder`` (local, remote or fake).
    Texts, queries and images use the ``task`` preset (default: the family's for pages, ``"visdoc"`` (question ->
    page) for most; UniME-V2's is ``"image"``), videos and clips the
    ``video_task`` preset (``"moment"``: question -> clip); ``query_instruction`` / ``document_instruction``
    override the preset's strings. Vectors are lists of Python floats, L2-normalised.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        encoder: Encoder | None = None,
        task: str | None = None,
        video_task: str = "moment",
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        family: str | None = None,
        truncate_dim: int | None = None,
        **encoder_options: Any,
    ) -> None:
        given = {"family": family, "truncate_dim": truncate_dim}
        encoder_options = {**{k: v for k, v in given.items() if v is not None}, **encoder_options}
        if encoder is not None and (model is not None or encoder_options):
            raise ValueError("pass either encoder= or model= (with its options), not both")
        if encoder is not None and not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be a vlm2vec_core encoder, not {type(encoder).__name__}")
        if task is not None:
            get_preset(task)  # unknown names fail here, listing the presets
        get_preset(video_task)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = str(model) if model is not None else (None if encoder is not None else DEFAULT_MODEL)
        self.encoder_options = encoder_options
        self.task = task
        self.video_task = video_task
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._encoder = encoder
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        source = f"model={self.model!r}" if self.model is not None else f"encoder={self._encoder!r}"
        return f"VLM2VecEmbeddings({source}, task={self.task!r}, video_task={self.video_task!r})"

    @property
    def encoder(self) -> Encoder:
        """The core encoder (created on first use from ``model``; its weights load on the first encode)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from vlm2vec_core import VLM2VecEncoder

                    self._encoder = VLM2VecEncoder(self.model or DEFAULT_MODEL, **self.encoder_options)
        return self._encoder

    # -- text ----------------------------------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts as documents (the ``task`` preset's document side)."""
        pending = _PRECOMPUTED.get()
        if pending is not None:
            return _take(pending, texts)
        return _floats(self._encode("encode_documents", list(texts), self.page_task, self.document_instruction))

    def embed_query(self, text: str) -> list[float]:
        """Embed a question with the ``task`` preset's query instruction."""
        return _floats(self._encode("encode_queries", [text], self.page_task, self.query_instruction))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        pending = _PRECOMPUTED.get()
        if pending is not None:
            return _take(pending, texts)
        return _floats(await self._aencode("encode_documents", list(texts), self.page_task, self.document_instruction))

    async def aembed_query(self, text: str) -> list[float]:
        return _floats(await self._aencode("encode_queries", [text], self.page_task, self.query_instruction))[0]

    # -- images and videos ----------------------------------------------------------------------------------

    def embed_image(self, uris: Sequence[Any]) -> list[list[float]]:
        """Embed images (paths, ``data:`` URLs, bytes or PIL images) as documents, e.g. page images.

        The name langchain-chroma's ``add_images`` and chromadb look for.
        """
        return _floats(self._encode("encode_documents", _images(uris), self.page_task, self.document_instruction))

    embed_images = embed_image

    async def aembed_image(self, uris: Sequence[Any]) -> list[list[float]]:
        return _floats(
            await self._aencode("encode_documents", _images(uris), self.page_task, self.document_instruction)
        )

    aembed_images = aembed_image

    def embed_video(self, videos: Sequence[Any]) -> list[list[float]]:
        """Embed videos with the ``video_task`` document preset: video files (8 frames of the whole video),
        clip references (``"talk.mp4#t=10,20"``, 8 frames over that span), ``VideoClip`` s or lists of frames."""
        return _floats(self._encode("encode_documents", [Input(video=v) for v in videos], self.video_task, None))

    async def aembed_video(self, videos: Sequence[Any]) -> list[list[float]]:
        inputs = [Input(video=v) for v in videos]
        return _floats(await self._aencode("encode_documents", inputs, self.video_task, None))

    def embed_media_documents(self, documents: Sequence[Document]) -> list[list[float]]:
        """Embed what loader Documents point at (the page image, the clip's frames), never their text."""
        inputs, tasks = _media_inputs(documents, self.page_task, self.video_task)
        vectors = encode_by_task(
            self.encoder,
            inputs,
            tasks,
            instructions={self.page_task: self.document_instruction},
            batch_size=self.batch_size,
            show_progress=self.show_progress,
        )
        return _floats(vectors)

    async def aembed_media_documents(self, documents: Sequence[Document]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_media_documents, documents)

    # -- plumbing -------------------------------------------------------------------------------------------

    @property
    def page_task(self) -> str:
        """``task``, or the encoder family's own task for pages (``visdoc`` for most; UniME-V2's ``image``)."""
        return self.task or default_task(getattr(self.encoder, "family", None))

    def _encode(self, method: str, inputs: list[Any], task: str, instruction: str | None) -> np.ndarray:
        encode = getattr(self.encoder, method)
        return encode(
            inputs, task=task, instruction=instruction, batch_size=self.batch_size, show_progress=self.show_progress
        )

    async def _aencode(self, method: str, inputs: list[Any], task: str, instruction: str | None) -> np.ndarray:
        encoder = self.encoder
        kwargs = {"task": task, "instruction": instruction, "batch_size": self.batch_size}
        native = getattr(encoder, f"a{method}", None)
        if native is not None:
            return await native(inputs, show_progress=False, **kwargs)
        return await asyncio.to_thread(getattr(encoder, method), inputs, show_progress=False, **kwargs)


def _floats(vectors: np.ndarray) -> list[list[float]]:
    return np.asarray(vectors, dtype=np.float64).tolist()


def _images(uris: Sequence[Any]) -> list[Input]:
    if isinstance(uris, (str, os.PathLike)):
        raise TypeError("embed_image takes a list of images, not a single path")
    return [Input(image=from_data_url(u) if isinstance(u, str) and u.startswith("data:") else u) for u in uris]


def _media_inputs(documents: Sequence[Document], task: str, video_task: str) -> tuple[list[Input], list[str]]:
    """What loader Documents point at (from their metadata), and the document task of each."""
    inputs: list[Input] = []
    for i, doc in enumerate(documents):
        if not doc.metadata.get("reference"):
            raise ValueError(
                f"document {i} ({doc.page_content[:40]!r}) has no 'reference' metadata: "
                "load pages and clips with the langchain_vlm2vec loaders"
            )
        inputs.append(input_for_metadata(doc.metadata))
    return inputs, [video_task if x.video is not None else task for x in inputs]


@contextmanager
def precomputed(texts: Sequence[str], vectors: Sequence[list[float]]) -> Iterator[deque[tuple[str, list[float]]]]:
    """While open, ``embed_documents`` hands out these vectors for these texts, in order (see vectorstores)."""
    pending = deque(zip(texts, vectors, strict=True))
    token = _PRECOMPUTED.set(pending)
    try:
        yield pending
    finally:
        _PRECOMPUTED.reset(token)


def _take(pending: deque[tuple[str, list[float]]], texts: list[str]) -> list[list[float]]:
    out = []
    for text in texts:
        if not pending or pending[0][0] != text:
            raise RuntimeError(
                f"the vector store asked to embed {text[:60]!r}, which is not the next stored page or clip: "
                "add_media_documents needs a store that embeds its documents' texts in order"
            )
        out.append(pending.popleft()[1])
    return out
