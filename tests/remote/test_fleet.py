"""Several real `vlm2vec serve` processes on 127.0.0.1: requests spread over them, one stopped mid-run, every
input with exactly one vector equal to the local one; and clean, fast errors for a server that is down or
refuses the key."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image
from servehelp import API_KEYS, Server

from procs import free_port
from vlm2vec_core import Input, VLM2VecEncoder
from vlm2vec_core.encoders.remote import RemoteEncoder, RemoteError

TOL = 1e-5


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (70 + 3 * i, 90, 3), dtype=np.uint8)) for i in range(n)]


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_our_server_gets_raw_pixels_and_the_vectors_equal_local(server: Server, tiny_encoder: VLM2VecEncoder):
    images = _images(3)
    clip = Input(video=_images(9, seed=1), text="a clip")
    with (
        RemoteEncoder(server.url, api_key=API_KEYS[0]) as raw,
        RemoteEncoder(server.url, api_key=API_KEYS[0], media_format="png") as png,
    ):
        assert raw.dim == png.dim and raw.wire_format() == "raw" and png.wire_format() == "png"
        expected = tiny_encoder.encode_documents([*images, clip])
        for enc in (raw, png):
            got = enc.encode_documents([*images, clip])
            np.testing.assert_allclose(got, expected, atol=TOL)


def test_requests_are_spread_over_two_servers(server: Server, fresh_server: Any, tiny_encoder: VLM2VecEncoder):
    other = fresh_server()
    images = _images(16)
    expected = tiny_encoder.encode_documents(images)
    with RemoteEncoder([server.url, other.url], api_key=API_KEYS[0], max_concurrency=2) as fleet:
        got = fleet.encode_documents(images)
        answered = [e.answered for e in fleet.endpoints]
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert min(answered) > 0, answered  # both did some of the work
    assert sum(answered) == len(images)  # one answered request per image (the discovery is not counted)


def test_a_server_stopped_mid_run_loses_and_duplicates_nothing(
    server: Server, fresh_server: Any, tiny_encoder: VLM2VecEncoder
):
    # the second server holds its requests 6 s in its batcher, so some are on it when it is killed
    doomed = fresh_server("--max-wait-ms", "6000", "--max-batch-size", "64")
    images = _images(30, seed=2)
    expected = tiny_encoder.encode_documents(images)
    reached, resume = threading.Event(), threading.Event()
    calls: list[int] = []

    class Gated(RemoteEncoder):
        """Holds its 8th and later requests until the test has killed the second server."""

        def _post_embeddings(self, body, expected):  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) >= 8:
                reached.set()
                resume.wait(60)
            return super()._post_embeddings(body, expected)

    fleet = Gated([server.url, doomed.url], api_key=API_KEYS[0], max_concurrency=2)
    fleet.dim  # noqa: B018 - discovery first, so every counted call below is an image
    result: dict[str, Any] = {}
    job = threading.Thread(target=lambda: result.update(vectors=fleet.encode_documents(images)))
    job.start()
    assert reached.wait(60), "the job never got to its 8th request"
    assert fleet.endpoints[1].inflight > 0  # requests are on the doomed server, waiting in its batcher
    doomed.signal(signal.SIGKILL)
    assert doomed.process is not None
    doomed.process.wait()
    started = time.monotonic()
    resume.set()
    job.join(120)
    got = result["vectors"]
    assert isinstance(got, np.ndarray) and got.shape == expected.shape  # one vector per image, in order
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert len(calls) == len(images)  # one request an image: the retries on the other server happened inside
    assert not fleet.endpoints[1].up and fleet.endpoints[0].up
    assert fleet.endpoints[0].answered + fleet.endpoints[1].answered == len(images)
    assert time.monotonic() - started < 30  # no backoff: the other server took the work at once
    fleet.close()


def test_a_server_down_from_the_start_is_skipped(
    server: Server, tiny_encoder: VLM2VecEncoder, caplog: pytest.LogCaptureFixture
):
    dead = _dead_url()
    texts = [f"text {i}" for i in range(5)]
    with (
        caplog.at_level(logging.WARNING, logger="vlm2vec_core.encoders.remote"),
        RemoteEncoder([dead, server.url], api_key=API_KEYS[0]) as fleet,
    ):
        started = time.monotonic()
        got = fleet.encode(texts, batch_size=1)
        took = time.monotonic() - started
        assert not fleet.endpoints[0].up and fleet.endpoints[1].answered == len(texts)
        async_got = asyncio.run(fleet.aencode(texts, batch_size=1))
    np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=TOL)
    np.testing.assert_allclose(async_got, got, atol=TOL)
    assert took < 10
    warnings = [r.getMessage() for r in caplog.records if dead in r.getMessage()]
    assert warnings and "connection refused" in warnings[0]
    assert len(warnings) <= 4  # once when it goes down, and at most a few re-tries after its pause


def test_every_server_down_is_one_clear_error_at_once():
    one, two = _dead_url(), _dead_url()
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        RemoteEncoder([one, two]).encode(["x"])
    assert time.monotonic() - started < 3  # no retries at start-up
    message = str(caught.value)
    assert one in message and two in message and "connection refused" in message
    with pytest.raises(RemoteError, match="connection refused"):
        RemoteEncoder(one + "/v1").dim  # noqa: B018


@pytest.mark.parametrize(("key", "says"), [(None, "no API key was given"), ("wrong", "the API key given was refused")])
def test_a_missing_or_wrong_key_is_one_clear_error(server: Server, key: str | None, says: str):
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        RemoteEncoder(server.url + "/v1", api_key=key).encode(["x"])
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith(f"{server.url}: {says} (HTTP 401: missing or wrong API key")


def test_servers_of_different_models_are_not_mixed(server: Server, fresh_server: Any):
    other = fresh_server("--served-model-name", "another-model")
    with pytest.raises(RemoteError, match=r"serve different models \(id 'another-model' vs"):
        RemoteEncoder([other.url, server.url], api_key=API_KEYS[0]).dim  # noqa: B018


@pytest.mark.parametrize("case", ["no key", "wrong key", "down"])
def test_the_cli_says_what_is_wrong_with_remote_in_one_line(server: Server, tmp_path: Any, case: str):
    import os
    import subprocess
    import sys

    page = tmp_path / "page.png"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(page)
    url = _dead_url() if case == "down" else server.url
    args = ["index", str(page), "--remote", url + "/v1", "--db", str(tmp_path / "db")]
    args += ["--api-key", "wrong"] if case == "wrong key" else []
    env = {k: v for k, v in os.environ.items() if k != "VLM2VEC_API_KEY"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "vlm2vec_core.apps.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert time.monotonic() - started < 20  # the CLI's own start-up; no retries
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    says = {
        "no key": "no API key was given",
        "wrong key": "the API key given was refused",
        "down": "connection refused",
    }
    assert line.startswith(f"error: {url}: ") and says[case] in line


def test_the_cli_takes_a_fleet_and_skips_a_server_that_is_down(server: Server, tmp_path: Any):
    import json
    import os
    import subprocess
    import sys

    for n in range(3):
        Image.new("RGB", (64 + n, 64), (9 * n, 90, 9)).save(tmp_path / f"page{n}.png")
    env = {**{k: v for k, v in os.environ.items() if k != "VLM2VEC_API_KEY"}, "VLM2VEC_API_KEY": API_KEYS[0]}
    cli = [sys.executable, "-m", "vlm2vec_core.apps.cli"]
    fleet = ["--remote", _dead_url(), "--remote", server.url + "/v1"]
    db = ["--db", str(tmp_path / "db")]
    made = subprocess.run([*cli, "index", str(tmp_path), *fleet, *db], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr
    assert "embedded 3 images" in made.stdout
    found = subprocess.run(
        [*cli, "search", "x", "--json", *fleet, *db], capture_output=True, text=True, env=env, timeout=120
    )
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == 3
