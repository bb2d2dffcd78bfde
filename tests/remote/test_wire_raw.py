"""Raw RGB images on the wire (our server's lossless, cheap form): exact round trips, and every malformed one a 422."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image
from servehelp import planned_requests

from vlm2vec_core.encoders.remote import RemoteEncoder, normalise_url
from vlm2vec_core.encoders.wire import (
    RAW_PREFIX,
    RequestError,
    decode_image_url,
    decode_video_frames,
    image_data_url,
    parse_request,
    video_url,
)
from vlm2vec_core.tasks import resolve_instruction


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_a_raw_image_comes_back_pixel_for_pixel() -> None:
    image = _noise(57, 31)
    url = image_data_url(image, "raw")
    assert url.startswith(f"{RAW_PREFIX}size=57x31;base64,")
    back = decode_image_url(url, "here", max_decode_pixels=10**6)
    assert back.mode == "RGB" and back.size == (57, 31)
    assert np.array_equal(np.asarray(back), np.asarray(image))


def test_an_image_that_is_not_rgb_goes_as_png() -> None:
    grey = Image.new("L", (20, 10), 128)
    assert image_data_url(grey, "raw").startswith("data:image/png;base64,")


def test_raw_frames_are_a_list_the_parser_and_decoder_take() -> None:
    frames = [_noise(28, 28, seed) for seed in range(3)]
    url = video_url(frames, "raw")
    assert isinstance(url, list) and len(url) == 3
    body = {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}]}]}
    (item,), _ = parse_request(body)
    assert item.video is not None
    got = decode_video_frames(item.video, max_frames=8, max_decode_pixels=10**6, max_bytes=10**6)
    assert isinstance(got, list)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, frames, strict=True))
    with pytest.raises(RequestError, match=r"a video needs 1 to 2 frames, got 3"):
        decode_video_frames(item.video, max_frames=2, max_decode_pixels=10**6, max_bytes=10**6)


def _payload(n: int) -> str:
    return base64.b64encode(bytes(n)).decode()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"{RAW_PREFIX}size=4x4;base64,{_payload(4 * 4 * 3 - 3)}", "is 48 bytes, the URL holds about 45"),
        (f"{RAW_PREFIX}size=4x4;base64,{_payload(4 * 4 * 3 + 3)}", "is 48 bytes"),
        (f"{RAW_PREFIX}size=100000x100000;base64,AAAA", "over the limit of 1,000,000"),
        (f"{RAW_PREFIX}size={'9' * 5000}x1;base64,AAAA", "size=WxH"),
        (f"{RAW_PREFIX}size=0x4;base64,", "size=WxH"),
        (f"{RAW_PREFIX}size=4x4,{_payload(48)}", "size=WxH"),
        (f"{RAW_PREFIX}width=4;base64,{_payload(48)}", "size=WxH"),
        (f"{RAW_PREFIX}size=4x4;base64,{'!' * 64}", "bad base64"),
    ],
)
def test_a_malformed_raw_image_is_a_422_naming_the_part(url: str, says: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_image_url(url, "messages[0].content[0]", max_decode_pixels=10**6)
    assert caught.value.status == 422
    assert caught.value.message.startswith("messages[0].content[0]: ") and says in caught.value.message


def test_the_client_sends_png_unless_the_server_lists_raw() -> None:
    page = _noise(300, 200)
    enc = RemoteEncoder("http://127.0.0.1:9", family="vlm2vec-v2")  # never contacted: nothing is known of it
    try:
        assert enc.wire_format() == "png"
        enc._reference = ("embedding", {"id": "m", "media_formats": ["png", "jpeg", "raw"]})
        assert enc.wire_format() == "raw"
        jobs = planned_requests(enc, [page], resolve_instruction("visdoc", "document"), 8)
        ((_, body),) = jobs
        assert body["messages"][0]["content"][0]["image_url"]["url"].startswith(RAW_PREFIX)
        assert RemoteEncoder("http://127.0.0.1:9", media_format="png").wire_format() == "png"
    finally:
        enc.close()
    with pytest.raises(ValueError, match="media_format"):
        RemoteEncoder("http://127.0.0.1:9", media_format="webp")


@pytest.mark.parametrize(
    ("given", "taken"),
    [
        ("http://h:8000", "http://h:8000"),
        ("http://h:8000/", "http://h:8000"),
        ("http://h:8000/v1", "http://h:8000"),
        ("https://h/v1/", "https://h"),
    ],
)
def test_urls_are_taken_with_or_without_v1(given: str, taken: str) -> None:
    assert normalise_url(given) == taken


def test_a_url_that_is_not_http_is_refused_when_the_client_is_made() -> None:
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        RemoteEncoder("gpu-box:8000")
    with pytest.raises(ValueError, match="at least one server URL"):
        RemoteEncoder([])
    fleet = RemoteEncoder(["http://a:1/v1", "http://a:1", "http://b:2"])
    assert fleet.urls == ["http://a:1", "http://b:2"] and fleet.base_url == "http://a:1"
    fleet.close()


def test_a_page_goes_as_png_and_a_photo_raw_when_raw_is_asked_for() -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from vlm2vec_core.encoders.wire import image_data_url

    page = Image.new("RGB", (364, 532), "white")
    ImageDraw.Draw(page).text((20, 20), "Quarterly revenue\n" * 20, fill="black")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (448, 448, 3), dtype=np.uint8))
    assert image_data_url(page, "raw").startswith("data:image/png;base64,")  # 35x smaller for about 1 ms
    assert image_data_url(photo, "raw").startswith(RAW_PREFIX)
