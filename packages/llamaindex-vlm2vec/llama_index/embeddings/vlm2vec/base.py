"""VLM2VecEmbedding: VLM2Vec-V2 as a LlamaIndex ``MultiModalEmbedding`` (text, images, PDF pages, video clips)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import llama_index.core.instrumentation as instrument
import numpy as np
from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.schema import ImageType

from vlm2vec_core import Encoder, Input, as_input, get_preset
from vlm2vec_core.encoders.protocol import aencode_by_task, default_task, encode_by_task
from vlm2vec_core.media.documents import input_for_reference

DEFAULT_MODEL = "VLM2Vec/VLM2Vec-V2.0"
dispatcher = instrument.get_dispatcher(__name__)


class VLM2VecEmbedding(MultiModalEmbedding):
    """Multimodal embeddings for LlamaIndex (VLM2Vec-V2 by default, or any family of vlm2vec-core): questions,
    texts, images, PDF pages and video clips in one space.

    Build it from ``model`` (a Hub id or a local directory; ``family`` when the checkpoint cannot tell it,
    ``truncate_dim`` for a Matryoshka size, ``device`` and ``encoder_kwargs`` go to
    ``vlm2vec_core.VLM2VecEncoder``, created on first use) or from an existing core encoder (``encoder=``, local
    or remote) so one loaded model serves the whole app. Queries get the query side of the ``task`` preset
    (``visdoc``: question -> page); texts and images the document side; videos and clips the document side of
    ``video_task`` (``moment``). ``query_instruction`` / ``document_instruction`` override the presets.

    Image inputs may be paths, PIL images, bytes or file objects, and also references: ``talk.mp4#t=10,20`` is
    embedded as a video (8 frames over that span), ``doc.pdf#page=3`` as that page (rendered at ``dpi``). This is how
    the pages and clips of :mod:`llama_index.readers.vlm2vec` travel through LlamaIndex's image paths.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="Hub id or local directory of the checkpoint.")
    embed_batch_size: int = Field(default=8, gt=0, le=2048, description="Inputs per encoder call.")
    task: str | None = Field(
        default=None,
        description="Preset for queries, texts and images (vlm2vec_core.PRESETS); None: the family's for pages.",
    )
    video_task: str = Field(default="moment", description="Preset whose document side embeds videos and clips.")
    query_instruction: str | None = Field(default=None, description="Overrides the preset's query instruction.")
    document_instruction: str | None = Field(default=None, description="Overrides the presets' document side.")
    device: str | None = Field(default=None, description="Device of the local encoder (default: cuda if any).")
    family: str | None = Field(default=None, description="Model family (default: detected from the checkpoint).")
    truncate_dim: int | None = Field(default=None, gt=0, description="Matryoshka size to keep (default: all).")
    encoder_kwargs: dict[str, Any] = Field(default_factory=dict, description="More VLM2VecEncoder options.")
    dpi: float = Field(
        default=144, gt=0, description="Resolution of page references (doc.pdf#page=3); as the PDFPageReader's."
    )

    _encoder: Encoder | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, model: str | Path | None = None, *, encoder: Encoder | None = None, **kwargs: Any) -> None:
        if encoder is not None and (kwargs.get("family") is not None or kwargs.get("truncate_dim") is not None):
            raise ValueError("family= and truncate_dim= are for the encoder built from model=; not with encoder=")
        if model is not None:
            kwargs["model_name"] = str(model)
        elif encoder is not None and "model_name" not in kwargs:
            kwargs["model_name"] = str(getattr(encoder, "model_name", type(encoder).__name__))
        super().__init__(**kwargs)
        if self.task is not None:
            get_preset(self.task)  # an unknown task fails here, naming the valid ones
        get_preset(self.video_task)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "VLM2VecEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The core encoder (the one passed in, or a ``VLM2VecEncoder`` created on first use)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from vlm2vec_core import VLM2VecEncoder

                    given = {"family": self.family, "truncate_dim": self.truncate_dim}
                    options = {**{k: v for k, v in given.items() if v is not None}, **self.encoder_kwargs}
                    self._encoder = VLM2VecEncoder(self.model_name, device=self.device, **options)
        return self._encoder

    @property
    def page_task(self) -> str:
        """``task``, or the encoder family's own task for pages (``visdoc`` for most; UniME-V2's ``image``)."""
        return self.task or default_task(getattr(self.encoder, "family", None))

    def to_payload(self) -> dict[str, Any]:
        return {**super().to_payload(), "task": self.task, "video_task": self.video_task}

    # -- the encoder calls (sync, and async through the encoder's coroutines or a worker thread) ---------------

    def _options(self, role: str) -> dict[str, Any]:
        instruction = self.query_instruction if role == "query" else self.document_instruction
        return {"instruction": instruction, "batch_size": self.embed_batch_size, "show_progress": False}

    def _tasks(self, inputs: list[Input]) -> list[str]:
        """The document task of each input: videos and clips use ``video_task``, everything else ``task``."""
        return [self.video_task if item.video is not None else self.page_task for item in inputs]

    def _queries(self, queries: Sequence[str]) -> list[Embedding]:
        return _rows(self.encoder.encode_queries(list(queries), task=self.page_task, **self._options("query")))

    async def _aqueries(self, queries: Sequence[str]) -> list[Embedding]:
        vectors = await _acall(
            self.encoder, "encode_queries", list(queries), task=self.page_task, **self._options("query")
        )
        return _rows(vectors)

    def _documents(self, inputs: list[Input]) -> list[Embedding]:
        return _rows(encode_by_task(self.encoder, inputs, self._tasks(inputs), **self._document_options()))

    async def _adocuments(self, inputs: list[Input]) -> list[Embedding]:
        return _rows(await aencode_by_task(self.encoder, inputs, self._tasks(inputs), **self._document_options()))

    def _document_options(self) -> dict[str, Any]:
        """``document_instruction`` overrides ``task``'s preset; clips keep ``video_task``'s."""
        options = self._options("document")
        return {**options, "instruction": None, "instructions": {self.page_task: options["instruction"]}}

    # -- LlamaIndex hooks: single items and batches, sync and async -------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._queries([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aqueries([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._documents([Input(text=text)])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._adocuments([Input(text=text)]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._documents([Input(text=t) for t in texts])

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._adocuments([Input(text=t) for t in texts])

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._documents([image_input(img_file_path, dpi=self.dpi)])[0]

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return (await self._adocuments([image_input(img_file_path, dpi=self.dpi)]))[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self._documents([image_input(img, dpi=self.dpi) for img in img_file_paths])

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await self._adocuments([image_input(img, dpi=self.dpi) for img in img_file_paths])

    # -- video: a clip reference (talk.mp4#t=10,20), a video path, a VideoClip or a list of frames --------------

    def get_video_embedding(self, video: Any) -> Embedding:
        """Embed a video as 8 frames: ``talk.mp4#t=10,20`` (that span), a file (all of it), a ``VideoClip``
        or a list of frames (PIL images or HxWx3 arrays). Fires the same events as the other embeddings."""
        with self._events([video]) as done:
            return done(self._documents([video_input(video)]))[0]

    def get_video_embedding_batch(self, videos: Sequence[Any], show_progress: bool = False) -> list[Embedding]:
        """Embed many videos, ``embed_batch_size`` per encoder call, in order."""
        del show_progress  # the encoder batches internally; LlamaIndex's bar would show one step
        with self._events(list(videos)) as done:
            return done(self._documents([video_input(v) for v in videos]))

    async def aget_video_embedding(self, video: Any) -> Embedding:
        """Async :meth:`get_video_embedding`."""
        with self._events([video]) as done:
            return done(await self._adocuments([video_input(video)]))[0]

    async def aget_video_embedding_batch(self, videos: Sequence[Any]) -> list[Embedding]:
        """Async :meth:`get_video_embedding_batch`."""
        with self._events(list(videos)) as done:
            return done(await self._adocuments([video_input(v) for v in videos]))

    @contextmanager
    def _events(self, chunks: list[Any]) -> Iterator[Callable[[list[Embedding]], list[Embedding]]]:
        """Callback and instrumentation events around a video embedding, as LlamaIndex fires for the others."""
        payload = self.to_payload()
        dispatcher.event(EmbeddingStartEvent(model_dict=payload))
        with self.callback_manager.event(CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: payload}) as event:

            def done(embeddings: list[Embedding]) -> list[Embedding]:
                labels = [str(c) if isinstance(c, (str, Path)) else type(c).__name__ for c in chunks]
                event.on_end(payload={EventPayload.CHUNKS: labels, EventPayload.EMBEDDINGS: embeddings})
                dispatcher.event(EmbeddingEndEvent(chunks=labels, embeddings=embeddings))
                return embeddings

            yield done


def image_input(image: Any, *, dpi: float = 144) -> Input:
    """What an image-like value from LlamaIndex stands for: a path or reference (``talk.mp4#t=10,20`` is a clip,
    ``doc.pdf#page=3`` a page, rendered at ``dpi``), a file object or bytes, a PIL image, a ``Page``, a
    ``VideoClip`` or an ``Input``."""
    if isinstance(image, (str, Path)):
        return input_for_reference(image, dpi=dpi)
    if isinstance(image, BytesIO):
        return Input(image=image.getvalue())
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Input(image=bytes(image))
    return as_input(image)


def video_input(video: Any) -> Input:
    return video if isinstance(video, Input) else Input(video=str(video) if isinstance(video, Path) else video)


def _rows(vectors: np.ndarray) -> list[Embedding]:
    return [row.tolist() for row in np.asarray(vectors, dtype=np.float32)]


async def _acall(encoder: Encoder, method: str, *args: Any, **kwargs: Any) -> np.ndarray:
    """The encoder's own coroutine (``aencode_queries``...) when it has one, else the sync call in a thread."""
    coroutine = getattr(encoder, f"a{method}", None)
    if coroutine is not None:
        return np.asarray(await coroutine(*args, **kwargs))
    return np.asarray(await asyncio.to_thread(getattr(encoder, method), *args, **kwargs))
