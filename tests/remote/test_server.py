"""The real server process on loopback, and RemoteEncoder against it: same vectors, errors, load, restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from servehelp import API_KEYS, Server

import mediafixtures
from vlm2vec_core import Input, InputError, VLM2VecEncoder, pdf_pages, video_clips
from vlm2vec_core.encoders.remote import RemoteEncoder, RemoteError
from vlm2vec_core.encoders.wire import frames_data_url, image_data_url

TOL = 1e-5
AUTH = {"Authorization": f"Bearer {API_KEYS[0]}"}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[object]]:
    root = tmp_path_factory.mktemp("media")
    pdf = mediafixtures.make_pdf(root / "doc.pdf", n_pages=3)
    video = mediafixtures.make_video(root / "talk.mp4", seconds=3.0, fps=10)
    image = mediafixtures.make_image(root / "photo.png", size=(500, 300))
    return {
        "pages": list(pdf_pages(pdf, dpi=72)),
        "clips": list(video_clips(video, clip_seconds=1.0)),
        "images": [Image.open(image).convert("RGB"), Input(image=image)],
        "texts": ["a query about revenue", "", "another text"],
    }


def remote(server: Server, **kwargs: object) -> RemoteEncoder:
    return RemoteEncoder(server.url, api_key=API_KEYS[1], **kwargs)  # type: ignore[arg-type]


def test_remote_vectors_equal_local(server: Server, tiny_encoder: VLM2VecEncoder, media: dict[str, list[object]]):
    enc = remote(server)
    assert enc.dim == tiny_encoder.dim
    items = [
        *media["texts"],
        *media["images"],
        *media["pages"],
        *media["clips"],
        Input(text="what is on this page?", image=media["pages"][1].image),
    ]
    for method in ("encode", "encode_queries", "encode_documents"):
        np.testing.assert_allclose(
            getattr(enc, method)(items, batch_size=2), getattr(tiny_encoder, method)(items), atol=TOL, err_msg=method
        )
    moment = asyncio.run(enc.aencode_documents(media["clips"], task="moment"))
    np.testing.assert_allclose(moment, tiny_encoder.encode_documents(media["clips"], task="moment"), atol=TOL)


def test_jpeg_media_are_close_but_png_is_exact(
    server: Server, tiny_encoder: VLM2VecEncoder, media: dict[str, list[object]]
):
    pages = media["pages"][:2]
    jpeg = remote(server, media_format="jpeg").encode_documents(pages)
    local = tiny_encoder.encode_documents(pages)
    assert (jpeg * local).sum(axis=1).min() > 0.9


def test_health_models_and_auth(server: Server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    listing = httpx.get(f"{server.url}/v1/models", headers=AUTH).json()
    assert listing["data"][0]["dim"] == 64
    body = {"input": ["x"]}
    assert httpx.post(f"{server.url}/v1/embeddings", json=body).status_code == 401
    wrong = httpx.post(f"{server.url}/v1/embeddings", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
    assert (
        httpx.post(f"{server.url}/v1/embeddings", json=body, headers={"Authorization": API_KEYS[0]}).status_code == 401
    )
    with pytest.raises(RemoteError, match="401"):
        RemoteEncoder(server.url, api_key="wrong").encode(["x"])


def test_openai_response_shape_and_formats(server: Server):
    floats = httpx.post(f"{server.url}/v1/embeddings", json={"input": ["a", "b"]}, headers=AUTH).json()
    assert floats["object"] == "list" and [d["index"] for d in floats["data"]] == [0, 1]
    assert len(floats["data"][0]["embedding"]) == 64 and floats["usage"]["prompt_tokens"] > 0
    packed = httpx.post(
        f"{server.url}/v1/embeddings", json={"input": ["a", "b"], "encoding_format": "base64"}, headers=AUTH
    ).json()
    vec = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(vec, floats["data"][0]["embedding"], atol=1e-7)
    preset = httpx.post(
        f"{server.url}/v1/embeddings", json={"input": ["q"], "task": "visdoc", "role": "query"}, headers=AUTH
    ).json()
    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"input": ["Find a document image that matches the given query: q"]},
        headers=AUTH,
    ).json()
    np.testing.assert_allclose(preset["data"][0]["embedding"], raw["data"][0]["embedding"], atol=TOL)


def _png(size: tuple[int, int] = (64, 48)) -> str:
    return image_data_url(Image.new("RGB", size, (200, 10, 10)))


def _bomb_png() -> str:
    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _image_message(url: object) -> dict[str, object]:
    return {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": " describe"}],
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({"input": [1, 2]}, 422, "input[0] must be a string"),
        ({"input": ["x"], "task": "nope"}, 422, "unknown task"),
        ({"input": ["x"], "encoding_format": "int8"}, 422, "encoding_format"),
        (_image_message("http://127.0.0.1:9/x.png"), 422, "only data: URLs"),
        (_image_message("file:///etc/passwd"), 422, "only data: URLs"),
        (_image_message("data:image/png;base64,@@@@"), 422, "messages[0].content[0]"),
        (_image_message("data:image/png;base64," + base64.b64encode(b"not a png").decode()), 422, "not an image"),
        (_image_message(_bomb_png()), 422, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": [_png()] * 65}}]}]},
            422,
            "1 to 64 frames",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "x"}}]}]},
            422,
            "unsupported content part",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "video_url",
                                "video_url": {
                                    "url": "data:video/mp4;base64," + base64.b64encode(b"not a video at all").decode()
                                },
                            }
                        ],
                    }
                ]
            },
            422,
            "messages[0].content[0]",
        ),
    ],
)
def test_bad_requests_get_4xx_naming_the_item(server: Server, body: object, status: int, needle: str):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        f"{server.url}/v1/embeddings", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").status_code == 200  # still alive


def test_video_as_file_as_frames_and_as_frame_list(server: Server, tiny_encoder: VLM2VecEncoder, tmp_path: Path):
    video = mediafixtures.make_video(tmp_path / "v.mp4", seconds=2.0, fps=10)
    from vlm2vec_core import read_video_frames
    from vlm2vec_core.media.images import fit_frames

    frames = fit_frames(read_video_frames(video))
    local = tiny_encoder.encode([Input(video=frames)])[0]
    as_file = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    as_frames = frames_data_url(frames)
    as_list = [image_data_url(f) for f in frames]
    for url in (as_file, as_frames, as_list):
        parts = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": " "}]  # "<pad> "
        body = {"messages": [{"role": "user", "content": parts}]}
        got = httpx.post(f"{server.url}/v1/embeddings", json=body, headers=AUTH).json()["data"][0]["embedding"]
        np.testing.assert_allclose(got, local, atol=TOL)


def test_client_reports_server_refusals_per_item(server: Server):
    enc = remote(server)
    errors: list[InputError] = []
    # a bad image is caught on the client before anything is sent, naming the input
    out = enc.encode(["fine", Input(image=b"junk"), "also fine"], errors=errors)
    assert out.shape == (2, 64) and [e.index for e in errors] == [1]


def test_64_concurrent_clients(server: Server, tiny_encoder: VLM2VecEncoder):
    images = [Image.new("RGB", (120 + i, 90), (i * 4 % 255, 80, 160)) for i in range(64)]
    expected = tiny_encoder.encode_documents(images)

    def one(i: int) -> np.ndarray:
        with RemoteEncoder(server.url, api_key=API_KEYS[i % 2], max_concurrency=1) as client:
            return client.encode_documents([images[i]])[0]

    with ThreadPoolExecutor(64) as pool:
        got = np.stack(list(pool.map(one, range(64))))
    np.testing.assert_allclose(got, expected, atol=TOL)


def test_full_queue_answers_503_and_the_client_retries(fresh_server, tiny_encoder: VLM2VecEncoder):  # type: ignore[no-untyped-def]
    # The batcher holds what it collects for a batch (up to 64 items, 0.8 s) and counts it as waiting until the
    # batch closes, so any third request within one such window finds the queue of 2 full, however slowly the
    # requests arrive (a batch of 2 closed at once, and under load no request ever found the queue full).
    srv = fresh_server("--max-queue", "2", "--max-batch-size", "64", "--max-wait-ms", "800")
    bodies = [
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _png((100 + i, 80))}}]}]}
        for i in range(12)
    ]
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(lambda b: httpx.post(f"{srv.url}/v1/embeddings", json=b, headers=AUTH, timeout=30), bodies)
        )
    busy = [r for r in responses if r.status_code == 503]
    assert busy and all(r.headers["retry-after"] == "1" for r in busy)
    assert all(r.status_code in (200, 503) for r in responses)
    images = [Image.new("RGB", (100 + i, 80), (200, 10, 10)) for i in range(12)]
    got = RemoteEncoder(srv.url, api_key=API_KEYS[0], max_concurrency=12, backoff=0.1, max_retries=30).encode(images)
    np.testing.assert_allclose(got, tiny_encoder.encode(images), atol=TOL)


def test_body_over_the_limit_is_413(fresh_server):  # type: ignore[no-untyped-def]
    srv = fresh_server("--max-body-mb", "0.5")
    big = {"input": ["x" * (600 * 1024)]}
    response = httpx.post(f"{srv.url}/v1/embeddings", json=big, headers=AUTH)
    assert response.status_code == 413 and "over the limit" in response.json()["error"]["message"]

    def chunks():  # no Content-Length: the server must count as it reads
        for _ in range(40):
            yield b"x" * 32 * 1024

    response = httpx.post(f"{srv.url}/v1/embeddings", content=chunks(), headers=AUTH)
    assert response.status_code == 413


def test_graceful_shutdown_finishes_requests_in_flight(fresh_server):  # type: ignore[no-untyped-def]
    srv = fresh_server("--max-wait-ms", "4000", "--max-batch-size", "64")
    result: dict[str, object] = {}

    def call() -> None:
        result["response"] = httpx.post(
            f"{srv.url}/v1/embeddings", json={"input": ["in flight"]}, headers=AUTH, timeout=30
        )

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(1.5)  # the request now waits in the batcher (4 s window)
    srv.signal(signal.SIGTERM)
    thread.join(30)
    response = result["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert srv.process is not None
    assert srv.process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after draining


def test_server_killed_and_restarted_mid_job(fresh_server, tiny_encoder: VLM2VecEncoder):  # type: ignore[no-untyped-def]
    srv = fresh_server()
    images = [Image.new("RGB", (200 + 3 * i, 150), (i * 6 % 255, 40, 200 - i)) for i in range(40)]
    expected = tiny_encoder.encode_documents(images)
    reached, resume = threading.Event(), threading.Event()

    class Gated(RemoteEncoder):
        """Pauses before its 6th request until the test has killed the server: mid-job, whatever the speed."""

        calls = 0

        def _post_embeddings(self, body, expected):  # type: ignore[no-untyped-def]
            Gated.calls += 1
            if Gated.calls == 6:
                reached.set()
                resume.wait(60)
            return super()._post_embeddings(body, expected)

    client = Gated(srv.url, api_key=API_KEYS[0], max_concurrency=1, max_retries=10, backoff=0.2)
    result: dict[str, object] = {}
    job = threading.Thread(target=lambda: result.update(vectors=client.encode_documents(images)))
    job.start()
    assert reached.wait(60), "the job never got to its 6th request"
    srv.signal(signal.SIGKILL)
    srv.process.wait()  # type: ignore[union-attr]
    resume.set()  # the 6th request now meets a dead server and retries
    srv.start()  # same port, fresh process
    job.join(120)
    got = result["vectors"]
    assert isinstance(got, np.ndarray) and got.shape == expected.shape  # nothing lost, nothing duplicated
    assert Gated.calls == len(images)  # one request an image; the retries happened inside it
    np.testing.assert_allclose(got, expected, atol=TOL)


def test_client_fails_fast_with_a_clear_error_when_nothing_listens():
    from procs import free_port

    url = f"http://127.0.0.1:{free_port()}"
    enc = RemoteEncoder(url + "/v1")  # the default retries: none are spent on a server that is not there
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        enc.encode(["x"])
    assert time.monotonic() - started < 3
    assert str(caught.value) == f"{url}: connection refused (is the server running?)"


def test_remote_needs_no_torch():
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'peft'):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
from vlm2vec_core.encoders.remote import RemoteEncoder
enc = RemoteEncoder('http://127.0.0.1:9', max_retries=0)
print(type(enc).__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "RemoteEncoder"
