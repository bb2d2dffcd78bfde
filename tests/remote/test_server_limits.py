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
