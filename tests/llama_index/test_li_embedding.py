"""Contract of VLM2VecEmbedding as a LlamaIndex MultiModalEmbedding, on the real tiny checkpoint."""

from __future__ import annotations

import asyncio
from io import BytesIO
from pathlib import Path
from typing import Any

import llama_index.core.instrumentation as instrument
import numpy as np
import pytest
from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler
from llama_index.core.callbacks.schema import CBEventType
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from PIL import Image

import mediafixtures
from llama_index.embeddings.vlm2vec import VLM2VecEmbedding
from vlm2vec_core import Input, InputError, video_clips

TEXTS = ["quarterly revenue", "a red circle", "the speaker waves", "page two", "an empty slide"]
ATOL = 1e-5


class Spy:
    """A pass-through around the real encoder that records each call (method, number of inputs, options)."""

    def __init__(self, encoder: Any) -> None:
        self.inner = encoder
        self.calls: list[tuple[str, int, dict[str, Any]]] = []

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append(("encode", len(inputs), kwargs))
        return self.inner.encode(inputs, **kwargs)

    def encode_queries(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append(("encode_queries", len(inputs), kwargs))
        return self.inner.encode_queries(inputs, **kwargs)

    def encode_documents(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append(("encode_documents", len(inputs), kwargs))
        return self.inner.encode_documents(inputs, **kwargs)


class AsyncSpy(Spy):
    """Like a remote encoder: has coroutines, which the adapter must prefer to threads."""

    async def aencode_queries(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append(("aencode_queries", len(inputs), kwargs))
        return self.inner.encode_queries(inputs, **kwargs)

    async def aencode_documents(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append(("aencode_documents", len(inputs), kwargs))
        return self.inner.encode_documents(inputs, **kwargs)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    return mediafixtures.make_image(tmp_path / "page.png", size=(200, 260), seed=3)


def test_is_a_multimodal_embedding_with_the_encoders_dim(embed: VLM2VecEmbedding):
    assert isinstance(embed, MultiModalEmbedding)
    vec = embed.get_text_embedding("hello")
    assert isinstance(vec, list)
    assert all(isinstance(x, float) for x in vec)
    assert len(vec) == embed.encoder.dim == 64


def test_query_and_document_sides_use_the_presets(embed: VLM2VecEmbedding, tiny_encoder: Any):
    q = embed.get_query_embedding("revenue chart")
    d = embed.get_text_embedding("revenue chart")
    np.testing.assert_allclose(q, tiny_encoder.encode_queries(["revenue chart"], task="visdoc")[0], atol=ATOL)
    np.testing.assert_allclose(d, tiny_encoder.encode_documents(["revenue chart"], task="visdoc")[0], atol=ATOL)
    assert float(np.dot(q, d)) < 0.999  # different instructions, different vectors


def test_instruction_overrides(tiny_encoder: Any):
    embed = VLM2VecEmbedding(encoder=tiny_encoder, query_instruction="Find it:", document_instruction="")
    np.testing.assert_allclose(
        embed.get_query_embedding("x"), tiny_encoder.encode(["x"], instruction="Find it:")[0], atol=ATOL
    )
    np.testing.assert_allclose(embed.get_text_embedding("x"), tiny_encoder.encode(["x"], instruction="")[0], atol=ATOL)


def test_task_choice_and_validation(tiny_encoder: Any):
    image_task = VLM2VecEmbedding(encoder=tiny_encoder, task="image")
    np.testing.assert_allclose(
        image_task.get_query_embedding("a cat"), tiny_encoder.encode_queries(["a cat"], task="image")[0], atol=ATOL
    )
    with pytest.raises(ValueError, match="visdoc"):
        VLM2VecEmbedding(encoder=tiny_encoder, task="no-such-task")


def test_batches_follow_embed_batch_size_keep_order_and_match_singles(tiny_encoder: Any):
    spy = Spy(tiny_encoder)
    embed = VLM2VecEmbedding(encoder=spy, embed_batch_size=2)
    batch = embed.get_text_embedding_batch(TEXTS)
    assert [n for _, n, _ in spy.calls] == [2, 2, 1]  # batch hooks are overridden: 3 calls, not 5
    assert all(kwargs["batch_size"] == 2 for _, _, kwargs in spy.calls)
    singles = [embed.get_text_embedding(t) for t in TEXTS]
    np.testing.assert_allclose(batch, singles, atol=ATOL)
    norms = np.linalg.norm(np.asarray(batch), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in batch}) == len(TEXTS)


def test_image_inputs_path_pil_bytes_and_file_objects_agree(embed: VLM2VecEmbedding, page: Path):
    by_path = embed.get_image_embedding(str(page))
    np.testing.assert_allclose(embed.get_image_embedding(page), by_path, atol=ATOL)
    np.testing.assert_allclose(embed.get_image_embedding(Image.open(page)), by_path, atol=ATOL)
    np.testing.assert_allclose(embed.get_image_embedding(BytesIO(page.read_bytes())), by_path, atol=ATOL)
    np.testing.assert_allclose(embed.get_image_embedding(page.read_bytes()), by_path, atol=ATOL)
    assert abs(np.linalg.norm(by_path) - 1.0) < 1e-5


def test_image_batch_order_and_callback_events(tiny_encoder: Any, tmp_path: Path):
    paths = [str(mediafixtures.make_image(tmp_path / f"{i}.png", size=(96, 80), seed=i)) for i in range(5)]
    debug = LlamaDebugHandler()
    embed = VLM2VecEmbedding(encoder=tiny_encoder, embed_batch_size=2, callback_manager=CallbackManager([debug]))
    batch = embed.get_image_embedding_batch(paths)
    assert len(debug.get_event_pairs(CBEventType.EMBEDDING)) == 3
    np.testing.assert_allclose(batch, [embed.get_image_embedding(p) for p in paths], atol=ATOL)
    np.testing.assert_allclose(batch, tiny_encoder.encode_documents([Input(image=p) for p in paths]), atol=ATOL)


class Recorder(BaseEventHandler):
    events: list[BaseEvent]

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def test_instrumentation_events_fire(embed: VLM2VecEmbedding, media: Path):
    recorder = Recorder(events=[])
    root = instrument.get_dispatcher()
    root.add_event_handler(recorder)
    try:
        embed.get_query_embedding("q")
        embed.get_text_embedding_batch(["a", "b"])
        asyncio.run(embed.aget_query_embedding("q"))
        embed.get_video_embedding(f"{media / 'talk.mp4'}#t=0,1")
    finally:
        root.event_handlers.remove(recorder)
    starts = [e for e in recorder.events if isinstance(e, EmbeddingStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, EmbeddingEndEvent)]
    assert len(starts) == len(ends) == 4
    assert starts[0].model_dict["class_name"] == "VLM2VecEmbedding"
    assert [len(e.embeddings) for e in ends] == [1, 2, 1, 1]


def test_async_paths_match_sync(embed: VLM2VecEmbedding, page: Path):
    async def run() -> list[Any]:
        return await asyncio.gather(
            embed.aget_query_embedding("q"),
            embed.aget_text_embedding("t"),
            embed.aget_text_embedding_batch(TEXTS),
            embed.aget_image_embedding(str(page)),
            embed.aget_image_embedding_batch([str(page), str(page)]),
        )

    q, t, texts, image, images = asyncio.run(run())
    np.testing.assert_allclose(q, embed.get_query_embedding("q"), atol=ATOL)
    np.testing.assert_allclose(t, embed.get_text_embedding("t"), atol=ATOL)
    np.testing.assert_allclose(texts, embed.get_text_embedding_batch(TEXTS), atol=ATOL)
    np.testing.assert_allclose(image, embed.get_image_embedding(str(page)), atol=ATOL)
    np.testing.assert_allclose(images, [image, image], atol=ATOL)


def test_async_prefers_the_encoders_coroutines(tiny_encoder: Any):
    spy = AsyncSpy(tiny_encoder)
    embed = VLM2VecEmbedding(encoder=spy)
    asyncio.run(embed.aget_query_embedding("q"))
    asyncio.run(embed.aget_text_embedding_batch(["a", "b"]))
    assert [name for name, _, _ in spy.calls] == ["aencode_queries", "aencode_documents"]


def test_clips_are_embedded_as_video_over_their_span(embed: VLM2VecEmbedding, tiny_encoder: Any, media: Path):
    video = media / "talk.mp4"
    ref = f"{video}#t=1,2"
    as_image_node = embed.get_image_embedding(ref)  # how a clip node reaches the embedding
    expected = tiny_encoder.encode_documents([Input(video=ref)], task="moment")[0]
    np.testing.assert_allclose(as_image_node, expected, atol=ATOL)
    np.testing.assert_allclose(embed.get_video_embedding(ref), expected, atol=ATOL)
    clip = list(video_clips(video, clip_seconds=1.0))[1]
    np.testing.assert_allclose(embed.get_video_embedding(clip), expected, atol=1e-4)
    np.testing.assert_allclose(embed.get_video_embedding(list(clip.frames)), expected, atol=1e-4)
    still = embed.get_image_embedding(clip.frames[len(clip.frames) // 2])
    assert float(np.dot(still, as_image_node)) < 0.99  # not a still frame
    other = embed.get_video_embedding(f"{video}#t=0,1")
    assert float(np.dot(other, as_image_node)) < 0.999


def test_mixed_image_batch_uses_each_kinds_preset(tiny_encoder: Any, media: Path, page: Path):
    spy = Spy(tiny_encoder)
    embed = VLM2VecEmbedding(encoder=spy)
    ref = f"{media / 'talk.mp4'}#t=0,1"
    mixed = embed.get_image_embedding_batch([str(page), ref, str(page)])
    assert sorted((kwargs["task"], n) for _, n, kwargs in spy.calls) == [("moment", 1), ("visdoc", 2)]
    np.testing.assert_allclose(mixed[1], embed.get_video_embedding(ref), atol=ATOL)
    np.testing.assert_allclose(mixed[0], mixed[2], atol=ATOL)


def test_video_batch_and_async(embed: VLM2VecEmbedding, media: Path):
    refs = [f"{media / 'talk.mp4'}#t={s},{s + 1}" for s in range(3)]
    batch = embed.get_video_embedding_batch(refs)
    np.testing.assert_allclose(batch[2], embed.get_video_embedding(refs[2]), atol=ATOL)
    np.testing.assert_allclose(asyncio.run(embed.aget_video_embedding_batch(refs)), batch, atol=ATOL)
    np.testing.assert_allclose(asyncio.run(embed.aget_video_embedding(refs[0])), batch[0], atol=ATOL)


def test_bad_image_names_the_file(embed: VLM2VecEmbedding, tmp_path: Path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"broken\.png"):
        embed.get_image_embedding(str(bad))


def test_built_from_a_model_path_loads_lazily(tiny_model_dir: Path, tiny_encoder: Any):
    embed = VLM2VecEmbedding(model=tiny_model_dir, device="cpu")
    assert embed.model_name == str(tiny_model_dir)
    assert embed._encoder is None  # nothing created, nothing loaded yet
    vec = embed.get_query_embedding("hello")
    np.testing.assert_allclose(vec, tiny_encoder.encode_queries(["hello"])[0], atol=ATOL)
    assert embed.encoder.device == "cpu"
    assert "encoder" not in embed.to_dict()


def test_namespace_layout_and_exports():
    import llama_index.core

    import llama_index.embeddings.vlm2vec as embeddings

    package = Path(embeddings.__file__).parents[2]  # .../llama_index
    for folder in (package, package / "embeddings", package / "readers"):
        assert not (folder / "__init__.py").exists(), folder  # namespace packages, merged with llama-index-core's
    assert Path(llama_index.core.__file__).parents[1] != package
    assert sorted(embeddings.__all__) == [
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
