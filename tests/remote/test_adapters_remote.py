"""Both framework adapters take the RemoteEncoder unchanged: same vectors as the local encoder, sync and async."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
from PIL import Image
from servehelp import API_KEYS, Server, planned_requests

from vlm2vec_core import VLM2VecEncoder
from vlm2vec_core.encoders.remote import RemoteEncoder
from vlm2vec_core.media.images import MAX_PIXELS, fit_image

TOL = 1e-5


def test_langchain_embeddings_over_the_remote_encoder(server: Server, tiny_encoder: VLM2VecEncoder):
    from langchain_vlm2vec import VLM2VecEmbeddings

    remote = VLM2VecEmbeddings(encoder=RemoteEncoder(server.url, api_key=API_KEYS[0]))
    local = VLM2VecEmbeddings(encoder=tiny_encoder)
    np.testing.assert_allclose(remote.embed_query("revenue"), local.embed_query("revenue"), atol=TOL)
    texts = ["a page", "another page"]
    np.testing.assert_allclose(remote.embed_documents(texts), local.embed_documents(texts), atol=TOL)
    np.testing.assert_allclose(asyncio.run(remote.aembed_query("q")), local.embed_query("q"), atol=TOL)
    image = Image.new("RGB", (300, 200), (30, 140, 90))
    np.testing.assert_allclose(remote.embed_image([image]), local.embed_image([image]), atol=TOL)


def test_llamaindex_embedding_over_the_remote_encoder(server: Server, tiny_encoder: VLM2VecEncoder):
    from llama_index.embeddings.vlm2vec import VLM2VecEmbedding

    remote = VLM2VecEmbedding(encoder=RemoteEncoder(server.url, api_key=API_KEYS[0]))
    local = VLM2VecEmbedding(encoder=tiny_encoder)
    np.testing.assert_allclose(remote.get_query_embedding("q"), local.get_query_embedding("q"), atol=TOL)
    np.testing.assert_allclose(
        asyncio.run(remote.aget_text_embedding_batch(["a", "b"])), local.get_text_embedding_batch(["a", "b"]), atol=TOL
    )


def test_the_client_sends_images_already_fitted_and_compressed():
    big = Image.new("RGB", (2400, 1800), (200, 30, 30))
    jobs = planned_requests(RemoteEncoder("http://127.0.0.1:9", max_retries=0, family="vlm2vec-v2"), [big], None, 8)
    ((_, body),) = jobs
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    assert sent.size == fit_image(big).size and sent.width * sent.height <= MAX_PIXELS
    assert len(url) < 0.05 * big.width * big.height * 3  # a flat colour compresses to almost nothing
