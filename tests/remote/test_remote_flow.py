"""The remote client's flow control against a real `vlm2vec serve` on 127.0.0.1: media are prepared only a few
requests ahead of the servers (memory does not grow with the inputs), in ``encode`` and ``aencode`` alike, and
``aencode`` sends its first request before the last input is prepared."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image
from servehelp import API_KEYS, Server

from vlm2vec_core import Input, InputError, VLM2VecEncoder
from vlm2vec_core.encoders import remote
from vlm2vec_core.encoders.remote import PREPARE_THREADS, SEND_AHEAD, RemoteEncoder

TOL = 1e-5
N = 40


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (60 + i, 80, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture
def prepared_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many inputs the client has prepared so far (the real preparation runs; it is only counted)."""
    seen: list[int] = []
    real = remote.prepare_or_error

    def counting(item: Any, index: int, *args: Any) -> Any:
        seen.append(index)
        return real(item, index, *args)

    monkeypatch.setattr(remote, "prepare_or_error", counting)
    return seen


def _bound(enc: RemoteEncoder) -> int:
    """Inputs the client may hold prepared while its servers answer nothing: the requests it may have unanswered,
    the results waiting in its preparation window, and the calls running in its preparation threads."""
    senders = enc.max_concurrency * len(enc.endpoints)
    threads = min(PREPARE_THREADS, N)
    return senders * SEND_AHEAD + threads * 2 + threads + 1


def _settled(count: list[int]) -> int:
    """The count once it has stopped growing for a while (preparation blocked)."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 0.5:
        if len(count) != last:
            last, since = len(count), time.monotonic()
        time.sleep(0.05)
    return last


def test_encode_prepares_only_a_few_requests_ahead_of_a_stalled_server(
    server: Server, tiny_encoder: VLM2VecEncoder, prepared_count: list[int]
):
    images = _images(N)
    held, release = threading.Event(), threading.Event()

    class Stalled(RemoteEncoder):
        def _post_embeddings(self, body, expected):  # type: ignore[no-untyped-def]
            if "messages" in body:  # the media requests wait until the test has looked
                held.set()
                release.wait(60)
            return super()._post_embeddings(body, expected)

    with Stalled(server.url, api_key=API_KEYS[0], max_concurrency=1) as enc:
        enc.dim  # noqa: B018
        result: dict[str, Any] = {}
        job = threading.Thread(target=lambda: result.update(vectors=enc.encode_documents(images)))
        job.start()
        assert held.wait(60)
        ahead = _settled(prepared_count)
        release.set()
        job.join(120)
        assert 0 < ahead <= _bound(enc) < N, (ahead, _bound(enc))
    np.testing.assert_allclose(result["vectors"], tiny_encoder.encode_documents(images), atol=TOL)
    assert sorted(prepared_count) == list(range(N))  # each input prepared once


def test_aencode_streams_its_requests_and_stays_as_far_ahead(
    server: Server, tiny_encoder: VLM2VecEncoder, prepared_count: list[int]
):
    images = _images(N)
    first_sent_after: list[int] = []

    class Stalled(RemoteEncoder):
        async def _asend(self, clients, method, path, body):  # type: ignore[no-untyped-def]
            if not first_sent_after:
                first_sent_after.append(len(prepared_count))
            while not release.is_set():
                await asyncio.sleep(0.02)
            return await super()._asend(clients, method, path, body)

    release = threading.Event()

    async def main(enc: RemoteEncoder) -> tuple[np.ndarray, int]:
        task = asyncio.ensure_future(enc.aencode_documents(images))
        while not first_sent_after:
            await asyncio.sleep(0.02)
        ahead = await asyncio.to_thread(_settled, prepared_count)
        release.set()
        return await task, ahead

    with Stalled(server.url, api_key=API_KEYS[0], max_concurrency=1) as enc:
        enc.dim  # noqa: B018
        vectors, ahead = asyncio.run(main(enc))
        assert first_sent_after[0] < N  # the first request left before the last input was prepared
        assert 0 < ahead <= _bound(enc) < N, (ahead, _bound(enc))
    np.testing.assert_allclose(vectors, tiny_encoder.encode_documents(images), atol=TOL)


def test_aencode_reports_and_raises_bad_inputs_as_encode_does(server: Server):
    inputs = ["a text", Input(image=b"not an image"), "another text"]
    with RemoteEncoder(server.url, api_key=API_KEYS[0]) as enc:
        sync_errors: list[InputError] = []
        async_errors: list[InputError] = []
        sync = enc.encode(inputs, errors=sync_errors)
        got = asyncio.run(enc.aencode(inputs, errors=async_errors))
        np.testing.assert_allclose(got, sync, atol=TOL)
        assert got.shape[0] == 2
        assert [e.index for e in async_errors] == [e.index for e in sync_errors] == [1]
        with pytest.raises(InputError) as caught:
            asyncio.run(enc.aencode(inputs))
        assert caught.value.index == 1
