"""A real `vlm2vec serve --reranker` on 127.0.0.1: /v1/rerank in the Cohere/Jina/vLLM shape, remote equals local."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from servehelp import API_KEYS, Server

from procs import free_port
from vlm2vec_core import Input
from vlm2vec_core.encoders.remote import RemoteError
from vlm2vec_core.errors import InputError
from vlm2vec_core.rerank import RemoteReranker, Reranker

TOL = 2e-5
AUTH = {"Authorization": f"Bearer {API_KEYS[0]}"}


@pytest.fixture(scope="module")
def rerank_server(
    tiny_model_dir: Path, tiny_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server-rerank") / "server.log"
    srv = Server(tiny_model_dir, free_port(), log, "--reranker", str(tiny_reranker_dir), "--no-embeddings").start()
    yield srv
    srv.stop()


def _picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_models_lists_the_reranker(rerank_server: Server):
    (entry,) = httpx.get(f"{rerank_server.url}/v1/models", headers=AUTH).json()["data"]
    assert (entry["kind"], entry["family"]) == ("rerank", "qwen3-vl-reranker")
    got = httpx.post(f"{rerank_server.url}/v1/embeddings", json={"input": ["x"]}, headers=AUTH)
    assert got.status_code == 400 and "no embedding model" in got.json()["error"]["message"]


def test_remote_scores_equal_local(rerank_server: Server, tiny_reranker: Reranker):
    remote = RemoteReranker(rerank_server.url, api_key=API_KEYS[0])
    docs = ["a red ball", _picture(300, 200, 1), Input(text="page two", image=_picture(200, 280, 2)), ""]
    for query in ("a red ball", _picture(120, 90, 3)):
        np.testing.assert_allclose(remote.score(query, docs), tiny_reranker.score(query, docs), atol=TOL)
    got, want = remote.rerank("a red ball", docs, top_n=2), tiny_reranker.rerank("a red ball", docs, top_n=2)
    assert [i for i, _ in got] == [i for i, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=TOL)
    assert remote.family.name == "qwen3-vl-reranker"


def test_a_fleet_of_rerankers_skips_one_that_is_down(rerank_server: Server, tiny_reranker: Reranker):
    dead = f"http://127.0.0.1:{free_port()}"
    fleet = RemoteReranker([dead, rerank_server.url + "/v1"], api_key=API_KEYS[0])
    docs = ["a red ball", _picture(300, 200, 5)]
    for _ in range(3):
        np.testing.assert_allclose(fleet.score("a ball", docs), tiny_reranker.score("a ball", docs), atol=TOL)
    assert fleet.wire_format() == "raw"  # our server lists raw pixels: nothing to compress
    assert not fleet.endpoints[0].up and fleet.endpoints[1].answered == 3
    with pytest.raises(RemoteError, match="connection refused"):
        RemoteReranker([dead]).family  # noqa: B018


def test_the_vllm_shaped_body_on_both_paths(rerank_server: Server, tiny_reranker: Reranker):
    image = _picture(300, 200, 4)
    body = {
        "model": "m",
        "query": "what is the total?",
        "documents": ["an invoice", {"content": [{"type": "image_url", "image_url": {"url": _data_url(image)}}]}, "x"],
        "top_n": 2,
        "return_documents": True,
    }
    for path in ("/v1/rerank", "/rerank"):
        got = httpx.post(f"{rerank_server.url}{path}", json=body, headers=AUTH).json()
        results = got["results"]
        assert len(results) == 2 and results[0]["relevance_score"] >= results[1]["relevance_score"]
    local = dict(tiny_reranker.rerank("what is the total?", ["an invoice", image, "x"]))
    for row in results:
        assert abs(row["relevance_score"] - local[row["index"]]) < TOL
        if row["index"] != 1:
            assert row["document"]["text"] == body["documents"][row["index"]]


def test_errors_name_the_document(rerank_server: Server, tmp_path: Path):
    body = {
        "query": "q",
        "documents": ["a", {"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
    }
    got = httpx.post(f"{rerank_server.url}/v1/rerank", json=body, headers=AUTH)
    assert got.status_code == 422 and "documents[1]" in got.json()["error"]["message"]
    assert httpx.post(f"{rerank_server.url}/v1/rerank", json={"query": "q"}, headers=AUTH).status_code == 422
    assert httpx.post(f"{rerank_server.url}/v1/rerank", json=body).status_code == 401
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"junk")
    errors: list[InputError] = []
    remote = RemoteReranker(rerank_server.url, api_key=API_KEYS[0])
    ranked = remote.rerank("q", ["a", Input(image=broken), "b"], errors=errors)
    assert sorted(i for i, _ in ranked) == [0, 2] and errors[0].index == 1
