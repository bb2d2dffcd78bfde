"""Every bad request is a 4xx naming the item, and a request the server accepts is one it can serve."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image
from servehelp import API_KEYS, Server

AUTH = {"Authorization": f"Bearer {API_KEYS[0]}"}


def _post(server: Server, body: object | str) -> httpx.Response:
    if isinstance(body, str):
        headers = {**AUTH, "content-type": "application/json"}
        return httpx.post(f"{server.url}/v1/embeddings", content=body, headers=headers, timeout=120)
    return httpx.post(f"{server.url}/v1/embeddings", json=body, headers=AUTH, timeout=120)


def test_json_nested_too_deep_is_a_400(server: Server):
    got = _post(server, "[" * 100_000 + "]" * 100_000)
    assert got.status_code == 400 and "nested too deeply" in got.json()["error"]["message"]


def test_more_inputs_than_the_queue_holds_is_refused_for_its_size(server: Server):
    got = _post(server, {"input": ["x"] * 600})  # the queue holds 512: such a request could never be admitted
    assert got.status_code == 422 and "over the limit of 512" in got.json()["error"]["message"]
    assert _post(server, {"input": ["x"] * 64}).status_code == 200


def test_a_text_longer_than_the_model_takes_is_refused(server: Server):
    got = _post(server, {"input": ["short", "zq xw " * 8000]})  # 48,000 tokens for the tiny tokenizer
    assert got.status_code == 422
    message = got.json()["error"]["message"]
    assert message.startswith("input[1]") and "over the model's limit of 32,768" in message


def test_an_extreme_image_is_embedded_not_a_500(server: Server):
    buf = io.BytesIO()
    Image.new("RGB", (6000, 29), (10, 200, 30)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    got = _post(server, body)
    assert got.status_code == 200  # VLM2Vec squashes a 200:1 shape, as its own smart resize does


def _video_body(data: bytes) -> dict[str, object]:
    url = "data:video/x-msvideo;base64," + base64.b64encode(data).decode()
    return {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}]}]}


def test_a_forged_video_upload_is_a_422_and_the_server_lives_on(server: Server, tmp_path):  # type: ignore[no-untyped-def]
    import struct

    from mediafixtures import make_video

    good = make_video(tmp_path / "good.avi", seconds=1.0, fps=10, codec="mpeg4").read_bytes()
    forged = bytearray(good)  # headers claiming 2^31 - 1 frames: decord's std::bad_alloc aborts its process
    struct.pack_into("<I", forged, forged.find(b"strh") + 8 + 32, 2**31 - 1)
    struct.pack_into("<I", forged, forged.find(b"avih") + 8 + 16, 2**31 - 1)
    got = _post(server, _video_body(bytes(forged)))
    assert got.status_code == 422, got.text
    assert got.json()["error"]["message"].startswith("messages[0].content[0]: ")
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200  # decoded in a worker, not in here
    assert _post(server, _video_body(good)).status_code == 200


def hangs(path: str, limits: object, profile: object) -> None:
    import time

    time.sleep(60)


def aborts(path: str, limits: object, profile: object) -> None:
    import os

    os.abort()  # what decord's uncaught std::bad_alloc does


def test_an_uploaded_video_that_crashes_or_hangs_its_decoder_is_a_422(tiny_encoder, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import pytest

    from mediafixtures import make_video
    from vlm2vec_core.apps import server as server_module
    from vlm2vec_core.apps.server import ServerConfig, _prepare_spec
    from vlm2vec_core.encoders.wire import RequestError, parse_request

    data = make_video(tmp_path / "clip.avi", seconds=2.0, fps=10, codec="mpeg4").read_bytes()
    (spec,), _ = parse_request(_video_body(data), family=tiny_encoder.family)
    prepared = _prepare_spec(spec, 0, tiny_encoder, ServerConfig())
    assert prepared.frames is not None and len(prepared.frames) == 8
    for decoder, says in ((aborts, "the decoder crashed (SIGABRT)"), (hangs, "took longer than 1 s")):
        monkeypatch.setattr(server_module, "_decode_video", decoder)  # the worker runs this one, by name
        with pytest.raises(RequestError) as caught:
            _prepare_spec(spec, 0, tiny_encoder, ServerConfig(video_timeout=1.0))
        assert caught.value.status == 422
        assert caught.value.message.startswith(f"messages[0].content[0]: {says}")
    monkeypatch.undo()  # the abort and the hang cost a worker each, not this process: decoding goes on
    assert len(_prepare_spec(spec, 0, tiny_encoder, ServerConfig()).frames or ()) == 8
