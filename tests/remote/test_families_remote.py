"""A real server over the tiny Qwen3-VL checkpoint: the family travels with the vectors (chat-prompt messages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from servehelp import API_KEYS, Server

from procs import free_port
from vlm2vec_core import Input, RemoteEncoder, VLM2VecEncoder
from vlm2vec_core.encoders.remote import RemoteError

TOL = 2e-5


@pytest.fixture(scope="module")
def qwen3_server(tiny_qwen3vl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tiny_qwen3vl_dir, free_port(), tmp_path_factory.mktemp("server-qwen3") / "server.log").start()
    yield srv
    srv.stop()


def _frames(n: int) -> list:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(n)]


def test_models_lists_the_family_and_dimension(qwen3_server: Server):
    listing = httpx.get(f"{qwen3_server.url}/v1/models", headers={"Authorization": f"Bearer {API_KEYS[0]}"}).json()
    (entry,) = listing["data"]
    assert (entry["family"], entry["dim"], entry["truncate_dim"]) == ("qwen3-vl-embedding", 64, 0)


def test_remote_equals_local_for_every_modality(qwen3_server: Server, tiny_qwen3vl_encoder: VLM2VecEncoder):
    remote = RemoteEncoder(qwen3_server.url, api_key=API_KEYS[0])
    image = Input(image=np.zeros(1))  # replaced below; keeps the list readable
    rng = np.random.default_rng(0)
    from PIL import Image

    picture = Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    items = ["a red ball", picture, Input(video=_frames(8)), Input(text="what is it?", image=picture), Input(text="")]
    del image
    for task in ("visdoc", "moment"):
        np.testing.assert_allclose(
            remote.encode_queries(items, task=task), tiny_qwen3vl_encoder.encode_queries(items, task=task), atol=TOL
        )
        np.testing.assert_allclose(
            remote.encode_documents(items, task=task),
            tiny_qwen3vl_encoder.encode_documents(items, task=task),
            atol=TOL,
        )
    assert remote.family.name == "qwen3-vl-embedding"


def test_the_client_checks_the_family_it_expects(qwen3_server: Server):
    with pytest.raises(RemoteError, match="Qwen3-VL-Embedding family, not GME"):
        RemoteEncoder(qwen3_server.url, api_key=API_KEYS[0], family="gme").encode(["x"])


def test_dimensions_outside_the_matryoshka_sizes_are_refused(qwen3_server: Server):
    body = {"model": "m", "input": ["x"], "dimensions": 24}
    got = httpx.post(f"{qwen3_server.url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {API_KEYS[0]}"})
    assert got.status_code == 422 and "Matryoshka" in got.json()["error"]["message"]
